// Accuracy test of the kernel's vectorised e^x (csrc/sea_exp.h; docs/design.md §3), standalone:
// no ATen, built with the kernel's own flags (CMakeLists.txt). The error is measured in ulps of
// the result type T at the reference value, |got − ref| / ulp_T(ref), through exp_shifted (the
// loop the kernel runs, m = 0) and, for the edge cases, also the scalar exp_nonpositive.
//   float   EXHAUSTIVE: every float in [lo, 0] = [−87, 0] (≈ 1.1·10⁹ values, subnormal inputs
//           included), in ~4 s on one core. Reference: std::exp in long double, factored per
//           chunk as e^{x_0} e^{x_k − x_0} (see float_exhaustive; a direct std::exp(double) per
//           float takes ~11 s and gives the same maximum), cross-checked against std::exp(double).
//   double  2.2·10⁷ points over [−708, 0]: 10⁷ evenly spaced, 5·10⁶ uniform random, 5·10⁶ random
//           bit patterns (log-uniform in |x|, down to subnormal inputs), and around every
//           k-rounding boundary x = −(k + ½) ln2, where |r| and the polynomial's error peak, its
//           ±64 neighbouring doubles and 2000 uniform random points within ±2⁻¹⁰. Reference:
//           std::exp in long double (x87 extended, 64-bit significand, on x86-64).
// Subnormal range: e^lo is a normal number for both types (e^−87 ≈ 1.6e−38 > 2^−126,
// e^−708 ≈ 3.3e−308 > 2^−1022), so over [lo, 0] every reference value is normal and the ulp is
// that of its binade. Every result that would be subnormal has x < log(smallest normal) < lo and
// is flushed to zero by design, as is the band log(smallest normal) < x < lo of still-normal
// results: for x < lo the test requires exactly +0 (checked on every 251st float below lo down
// to −FLT_MAX, a log-uniform double sample, and −∞) rather than an ulp error. Also: ±0 → 1,
// NaN → NaN, and exp_shifted(u, m) = exp_nonpositive(u − m) bit for bit with m ≠ 0.
// Prints the measured maximum ulp errors; returns nonzero when a check fails.
#include "sea_exp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using sea_kernels::ExpTraits;
using sea_kernels::exp_nonpositive;
using sea_kernels::exp_shifted;

