// The Gram-space trust rules of the fused CPU kernel (docs/design.md §3): `grad_norms` (‖g_i‖²,
// and the rows where g_i = W a'_i cancels, whose scores attention takes from g_i directly) and
// `untrusted_rows` (the rows whose ‖ĝ_i‖² or n_i² Gram space cannot be trusted; their x̃ is formed
// directly). Internal to csrc/sea_cpu.cpp (anonymous namespace).
#pragma once

#include "sea_rows.h"

namespace sea_kernels {
namespace {

// The result of grad_norms: ‖g_i‖² per row, and the rows where g_i = W a'_i nearly cancels
// (indices ascending, as a vector and a tensor, and their rows of G = A'Wᵀ, m×d; undefined
// tensors when there is none).
template <typename T>
struct GradNorms {
  std::vector<T> g2;
  std::vector<int64_t> row_list;
  Tensor rows, g;
};

// grad_norms: ‖g_i‖² = ‖W a'_i‖² = a'_iᵀ (M a'_i) with M = WᵀW (C ≤ 2b), else Σ_k G_ik² over row
// blocks of G = A'Wᵀ (≥ 64 rows for GEMM efficiency, ≤ ~2^20 elements); per row, so over the
// whole batch whatever the groups. When g_i = W a'_i is small against its terms (nearly parallel
// columns of W), Gram space loses digits twice: a'_iᵀMa'_i is squared-conditioned like ‖ĝ_i‖²
// (untrusted_rows), its rounding error ≲ γ ε B_i with B_i = Σ_cc' |a'_c||M_cc'||a'_c'| ≤
// (Σ_c |a'_ic| ‖w_c‖)², and attention's scores S_i = (A'Lᵀ)_i carry an error ≈ ε √B_i ‖x_j‖
// against x_jᵀg_i. So the rows with ‖g_i‖² < τ (Σ_c |a'_ic| ‖w_c‖)² (either route) get their rows
// of G = A'Wᵀ directly (one m×C by C×d GEMM, none when no row is flagged): ‖g_i‖² from them, and
// attention takes their scores from G Xᵀ.
template <typename T>
GradNorms<T> grad_norms(const Tensor& a, const Tensor& w) {
  const int64_t b = a.size(0), C = a.size(1), d = w.size(0);
  const T* ap = a.const_data_ptr<T>();
  GradNorms<T> out;
  std::vector<T>& g2 = out.g2;
  g2.resize(b);
  std::vector<T> wn(C);  // ‖w_c‖
  if (C <= 2 * b) {
    Tensor m = at::empty({C, C}, a.options());
    symmetric_gram<T>(w.t(), m);
    const Tensor am = at::mm(a, m);
    const T* amp = am.const_data_ptr<T>();
    const T* mp = m.const_data_ptr<T>();
    for (int64_t c = 0; c < C; ++c) wn[c] = std::sqrt(std::max(mp[c * C + c], T(0)));
    at::parallel_for(0, b, grain(C), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) g2[i] = dot(amp + i * C, ap + i * C, C);
    });
  } else {
    const Tensor norms = w.mul(w).sum(0).sqrt().contiguous();
    std::copy_n(norms.const_data_ptr<T>(), C, wn.data());
    const int64_t rows = std::min(b, std::max<int64_t>(64, (int64_t(1) << 20) / d));
    Tensor gbuf = at::empty({rows, d}, a.options());
    for (int64_t i0 = 0; i0 < b; i0 += rows) {
      const int64_t m = std::min(rows, b - i0);
      Tensor g = gbuf.narrow(0, 0, m);
      at::mm_out(g, a.narrow(0, i0, m), w.t());
      const T* gp = g.const_data_ptr<T>();
      at::parallel_for(0, m, grain(d), [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) g2[i0 + i] = dot(gp + i * d, gp + i * d, d);
      });
    }
  }
  constexpr T tau = untrusted_tau<T>();
  const T* wnp = wn.data();
  std::vector<char> flag(b);
  at::parallel_for(0, b, grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* ai = ap + i * C;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t c = 0; c < C; ++c) acc += std::abs(ai[c]) * wnp[c];
      flag[i] = !(g2[i] >= tau * acc * acc);  // (NaN: recomputed too)
    }
  });
  std::vector<int64_t>& rows = out.row_list;
  for (int64_t i = 0; i < b; ++i)
    if (flag[i]) rows.push_back(i);
  if (rows.empty()) return out;
  const int64_t n = static_cast<int64_t>(rows.size());
  out.rows = at::from_blob(rows.data(), {n}, at::kLong).clone();
  out.g = at::mm(a.index_select(0, out.rows), w.t());  // their rows of G = A'Wᵀ
  const Tensor gg = (out.g * out.g).sum(1);
  const T* ggp = gg.const_data_ptr<T>();
  for (int64_t k = 0; k < n; ++k) g2[rows[k]] = ggp[k];
  return out;
}

