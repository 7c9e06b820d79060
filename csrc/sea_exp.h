// The vectorisable e^x of the CPU kernel's row softmaxes (docs/design.md §3, numerics).
// Self-contained (no ATen) so that csrc/tests/test_sea_exp.cpp can measure its accuracy alone.
//
// e^x for x ≤ 0 (every argument in the kernel is max-subtracted), written so that loops over it
// vectorise: e^x = 2^k e^r, k = round(x/ln2), r = x − k ln2 (Cody–Waite, ln2 = ln2_hi + ln2_lo),
// |r| ≲ ln2/2, e^r by its Taylor polynomial (degree 7 in float, 12 in double) in Horner form,
// 2^k built from its exponent bits. Arguments are clamped to lo (−87 in float, −708 in double:
// e^lo is still a normal number, so 2^k never leaves the normal range) and any x < lo, −∞
// included, gives exactly 0: results that would be subnormal are flushed to zero by design, and so
// is the thin band lo > x > log(smallest normal). NaN passes through. The integer and bit types
// match T's width. Accuracy over [lo, 0], measured by csrc/tests/test_sea_exp.cpp: max 1.22 ulp in
// float (every float), 2.6 ulp in double (2·10⁷ points, the k-rounding boundaries included).
#pragma once

#include <cstdint>
#include <cstring>

namespace sea_kernels {

template <typename T>
struct ExpTraits;
template <>
struct ExpTraits<float> {
  using Int = int32_t;
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float lo = -87.0f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f,
                         shifter = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  static constexpr float taylor[] = {1.0f, 1.0f, 1 / 2.0f, 1 / 6.0f, 1 / 24.0f, 1 / 120.0f,
                                     1 / 720.0f, 1 / 5040.0f};
};
template <>
struct ExpTraits<double> {
  using Int = int64_t;
  static constexpr int mantissa = 52, bias = 1023, degree = 12;
  static constexpr double lo = -708.0, ln2_hi = 6.93147180369123816490e-01,
                          ln2_lo = 1.90821492927058770002e-10, shifter = 6755399441055744.0;
  static constexpr double taylor[] = {1.0,          1.0,           1 / 2.0,        1 / 6.0,
                                      1 / 24.0,     1 / 120.0,     1 / 720.0,      1 / 5040.0,
                                      1 / 40320.0,  1 / 362880.0,  1 / 3628800.0,  1 / 39916800.0,
                                      1 / 479001600.0};
};

template <typename T>
inline T exp_nonpositive(T x) {
  using E = ExpTraits<T>;
  using Int = typename E::Int;
  const T xc = x < E::lo ? E::lo : x;  // NaN passes through
  const T t = xc * T(1.4426950408889634) + E::shifter;
  const T k = t - E::shifter;
  const T r = (xc - k * E::ln2_hi) - k * E::ln2_lo;
  T p = E::taylor[E::degree];  // Σ_j r^j/j! in Horner form
#pragma GCC unroll 16
  for (int j = E::degree - 1; j >= 0; --j) p = p * r + E::taylor[j];
  Int tb, kb;
  std::memcpy(&tb, &t, sizeof(T));
  const T sh = E::shifter;
  std::memcpy(&kb, &sh, sizeof(T));
  const Int pow2 = (tb - kb + E::bias) << E::mantissa;  // bits of 2^k
  T scale;
  std::memcpy(&scale, &pow2, sizeof(T));
  return x < E::lo ? T(0) : p * scale;
}

// u[k] = e^{u[k] − m}, u[k] ≤ m, in place (the loop the kernel's softmaxes run).
template <typename T>
void exp_shifted(T* u, T m, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) u[k] = exp_nonpositive(u[k] - m);
}

}  // namespace sea_kernels
