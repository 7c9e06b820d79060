// Row primitives of the fused CPU kernel (csrc/sea_cpu.cpp): the simd row reductions every
// per-row pass uses, the symmetric Gram product, the group view and the untrusted-row τ.
// Internal to the kernel's translation unit (anonymous namespace); docs/design.md §2, §3, §5.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace sea_kernels {
namespace {

using at::Tensor;

// Below this many classes the GEMMs with a C-wide result (L = XW, dW = XᵀR) run several times
// faster as their transposes (C-tall results) in MKL; the transposed copy back is b×C or d×C.
constexpr int64_t kNarrow = 64;

// Untrusted rows (docs/design.md §3): ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij is a sum of terms of size up to
// max_j K_jj, so its relative rounding error grows as 1/‖ĝ_i‖² when the rows q_i mixes nearly
// cancel, while the vector ĝ_i = q_i X loses only ≈ ε/‖ĝ_i‖. Rows whose ‖ĝ_i‖² is below τ times
// its error scale (untrusted_rows) are recomputed from the vector. τ per compute type, measured
// on nearly cancelling rows (tests/test_cpp_margins.py): the Gram-space error of ‖ĝ_i‖² is about
// 0.1 ε·scale, so the two errors meet near ‖ĝ_i‖² ≈ 1e-2·scale in either type (the ratio, not ε,
// sets τ; the torch backend's TAU is 1e-2 in both types too). Above it Gram space is as accurate
// as the vector. The same τ flags the rows whose n_i² or g_i = W a'_i cancel.
constexpr float kUntrustedTauFloat = 1e-2f;
constexpr double kUntrustedTauDouble = 1e-2;
template <typename T>
constexpr T untrusted_tau() {
  return std::is_same_v<T, float> ? T(kUntrustedTauFloat) : T(kUntrustedTauDouble);
}

// parallel_for grain: rows per task such that a task touches at least ~8k elements.
int64_t grain(int64_t elements_per_row) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, elements_per_row));
}

template <typename T>
T dot(const T* u, const T* v, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t k = 0; k < n; ++k) acc += u[k] * v[k];
  return acc;
}

template <typename T>
T row_sum(const T* u, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t k = 0; k < n; ++k) acc += u[k];
  return acc;
}

template <typename T>
T abs_max(const T* u, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(max : acc)
  for (int64_t k = 0; k < n; ++k) acc = std::abs(u[k]) > acc ? std::abs(u[k]) : acc;
  return acc;
}

template <typename T>
T row_max(const T* u, int64_t n) {
  T acc = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : acc)
  for (int64_t k = 0; k < n; ++k) acc = u[k] > acc ? u[k] : acc;
  return acc;
}

// Π(v) for each row of v (m×d, contiguous), in place: the row is first scaled by the power of two
// that brings its largest |entry| into [½, 1) (exact, as reference.unit does), so ‖v_i‖² neither
// underflows nor overflows: 1e-20·e₁ in float32 (‖v‖² = 1e-40, subnormal) or 1e-200·e₁ in
// float64 (‖v‖² = 0) still gives e₁. A zero row stays zero. For the few rows formed directly
// (untrusted_rows), never a pass over the batch.
template <typename T>
void unit_rows_(const Tensor& v) {
  TORCH_INTERNAL_ASSERT(v.is_contiguous());
  const int64_t m = v.size(0), d = v.size(1);
  T* p = v.data_ptr<T>();
  at::parallel_for(0, m, grain(2 * d), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* vi = p + i * d;
      const T amax = abs_max(vi, d);
      if (!(amax > 0)) continue;  // a zero row stays zero
      int e;
      std::frexp(amax, &e);  // amax ∈ [2^(e−1), 2^e)
      for (int64_t k = 0; k < d; ++k) vi[k] = std::ldexp(vi[k], -e);
      const T inv_norm = T(1) / std::sqrt(dot(vi, vi, d));  // ‖v_i‖² ≥ ¼
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) vi[k] *= inv_norm;
    }
  });
}

// out (n×n, unit column stride) = V Vᵀ for V (n×k), from its lower block triangle: one GEMM per
// block row (rows [i0, i1) of V times rows [0, i1)), whose transpose is then copied above the
// diagonal (block row i only writes columns [i0, i1) of rows < i0, which no other block row
// touches). With rows enough for 2 blocks of ≥ 64 per thread, the threads take pairs of block
// rows of equal total work (p and nb−1−p), each GEMM single-threaded: one synchronisation in all,
// which also keeps it fast on a machine shared with other jobs. Otherwise the block rows run in
// turn, each GEMM threaded inside.
template <typename T>
void symmetric_gram(const Tensor& v, const Tensor& out) {
  const int64_t n = v.size(0), threads = at::get_num_threads();
  T* o = out.data_ptr<T>();
  const int64_t ld = out.stride(0);
  auto block_row = [&](int64_t i0, int64_t i1) {
    Tensor dst = out.narrow(0, i0, i1 - i0).narrow(1, 0, i1);
    at::mm_out(dst, v.narrow(0, i0, i1 - i0), v.narrow(0, 0, i1).t());
    for (int64_t j = 0; j < i0; ++j)
      for (int64_t i = i0; i < i1; ++i) o[j * ld + i] = o[i * ld + j];
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = i + 1; j < i1; ++j) o[i * ld + j] = o[j * ld + i];
  };
  if (threads > 1 && n >= 2 * threads * 64) {
    const int64_t nb = 2 * threads * std::max<int64_t>(1, n / (2 * threads * 128));
    const int64_t block = (n + nb - 1) / nb;
    at::parallel_for(0, nb / 2, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        for (const int64_t blk : {p, nb - 1 - p})
          block_row(blk * block, std::min(n, (blk + 1) * block));
    });
    return;
  }
  const int64_t block = n <= 64 ? n : n <= 512 ? 64 : 128;
  for (int64_t i0 = 0; i0 < n; i0 += block) block_row(i0, std::min(n, i0 + block));
}

// One group: its rows [begin, begin + n) of the batch, and its views of the batch's buffers
// (x n×d, kl n×(width+C) with K_g in the columns [0, n), q n×n with row stride width).
struct Group {
  int64_t begin, n, width;
  Tensor x, kl, q;
};

}  // namespace
}  // namespace sea_kernels