// Bounds, set just above what the polynomials achieve (the measured values are printed; GCC 12,
// x86-64): float 1.218 ulp (exhaustive, at x = −59.954), double 2.60 ulp in this sample (2.62 in
// a 4·10⁷-point probe of the k-boundaries), at |r| ≈ ln2/2 where the degree-12 Taylor remainder
// r¹³/13! ≈ 1.7e−16 is itself ≈ 1.5 ulp of e^r ≈ 0.71, on top of the Horner and reduction
// rounding. The margin leaves room for a compiler that contracts the Horner steps into FMAs.
constexpr double kMaxUlpFloat = 1.5;
constexpr double kMaxUlpDouble = 3.0;

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <typename T>
T from_bits(typename ExpTraits<T>::Int bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <typename T>
typename ExpTraits<T>::Int to_bits(T v) {
  typename ExpTraits<T>::Int bits;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

// ulps of T between got and the (normal, positive) reference ref: ulp_T(ref) = 2^(E − p + 1) for
// ref ∈ [2^E, 2^(E+1)), p = T's precision.
template <typename T, typename R>
double ulp_error(T got, R ref) {
  const int e = std::ilogb(ref);
  const R ulp = std::ldexp(R(1), e - std::numeric_limits<T>::digits + 1);
  return double(std::fabs(R(got) - ref) / ulp);
}

struct Worst {
  double ulp = 0;
  double x = 0;
  void add(double err, double at) {
    if (err > ulp || err != err) ulp = err, x = at;
  }
};

// Errors of exp_shifted(·, 0) over xs (one chunk) against the reference ref(x).
template <typename T, typename R, typename Ref>
void measure(std::vector<T>& xs, Ref ref, Worst& worst) {
  std::vector<T> ys(xs);
  exp_shifted(ys.data(), T(0), int64_t(ys.size()));
  for (size_t k = 0; k < xs.size(); ++k) worst.add(ulp_error<T, R>(ys[k], ref(xs[k])), xs[k]);
}

// Every float in [−87, 0]: the bit patterns of −0 up to that of −87 (sign bit set, increasing
// magnitude), in chunks of 2^13 that stay in cache and, being aligned, inside one binade of
// spacing u. There x_k = x_0 − k u exactly, so the reference is e^{x_k} = e^{x_0} · e^{−k u}:
// both factors std::exp in long double rounded to double (the table of e^{−k u} is recomputed
// when u changes), their product in double: within 1.5 ulps of double of e^x, i.e. < 10⁻⁸ ulp of
// float, at one std::exp per chunk instead of per float (a direct std::exp(double) per float
// takes ~11 s here). Every 64th chunk is cross-checked against std::exp(double) point by point.
// The error pass is a vectorised max reduction (NaN results counted apart), scanned for the
// argument only when a chunk raises the maximum.
struct FloatSweep {
  Worst worst;
  uint64_t count = 0;
  double ref_dev = 0;  // max relative deviation of the reference from std::exp(double)
};

FloatSweep float_exhaustive() {
  const uint32_t first = uint32_t(to_bits(-0.0f)), last = uint32_t(to_bits(ExpTraits<float>::lo));
  constexpr uint32_t chunk = 1u << 13;
  std::vector<float> xs(chunk), ys(chunk);
  std::vector<double> table(chunk), ref(chunk), err(chunk);
  double table_u = 0;
  FloatSweep sweep;
  for (uint64_t b0 = first; b0 <= last; b0 += chunk) {
    const uint32_t n = uint32_t(std::min<uint64_t>(chunk, last - b0 + 1));
    for (uint32_t k = 0; k < n; ++k) xs[k] = from_bits<float>(int32_t(uint32_t(b0 + k)));
    std::memcpy(ys.data(), xs.data(), n * sizeof(float));
    exp_shifted(ys.data(), 0.0f, int64_t(n));

    const double u = double(from_bits<float>(int32_t(uint32_t(b0 + 1)))) - double(xs[0]);  // < 0
    if (u != table_u) {
      for (uint32_t k = 0; k < chunk; ++k) table[k] = double(std::exp((long double)(k * u)));
      table_u = u;
    }
    const double e0 = double(std::exp((long double)xs[0]));
#pragma omp simd
    for (uint32_t k = 0; k < n; ++k) ref[k] = e0 * table[k];
    if ((b0 / chunk) % 64 == 0)
      for (uint32_t k = 0; k < n; ++k) {
        const double direct = std::exp(double(xs[k]));
        sweep.ref_dev = std::max(sweep.ref_dev, std::fabs(ref[k] - direct) / direct);
      }

    double cmax = 0;
    int64_t nans = 0;
#pragma omp simd reduction(max : cmax) reduction(+ : nans)
    for (uint32_t k = 0; k < n; ++k) {
      // 1/ulp_float(ref) = 2^(23 − E) for ref ∈ [2^E, 2^(E+1)), from ref's exponent bits
      const int64_t e = (to_bits(ref[k]) >> 52) & 0x7ff;
      const double inv_ulp = from_bits<double>((2 * 1023 + 23 - e) << 52);
      const double ek = std::fabs(double(ys[k]) - ref[k]) * inv_ulp;
      err[k] = ek;
      cmax = ek > cmax ? ek : cmax;
      nans += ys[k] != ys[k];
    }
    if (nans > 0) sweep.worst.ulp = std::numeric_limits<double>::quiet_NaN();
    if (cmax > sweep.worst.ulp)
      for (uint32_t k = 0; k < n; ++k) sweep.worst.add(err[k], xs[k]);
    sweep.count += n;
  }
  return sweep;
}

Worst double_sampled(uint64_t& count) {
  using E = ExpTraits<double>;
  auto ref = [](double x) { return std::exp((long double)x); };
  std::mt19937_64 rng(12345);
  Worst worst;
  count = 0;
  std::vector<double> xs;
  constexpr size_t chunk = 1 << 14;
  xs.reserve(chunk);
  auto flush = [&] {
    measure<double, long double>(xs, ref, worst);
    count += xs.size();
    xs.clear();
  };
  auto push = [&](double x) {
    if (x >= E::lo && x <= 0) xs.push_back(x);
    if (xs.size() == chunk) flush();
  };
  // evenly spaced, both ends included
  constexpr int64_t n_even = 10'000'000;
  for (int64_t k = 0; k <= n_even; ++k) push(E::lo * (double(k) / double(n_even)));
  // uniform random
  std::uniform_real_distribution<double> uni(E::lo, 0.0);
  for (int k = 0; k < 5'000'000; ++k) push(uni(rng));
  // random bit patterns of negative doubles in [lo, −0]: log-uniform magnitudes
  const uint64_t lo_bits = uint64_t(to_bits(E::lo)), zero_bits = uint64_t(to_bits(-0.0));
  std::uniform_int_distribution<uint64_t> bits(zero_bits, lo_bits);
  for (int k = 0; k < 5'000'000; ++k) push(from_bits<double>(int64_t(bits(rng))));
  // around every rounding boundary of k = round(x/ln2): |r| ≈ ln2/2 there
  const double ln2 = 0.69314718055994530942;
  for (int k = 0; k <= 1022; ++k) {
    const double mid = -(k + 0.5) * ln2;
    std::uniform_real_distribution<double> near(mid - 0x1p-10, mid + 0x1p-10);
    for (int j = 0; j < 2000; ++j) push(near(rng));
    double up = mid, down = mid;
    push(mid);
    for (int j = 0; j < 64; ++j) {
      up = std::nextafter(up, 0.0);
      down = std::nextafter(down, -1e300);
      push(up);
      push(down);
    }
  }
  flush();
  return worst;
}

// x < lo gives +0, NaN gives NaN, ±0 give 1, on the scalar function and through exp_shifted.
template <typename T>
void edge_cases(const char* name, const std::vector<T>& below) {
  using E = ExpTraits<T>;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> ys(below);
  exp_shifted(ys.data(), T(0), int64_t(ys.size()));
  bool zeros = true;
  for (size_t k = 0; k < below.size(); ++k)
    zeros = zeros && below[k] < E::lo && to_bits(ys[k]) == 0 &&
            to_bits(exp_nonpositive(below[k])) == 0;
  check(zeros, std::string(name) + ": every x < lo (" + std::to_string(below.size()) +
                   " values, −∞ and the largest below lo included) gives exactly +0");

  T v[4] = {nan, -nan, T(0), -T(0)};
  exp_shifted(v, T(0), 4);
  check(std::isnan(v[0]) && std::isnan(v[1]) && std::isnan(exp_nonpositive(nan)),
        std::string(name) + ": NaN passes through");
  check(v[2] == T(1) && v[3] == T(1) && exp_nonpositive(-T(0)) == T(1),
        std::string(name) + ": e^±0 = 1 exactly");
  const T at_lo = exp_nonpositive(E::lo);
  check(at_lo >= std::numeric_limits<T>::min() && ulp_error<T, long double>(
                                                      at_lo, std::exp((long double)E::lo)) <= 1,
        std::string(name) + ": e^lo is normal and within 1 ulp");

  // exp_shifted(u, m) = exp_nonpositive(u − m), with an m that makes u − m inexact.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uni(-50.0, 3.0);
  const T m = T(3.25);
  std::vector<T> u(4099), want(4099);
  for (size_t k = 0; k < u.size(); ++k) {
    u[k] = T(uni(rng));
    want[k] = exp_nonpositive(T(u[k] - m));
  }
  exp_shifted(u.data(), m, int64_t(u.size()));
  bool same = true;
  for (size_t k = 0; k < u.size(); ++k) same = same && to_bits(u[k]) == to_bits(want[k]);
  check(same, std::string(name) + ": exp_shifted(u, m) = exp_nonpositive(u − m) bit for bit");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  char buf[256];
  {
    const auto t0 = std::chrono::steady_clock::now();
    const FloatSweep f = float_exhaustive();
    std::snprintf(buf, sizeof buf,
                  "float: max ulp error %.3f (at x = %.9g) over all %llu floats in [-87, 0] "
                  "(%.1f s); bound %.1f",
                  f.worst.ulp, f.worst.x, (unsigned long long)f.count, seconds_since(t0),
                  kMaxUlpFloat);
    check(f.worst.ulp <= kMaxUlpFloat &&
              f.count == uint64_t(uint32_t(to_bits(-87.0f))) - uint32_t(to_bits(-0.0f)) + 1,
          buf);
    std::snprintf(buf, sizeof buf,
                  "float: the factored reference e^x0 e^(-ku) is within %.1e (relative) of "
                  "std::exp(double) on every 64th chunk",
                  f.ref_dev);
    check(f.ref_dev <= 4 * std::numeric_limits<double>::epsilon(), buf);
  }
  {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t count = 0;
    const Worst w = double_sampled(count);
    std::snprintf(buf, sizeof buf,
                  "double: max ulp error %.3f (at x = %.17g) over %llu points in [-708, 0] "
                  "(%.1f s); bound %.1f",
                  w.ulp, w.x, (unsigned long long)count, seconds_since(t0), kMaxUlpDouble);
    check(w.ulp <= kMaxUlpDouble && count >= 22'000'000, buf);
  }
  {
    std::vector<float> below{-std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::max(),
                             std::nextafter(ExpTraits<float>::lo, -100.0f), -87.33654f, -88.0f,
                             -103.97f, -104.0f, -1e10f};
    // every 251st float from just below −87 to −FLT_MAX
    for (uint32_t bits = uint32_t(to_bits(ExpTraits<float>::lo)) + 1;
         bits <= uint32_t(to_bits(-std::numeric_limits<float>::max())); bits += 251)
      below.push_back(from_bits<float>(int32_t(bits)));
    edge_cases<float>("float", below);
  }
  {
    std::vector<double> below{-std::numeric_limits<double>::infinity(),
                              -std::numeric_limits<double>::max(),
                              std::nextafter(ExpTraits<double>::lo, -1000.0), -708.3964, -709.0,
                              -745.0, -745.2, -746.0, -1e300};
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<uint64_t> bits(uint64_t(to_bits(ExpTraits<double>::lo)) + 1,
                                                 uint64_t(to_bits(-std::numeric_limits<double>::max())));
    for (int k = 0; k < 1'000'000; ++k) below.push_back(from_bits<double>(int64_t(bits(rng))));
    edge_cases<double>("double", below);
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