// The untrusted rows of docs/design.md §3 (local indices in their group, m of them) and their
// ĝ = Q[rows] X (m×d, each row scaled, see untrusted_rows); undefined tensors when there is none.
struct Untrusted {
  Tensor rows, xt;  // the rows (local indices) and their x̃ formed directly (m×d)
  Tensor n;         // n_i = ‖x_i + ηΠ(ĝ_i)‖ (m,) = x̃_i·(x_i + ηΠ(ĝ_i)): the input gradient's 1/n_i
  bool any() const { return rows.defined(); }
};

// untrusted_rows (part of row_epilogue, docs/design.md §3; one group, j over its rows).
// ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij formed in Gram space has an absolute rounding error ≲ γ ε B_i with
//   B_i = Σ_j Q_ij Σ_k Q_ik |K_jk| ≤ Σ_j Q_ij (Q_ij K_jj + κ_j (1 − Q_ij)) ≤ max_j K_jj
// (κ_j = max_{k≠j} |K_jk|; the middle bound is bound_i), plus the rounding of K's own entries,
// ≲ ε max_j K_jj at worst. A row is untrusted when
//   ‖ĝ_i‖² < τ·max(bound_i, ε max_j K_jj)       (its relative error could exceed ≈ ε/τ), or
//   n_i² < max(τ (√K_ii + η)², min)                (n_i² = K_ii + 2η r_i x_iᵀĝ_i + η² cancels: ĝ_i
//                                                  points against x_i and η ≈ ‖x_i‖; or it is
//                                                  below the smallest normal number `min`).
// The `min` floor is the zero row moved by a tiny η: x_i = 0 gives n_i² = η², which underflows
// (η = 1e-20 in float32, 1e-200 in float64) although x̃_i = Π(0 + ηΠ(ĝ_i)) = Π(ĝ_i) for every
// η > 0, while Gram space would take 1/n_i from the clamped n_i² (L̃_i = ηr_i(QL)_i/n_i off by
// their ratio). Such a row is formed directly like the others.
// Since bound_i ≤ max_j K_jj the first rule flags a subset of the rows ‖ĝ_i‖² < τ max_j K_jj
// flags, with the same guarantee, and not the rows of nearly orthogonal features (random
// high-dimensional rows have ‖ĝ_i‖² ~ 1e-2 but κ ~ 1/√d, so their Gram-space value is accurate);
// the floor ε max_j K_jj keeps every row whose ‖ĝ_i‖² underflowed (q_i concentrated on a zero
// row: bound_i underflows too). The flagged rows' ĝ_i = q_i X are formed by one m×n by n×d GEMM
// on their gathered rows of Q; from them x̃_i = Π(x_i + ηΠ(ĝ_i)) is formed directly, as the torch
// backend does, each Π after an exact power-of-two rescaling of the row (unit_rows_: a tiny ĝ_i
// or a u_i = x_i + ηΠ(ĝ_i) of length η keeps its direction where its squared norm underflows).
// The row factors become c1 = 0, c2 = 1 with (QL)_i ← x̃_iᵀW (one m×d by d×C GEMM), and their
// share of dW is x̃_i D_iᵀ (row_epilogue, weight_grad). Forming L̃_i = (l_i + ηr_i(QL)_i)/n_i
// instead lost ε/n_i where u_i is short (n_i = 0.074: dW rows 30× the torch backend's error; the
// fuzz campaign). Nothing is done (no allocation, no GEMM) when no row is flagged; a group of one
// row (Q = 0 exactly) is never flagged. κ and bound_i are formed only when some row has
// ‖ĝ_i‖² < τ max_j K_jj (then one pass over K for κ and O(n) per such row).
template <typename T>
Untrusted untrusted_rows(const Group& grp, const Tensor& w, const std::vector<T>& kd,
                         const std::vector<T>& gh2, const std::vector<T>& n2, T eta,
                         std::vector<T>& c1, std::vector<T>& c2, Tensor& qkl) {
  const int64_t n = grp.n, ld = grp.kl.size(1), ldq = grp.width, C = w.size(1);
  Untrusted u;
  if (n == 1) return u;
  constexpr T tau = untrusted_tau<T>(), eps = std::numeric_limits<T>::epsilon();
  constexpr T tiny = std::numeric_limits<T>::min();
  const T kmax = *std::max_element(kd.begin(), kd.end()), floor = eps * kmax;
  std::vector<int64_t> rows, small;  // small: ‖ĝ_i‖² < τ max_j K_jj, bound_i still to check
  for (int64_t i = 0; i < n; ++i) {
    const T n2_scale = (std::sqrt(kd[i]) + eta) * (std::sqrt(kd[i]) + eta);
    if (gh2[i] > 0 && !(n2[i] >= std::max(tau * n2_scale, tiny)))
      rows.push_back(i);
    else if (!(gh2[i] >= tau * kmax))  // (NaN: recomputed too)
      small.push_back(i);
  }
  if (!small.empty()) {
    const T* klp = grp.kl.const_data_ptr<T>();
    const T* qp = grp.q.const_data_ptr<T>();
    std::vector<T> kappa(n);  // κ_j = max_{k≠j} |K_jk|
    at::parallel_for(0, n, grain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t j = r0; j < r1; ++j) {
        const T* kj = klp + j * ld;
        kappa[j] = std::max(abs_max(kj, j), abs_max(kj + j + 1, n - j - 1));
      }
    });
    const T* kap = kappa.data();
    const T* kdp = kd.data();
    std::vector<char> keep(small.size());
    at::parallel_for(0, int64_t(small.size()), grain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t k = r0; k < r1; ++k) {
        const int64_t i = small[k];
        const T* qi = qp + i * ldq;
        T bound = 0;
#pragma omp simd reduction(+ : bound)
        for (int64_t j = 0; j < n; ++j)
          bound += qi[j] * (qi[j] * kdp[j] + kap[j] * (T(1) - qi[j]));
        keep[k] = !(gh2[i] >= tau * std::max(bound, floor));
      }
    });
    for (size_t k = 0; k < small.size(); ++k)
      if (keep[k]) rows.push_back(small[k]);
    std::sort(rows.begin(), rows.end());
  }
  if (rows.empty()) return u;
  const int64_t m = static_cast<int64_t>(rows.size());
  u.rows = at::from_blob(rows.data(), {m}, at::kLong).clone();
  const Tensor gh = at::mm(grp.q.index_select(0, u.rows), grp.x);  // ĝ of the flagged rows (m×d)
  unit_rows_<T>(gh);                                                   // Π(ĝ_i) (0 for ĝ_i = 0)
  u.xt = grp.x.index_select(0, u.rows).add_(gh, eta);                  // u_i = x_i + ηΠ(ĝ_i)
  const Tensor moved = u.xt.clone();
  unit_rows_<T>(u.xt);                                                 // x̃_i = Π(u_i)
  u.n = (u.xt * moved).sum(1);  // ‖u_i‖ without squaring it (no underflow for a tiny η)
  for (int64_t k = 0; k < m; ++k) {
    c1[rows[k]] = T(0);
    c2[rows[k]] = T(1);
  }
  qkl.narrow(1, grp.width, C).index_copy_(0, u.rows, at::mm(u.xt, w));  // (QL)_i ← x̃_iᵀW
  return u;
}

}  // namespace
}  // namespace sea_kernels
