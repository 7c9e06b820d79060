// Fused CPU kernel of the SeA loss and its gradient in Gram space (docs/design.md §2), the `cpp`
// backend of docs/design.md §5: same contract and the same stage names as the Triton and Python
// backends. With L = XW, K = XXᵀ, Z = (L + 1bᵀ + δ(1−Y))/λ (b: the optional bias), P = softmax(Z),
// A = P − Y (P for negative_only), the stages, in order (numerics: docs/design.md §3, exact at
// every margin). With groups of G consecutive rows (group_size; None: the whole batch) K, Q and the
// Gram-space products are block diagonal: only the G×G blocks K_g, Q_g exist (no b×b buffer), the
// stages marked [g] run group by group (in parallel over groups when there are enough), the
// others once over the whole batch:
//   logits_and_gram  [K | L] = [XXᵀ | XW]                one b×(G+C) buffer, L in one GEMM, K_g
//                                                        [g] from its lower block triangle
//   row_prep         A' = A / (1 − p_y): a'_c =          S is invariant to a positive row
//                    softmax_{c≠y}(z)_c, a'_y = −1       scale; exact at every margin (p_y − 1
//                    (negative_only: P / max_c p_ic)     is never formed), max|a'| = 1
//   grad_norms       ‖g_i‖² = ‖W a'_i‖²                  a'_iᵀ M a'_i, M = WᵀW (C ≤ 2b), else
//                                                        rows of G = A'Wᵀ; rows where W a'_i
//                                                        cancels: their rows of G (and S)
//   attention [g]    Q = softmax_j(S), S_ij = (A'Lᵀ)_ij / (α‖g_i‖), S_ii = −∞   (x_jᵀg_i =
//                    l_jᵀa_i: no bias);  x_iᵀĝ_i = Σ_j Q_ij K_ij;  zero rows masked like S_ii
//   row_epilogue [g] [QK | QL] = Q [K | L]               one GEMM on the [K | L] buffer
//                    ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij, r_i = 1/‖ĝ_i‖ (0 when ĝ_i = 0),
//                    n_i = sqrt(K_ii + 2η r_i x_iᵀĝ_i + η²) (no η² when ĝ_i = 0); untrusted rows
//                    (‖ĝ_i‖² or n_i² below τ times its rounding-error scale) get x̃_i =
//                    Π(x_i + ηΠ(q_i X)) directly, c1 = 0, c2 = 1, (QL)_i ← x̃_iᵀW (GEMMs over
//                    those rows only);  L̃ = diag(c1) L + diag(c2) QL + 1bᵀ,
//                    t_i = log Σ_{c≠y} e^{z̃_c−z̃_y},  ℓ_i = λ softplus(t_i),
//                    D = diag(s)(softmax(Z̃) − Y) = diag(s σ(t)) (U' − Y), U' the softmax over
//                    c ≠ y (u'_y = 0); split into U = diag(1/n) D, V = diag(ηr/n) D
//   grad_rows [g]    R = U + QᵀV                         X̃ = diag(1/n) X + diag(ηr/n) QX, so
//   weight_grad      dW = XᵀR (+ X̃_uᵀD_u over the        X̃ᵀD = XᵀR; the untrusted rows of V
//                    untrusted rows), db = Σ_i D_i       are zeroed in R and added from x̃
// With input_grad (dX = ∂/∂X with the direction fixed, docs/design.md §8) X̃ is formed in row
// space instead of the last Gram-space products: per group QX = Q_g X_g (one GEMM on q), ‖ĝ_i‖²
// from its rows (no QK), QL = (QX)W when d < G (else Q L), X̃ = diag(c1) X + diag(c2) QX (the
// untrusted rows' x̃ as formed), β_i = D_i·(L̃_i − b) in the epilogue's row pass; then
// γ = D Wᵀ, dX_i = (γ_i − β_i x̃_i)/n_i (one row pass) and dW = X̃ᵀD (no R = U + QᵀV).
// GEMMs through ATen (MKL), every row step one at::parallel_for pass (inline on its group's thread
// when groups run in parallel); sea_rows.h the row primitives, sea_trust.h the rules of §3.
#include "sea_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "sea_exp.h"
#include "sea_rows.h"
#include "sea_trust.h"

namespace sea_kernels {
namespace {

// The scalar hyperparameters of one call, in the compute type; bias: the (C,) bias b of the
// logits L + 1bᵀ of row_prep and row_epilogue (nullptr: none).
template <typename T>
struct Hyper {
  T alpha, eta, lam, inv_lam, delta;
  bool negative_only;
  const T* bias;
};

// The batch's buffers for groups of `width` = G rows (docs/design.md §2; G = b: the whole batch,
// the layout of the paper's case): kl (b×(G+C)) holds in row i K_i over the rows of i's group
// (columns [0, n_g), n_g ≤ G its size) and L_i (columns [G, G+C)); q (b×G) holds q_i over the
// same rows. A group's [K_g | L_g] is its rows of kl, Q_g its rows and first n_g columns of q,
// so every stage below sees one group (the whole batch is one group) and no b×b buffer exists.

// logits (part of logits_and_gram): L = XW into the columns [width, width+C) of kl, as
// Lᵀ = WᵀXᵀ for C < kNarrow; the whole batch in one GEMM.
template <typename T>
void logits(const Tensor& x, const Tensor& w, const Tensor& kl, int64_t width) {
  const int64_t b = x.size(0), C = w.size(1), ld = kl.size(1);
  Tensor l = kl.narrow(1, width, C);
  if (C < kNarrow) {
    const Tensor lt = at::mm(w.t(), x.t());  // Lᵀ (C×b)
    const T* ltp = lt.const_data_ptr<T>();
    T* lp = l.data_ptr<T>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t c = 0; c < C; ++c) lp[i * ld + c] = ltp[c * b + i];
  } else {
    at::mm_out(l, x, w);
  }
}

// row_prep: per row, z = (l + b + δ(1−y))/λ (b: the bias, if any) and the direction of a = p − y
// exactly (docs/design.md §3): a = (1 − p_y) a' with a'_c = softmax_{c≠y}(z)_c =
// e^{z_c − m'}/Σ_{c'≠y} e^{z_c' − m'} for c ≠ y (m' = max_{c≠y} z_c, so the sum is ≥ 1) and
// a'_y = −1; max|a'| = 1 already. p_y − 1 is never formed (it rounds to 0 once 1 − p_y < ulp(1)/2).
// negative_only: a = p = softmax(z), then A' = a / max_c a_c — b×C, the whole batch.
template <typename T>
Tensor row_prep(const Tensor& kl, int64_t width, const int64_t* y, const Hyper<T>& h) {
  const int64_t b = kl.size(0), ld = kl.size(1), C = ld - width;
  const T* klp = kl.const_data_ptr<T>();
  const T delta = h.delta, inv_lam = h.inv_lam;
  const T* bias = h.bias;
  const bool negative_only = h.negative_only;
  Tensor a = at::empty({b, C}, kl.options());
  T* ap = a.data_ptr<T>();
  at::parallel_for(0, b, grain(2 * C), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* li = klp + i * ld + width;
      T* ai = ap + i * C;
      const int64_t yi = y[i];
      if (bias) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) ai[c] = (li[c] + bias[c] + delta) * inv_lam;
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) ai[c] = (li[c] + delta) * inv_lam;
      }
      if (!negative_only) {
        ai[yi] = -std::numeric_limits<T>::infinity();  // e^{−∞ − m'} = 0
        exp_shifted(ai, row_max(ai, C), C);
        const T inv_sum = T(1) / row_sum(ai, C);  // the sum is ≥ 1 (its largest term is e^0)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) ai[c] *= inv_sum;
        ai[yi] = -1;
        continue;
      }
      ai[yi] = (li[yi] + (bias ? bias[yi] : T(0))) * inv_lam;
      exp_shifted(ai, row_max(ai, C), C);
      const T inv_sum = T(1) / row_sum(ai, C);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) ai[c] *= inv_sum;
      T amax = 0;
#pragma omp simd reduction(max : amax)
      for (int64_t c = 0; c < C; ++c) amax = std::abs(ai[c]) > amax ? std::abs(ai[c]) : amax;
      if (amax > 0) {
        const T inv_amax = T(1) / amax;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) ai[c] *= inv_amax;
      }
    }
  });
  return a;
}

// attention (one group): S = A'_g L_gᵀ into q (the rows grad_norms flagged from G_g X_gᵀ), then
// per row Q_i = softmax_j(S_ij / (α‖g_i‖)) over the group's rows, S_ii = −∞, in place (a zero
// g_i gives S_i = 0: a uniform q_i); and x_iᵀĝ_i = Σ_j Q_ij K_ij into xg. Zero rows of X
// (x_j = 0) are masked like the diagonal: they add nothing to ĝ_i = Σ_j Q_ij x_j, and only ĝ_i's
// direction is used (with the Qᵀ term of grad_rows, r_i Q_ij is invariant to the row's
// normalisation), so leaving them out is exact; kept in, a zero row with S_ij = 0 above scores
// ≤ −87 would take all of q_i once e^x flushes the others to 0, and ĝ_i = 0 instead of its tiny
// but well-defined direction. A row with no non-zero partner in its group gets Q_i = 0 (ĝ_i = 0,
// as for a group of one row). g2, xg: the group's entries; flagged/g: the group's flagged rows
// (local indices) and their rows of G (undefined: none).
template <typename T>
void attention(const Tensor& a, const Group& grp, const T* g2, const Tensor& flagged,
               const Tensor& g, T alpha, T* xg) {
  const int64_t n = grp.n, ld = grp.kl.size(1), ldq = grp.width;
  constexpr T tiny = std::numeric_limits<T>::min();
  constexpr T inf = std::numeric_limits<T>::infinity();
  const T* klp = grp.kl.const_data_ptr<T>();
  Tensor q = grp.q;
  T* qp = q.data_ptr<T>();
  at::mm_out(q, a, grp.kl.narrow(1, grp.width, ld - grp.width).t());
  if (flagged.defined()) q.index_copy_(0, flagged, at::mm(g, grp.x.t()));  // x_jᵀg_i directly
  // Exactly zero rows (x_j = 0), as the other backends test it: K_jj = 0 also when ‖x_j‖²
  // underflows (entries below ≈ 1e-19 in float32), but such a row still has a direction.
  std::vector<int64_t> zero_rows;
  for (int64_t j = 0; j < n; ++j)
    if (!(klp[j * ld + j] > 0) && !grp.x.select(0, j).ne(0).any().item<bool>())
      zero_rows.push_back(j);
  at::parallel_for(0, n, grain(2 * n), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* qi = qp + i * ldq;
      const T scale = (g2[i] > 0 ? T(1) / std::sqrt(std::max(g2[i], tiny)) : T(0)) / alpha;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) qi[j] *= scale;
      qi[i] = -inf;
      for (const int64_t j : zero_rows) qi[j] = -inf;
      const T qmax = row_max(qi, n);
      if (qmax == -inf) {  // no non-zero partner
        std::fill_n(qi, n, T(0));
        xg[i] = 0;
        continue;
      }
      exp_shifted(qi, qmax, n);
      const T inv_sum = T(1) / row_sum(qi, n);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) qi[j] *= inv_sum;
      xg[i] = dot(qi, klp + i * ld, n);
    }
  });
}

// The gradient buffers of one group, views of the batch's (undefined without compute_grad):
// U = diag(c1) D (n×C; grad_rows turns it into R in place), V = diag(c2) D with the untrusted
// rows zeroed (c1 = 0 there; their share is x̃_i D_iᵀ: weight_grad adds X̃_uᵀ V_rows, V_rows
// their rows of V = D), and D itself only with a bias (db = Σ_i D_i).
struct GradFactors {
  Tensor u, v, d;
};

// What the input gradient needs of one group's row_epilogue (null pointers: not requested): the
// row factors c1, c2 of X̃ = diag(c1) X + diag(c2) QX and β_i = D_i·(L̃_i − b) (n each).
template <typename T>
struct InputGradRows {
  T *c1 = nullptr, *c2 = nullptr, *beta = nullptr;
};

// The group's share of dW that Gram space leaves out: its untrusted rows' ĝ and V rows.
struct GroupResult {
  Untrusted untrusted;
  Tensor v_rows;
};

// row_epilogue (one group): [QK | QL] = Q [K | L] (one GEMM), then per row ‖ĝ_i‖² =
// Σ_j (QK)_ij Q_ij, r_i = 1/‖ĝ_i‖ (0 when ĝ_i = 0) and 1/n_i with n_i² = K_ii + 2η r_i x_iᵀĝ_i + η²
// (no η² when ĝ_i = 0), the untrusted rows redone from ĝ_i = q_i X (untrusted_rows); then per row
// the augmented logits z̃ = (l/n + (ηr/n) ql + b + δ(1−y))/λ (L̃ = diag(1/n) L + diag(ηr/n) QL is
// X̃W; the bias b is added to it, never to the scores of attention) and, exact at every margin
// (docs/design.md §3): m' = max_{c≠y} z̃_c, s = Σ_{c≠y} e^{z̃_c − m'} ≥ 1,
// t = m' − z̃_y + log s = log Σ_{c≠y} e^{z̃_c − z̃_y}, the loss ℓ_i = λ softplus(t) into losses
// and, with compute_grad, D = s_i σ(t) (u − e_y) with u_c = e^{z̃_c − m'}/s (c ≠ y), u_y = 0
// (σ(t) = 1 − p̃_y = Σ_{c≠y} p̃_c, never formed by cancellation), into U and V (and D).
template <typename T>
GroupResult row_epilogue(const Group& grp, const Tensor& w, const T* xg, const int64_t* y,
                         const T* row_scale, const Hyper<T>& h, const GradFactors& f,
                         T* lossp, const InputGradRows<T>& ig, const Tensor& qx) {
  const int64_t n = grp.n, ld = grp.kl.size(1), ldq = grp.width, C = w.size(1);
  const int64_t lo = grp.width;  // the column of L in kl (and of QL in qkl)
  constexpr T tiny = std::numeric_limits<T>::min();
  constexpr T inf = std::numeric_limits<T>::infinity();
  const T eta = h.eta, lam = h.lam, inv_lam = h.inv_lam, delta = h.delta;
  const T* bias = h.bias;
  // With the input gradient QX (n×d) is formed anyway: ‖ĝ_i‖² = ‖(QX)_i‖² from its rows, and
  // only QL is multiplied (no n×n by n×n QK): as (QX)W (n·d·C) when d < n, else Q L (n·n·C).
  Tensor qkl;
  if (qx.defined()) {
    qkl = at::empty({n, ld}, grp.kl.options());
    Tensor ql = qkl.narrow(1, lo, C);
    if (grp.x.size(1) < n)
      at::mm_out(ql, qx, w);
    else
      at::mm_out(ql, grp.q, grp.kl.narrow(1, lo, C));
  } else {
    qkl = at::mm(grp.q, grp.kl);
  }
  const T* qklp = qkl.const_data_ptr<T>();
  const T* qxp = qx.defined() ? qx.const_data_ptr<T>() : nullptr;
  const int64_t dim = grp.x.size(1);
  const T* klp = grp.kl.const_data_ptr<T>();
  const T* qp = grp.q.const_data_ptr<T>();
  std::vector<T> kd(n), gh2(n), n2(n), r(n), inv_n(n);
  for (int64_t j = 0; j < n; ++j) kd[j] = klp[j * ld + j];
  const T* kdp = kd.data();
  at::parallel_for(0, n, grain(2 * n), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T acc = qxp ? dot(qxp + i * dim, qxp + i * dim, dim)
                        : dot(qklp + i * ld, qp + i * ldq, n);
      gh2[i] = acc;
      const bool moved = acc > 0;
      r[i] = moved ? T(1) / std::sqrt(std::max(acc, tiny)) : T(0);
      n2[i] = kdp[i] + 2 * eta * r[i] * xg[i] + (moved ? eta * eta : T(0));
      inv_n[i] = T(1) / std::sqrt(std::max(n2[i], tiny));
    }
  });
  std::vector<T> c1(n), c2(n);  // L̃ = diag(c1) L + diag(c2) QL: c1 = 1/n, c2 = ηr/n
  for (int64_t i = 0; i < n; ++i) {
    c1[i] = inv_n[i];
    c2[i] = eta * r[i] * inv_n[i];
  }
  GroupResult out;
  out.untrusted = untrusted_rows<T>(grp, w, kd, gh2, n2, eta, c1, c2, qkl);
  if (ig.c1) {
    std::copy(c1.begin(), c1.end(), ig.c1);
    std::copy(c2.begin(), c2.end(), ig.c2);
  }
  T* betap = ig.beta;
  const bool grad = f.u.defined();
  T* up = grad ? f.u.data_ptr<T>() : nullptr;
  T* vp = grad ? f.v.data_ptr<T>() : nullptr;
  T* dp = f.d.defined() ? f.d.data_ptr<T>() : nullptr;
  at::parallel_for(0, n, grain(3 * C), [&](int64_t r0, int64_t r1) {
    std::vector<T> e(C);
    for (int64_t i = r0; i < r1; ++i) {
      const T* qli = qklp + i * ld + lo;
      const T* li = klp + i * ld + lo;
      const int64_t yi = y[i];
      const T in = c1[i], cq = c2[i];
      T* z = e.data();
      T zy;
      if (bias) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          z[c] = (in * li[c] + cq * qli[c] + bias[c] + delta) * inv_lam;
        zy = (in * li[yi] + cq * qli[yi] + bias[yi]) * inv_lam;
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) z[c] = (in * li[c] + cq * qli[c] + delta) * inv_lam;
        zy = (in * li[yi] + cq * qli[yi]) * inv_lam;
      }
      z[yi] = -inf;  // e^{−∞ − m'} = 0
      const T m = row_max(z, C);
      exp_shifted(z, m, C);
      const T s = row_sum(z, C);  // Σ_{c≠y} e^{z̃_c − m'} ≥ 1
      const T t = (m - zy) + std::log(s);
      const T et = std::exp(-std::abs(t));  // e^{−|t|} ∈ (0, 1]
      lossp[i] = lam * (std::max(t, T(0)) + std::log1p(et));  // λ softplus(t)
      if (!grad) continue;
      // σ(t) = 1/(1 + e^{−t}) for t ≥ 0, e^t/(1 + e^t) for t < 0: no overflow, no cancellation
      const T sigma = (t >= 0 ? T(1) : et) / (T(1) + et);
      const T dy = -row_scale[i] * sigma;  // D_iy = s_i (p̃_y − 1)
      const T dscale = row_scale[i] * sigma / s;
      T* ui = up + i * C;
      T* vi = vp + i * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T dic = dscale * z[c];
        ui[c] = in * dic;
        vi[c] = cq * dic;
      }
      ui[yi] = in * dy;
      vi[yi] = cq * dy;
      if (dp) {
        T* di = dp + i * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) di[c] = dscale * z[c];
        di[yi] = dy;
      }
      if (betap) {  // β_i = D_i·(L̃_i − b), L̃_i − b = c1 l_i + c2 (QL)_i (z[yi] = 0 here)
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t c = 0; c < C; ++c) acc += z[c] * (in * li[c] + cq * qli[c]);
        betap[i] = dscale * acc + dy * (in * li[yi] + cq * qli[yi]);
      }
    }
  });
  if (grad && out.untrusted.any()) {
    out.v_rows = f.v.index_select(0, out.untrusted.rows);
    f.v.index_fill_(0, out.untrusted.rows, 0);
  }
  return out;
}

// grad_rows (one group): R_g = U_g + Q_gᵀV_g, in place over U_g (n×C). Since X̃ = diag(1/n) X +
// diag(ηr/n) QX, the gradient X̃ᵀD of the augmented batch is XᵀR: row j of R collects D_j/n_j and
// x_j's share Q_ij of every ĝ_i of its group (but the untrusted rows', whose rows of V are zero:
// weight_grad adds them).
void grad_rows(const Tensor& q, const GradFactors& f) { f.u.addmm_(q.t(), f.v); }

// weight_grad: dW = XᵀR (d×C, the whole batch in one GEMM), as (RᵀX)ᵀ for C < kNarrow, plus the
// untrusted rows' share Σ_i x̃_i D_iᵀ = X̃_uᵀ V_rows from their x̃ (c2 = 1: V_rows = D_rows; every
// group's at once).
Tensor weight_grad(const Tensor& x, const Tensor& r, const std::vector<GroupResult>& groups) {
  Tensor dw = r.size(1) < kNarrow ? at::mm(r.t(), x).t().contiguous() : at::mm(x.t(), r);
  std::vector<Tensor> xt, v_rows;
  for (const GroupResult& g : groups)
    if (g.untrusted.any()) {
      xt.push_back(g.untrusted.xt);
      v_rows.push_back(g.v_rows);
    }
  if (xt.size() == 1) dw.addmm_(xt[0].t(), v_rows[0]);
  if (xt.size() > 1) dw.addmm_(at::cat(xt).t(), at::cat(v_rows));
  return dw;
}

// augmented_rows (one group, for the input gradient): X̃_g = diag(c1) X_g + diag(c2) Q_g X_g
// in place over xa = Q_g X_g (n×d, a view of the batch's b×d buffer), the untrusted rows
// from their x̃ formed directly; inv_n (n) gets 1/n_i: c1 for the others, 1/‖x_i + ηΠ(ĝ_i)‖ for
// the untrusted rows (0 where that is 0: Π's derivative at 0 is taken as 0, as autograd of
// reference.unit gives).
template <typename T>
void augmented_rows(const Group& grp, const Tensor& xa, const T* c1, const T* c2,
                    const Untrusted& un, T* inv_n) {
  const int64_t n = grp.n, d = grp.x.size(1);
  const T* xp = grp.x.const_data_ptr<T>();
  const int64_t ldx = grp.x.stride(0), ldx1 = grp.x.stride(1);
  T* ap = xa.data_ptr<T>();
  at::parallel_for(0, n, grain(2 * d), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* ai = ap + i * d;
      const T* xi = xp + i * ldx;
      const T a = c1[i], b = c2[i];
      for (int64_t k = 0; k < d; ++k) ai[k] = a * xi[k * ldx1] + b * ai[k];
      inv_n[i] = a;
    }
  });
  if (!un.any()) return;
  xa.index_copy_(0, un.rows, un.xt);
  const Tensor nn = un.n.contiguous();
  const T* np = nn.const_data_ptr<T>();
  const int64_t* rp = un.rows.const_data_ptr<int64_t>();
  for (int64_t k = 0; k < un.rows.size(0); ++k) inv_n[rp[k]] = np[k] > 0 ? T(1) / np[k] : T(0);
}

// input_grad (op/input_grad.py, docs/design.md §8): ∂(Σ_i s_i ℓ(x̃_i))/∂X with the direction
// fixed, (γ_i − β_i x̃_i)/n_i with γ = D Wᵀ (one b×C by C×d GEMM), in place over γ.
template <typename T>
Tensor input_grad(const Tensor& d, const Tensor& w, const T* beta, const Tensor& xa,
                  const T* inv_n) {
  Tensor gamma = at::mm(d, w.t()).contiguous();
  const int64_t b = gamma.size(0), dim = gamma.size(1);
  T* gp = gamma.data_ptr<T>();
  const T* ap = xa.const_data_ptr<T>();
  at::parallel_for(0, b, grain(2 * dim), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* gi = gp + i * dim;
      const T* ai = ap + i * dim;
      const T bi = beta[i], s = inv_n[i];
#pragma omp simd
      for (int64_t k = 0; k < dim; ++k) gi[k] = (gi[k] - bi * ai[k]) * s;
    }
  });
  return gamma;
}

// Whether the groups run in parallel (each on one thread, its GEMMs single-threaded) rather than
// in turn (each stage threaded inside): when there are enough of them to keep every thread busy,
// at most 25% idle (at::parallel_for gives each thread ⌈k/threads⌉ groups).
bool groups_in_parallel(int64_t groups) {
  const int64_t threads = at::get_num_threads();
  return threads > 1 && groups >= threads && (groups % threads == 0 || groups >= 4 * threads);
}

// The stages in order (docs/design.md §2). Over the whole batch: logits (L = XW), row_prep,
// grad_norms; then per group of `group` consecutive rows (≥ b: one group, the whole batch):
// K_g = X_g X_gᵀ (the rest of logits_and_gram), attention, row_epilogue, grad_rows; then
// weight_grad over the whole batch, and db = Σ_i D_i. A group of one row has no other example to
// project on: Q_g = 0, x_iᵀĝ_i = 0 (ĝ = 0, so x̃ = unit(x)), and attention is skipped (row_prep
// and grad_norms too when every group has one row).
template <typename T>
void sea_impl(const Tensor& x, const Tensor& w, const int64_t* y, const T* row_scale,
              const Hyper<T>& h, int64_t group, bool compute_grad, bool want_dx,
              const Tensor& losses, Tensor& dw, Tensor& db, Tensor& dx) {
  const int64_t b = x.size(0), C = w.size(1);
  const int64_t width = group >= b ? b : group;
  const int64_t groups = (b + width - 1) / width;
  const Tensor kl = at::empty({b, width + C}, x.options());
  logits<T>(x, w, kl, width);
  const Tensor q = at::empty({b, width}, x.options());
  std::vector<T> xg(b, T(0));
  Tensor a;
  GradNorms<T> gn;
  if (width > 1) {
    a = row_prep<T>(kl, width, y, h);
    gn = grad_norms<T>(a, w);
  }
  GradFactors f;
  const bool grad = compute_grad || want_dx;  // D is needed for either
  if (grad) {
    f.u = at::empty({b, C}, x.options());
    f.v = at::empty({b, C}, x.options());
    if (h.bias || want_dx) f.d = at::empty({b, C}, x.options());
  }
  // the input gradient's rows: c1, c2, β, 1/n (b each) and X̃ (b×d)
  std::vector<T> c1(want_dx ? b : 0), c2(want_dx ? b : 0), beta(want_dx ? b : 0),
      inv_n(want_dx ? b : 0);
  const Tensor xa = want_dx ? at::empty({b, x.size(1)}, x.options()) : Tensor();
  std::vector<GroupResult> results(groups);
  T* lossp = losses.data_ptr<T>();
  auto run_group = [&](int64_t k) {
    at::AutoDispatchBelowADInplaceOrView guard;  // (thread-local: again on each worker thread)
    const int64_t s = k * width, n = std::min(width, b - s);
    const Group grp{s, n, width, x.narrow(0, s, n), kl.narrow(0, s, n),
                    q.narrow(0, s, n).narrow(1, 0, n)};
    symmetric_gram<T>(grp.x, grp.kl.narrow(1, 0, n));
    if (n < width) grp.kl.narrow(1, n, width - n).zero_();  // the short last group's gap
    if (n == 1) {
      grp.q.zero_();
    } else {
      Tensor flagged, g;  // grad_norms' flagged rows of this group (ascending)
      const auto& rows = gn.row_list;
      const int64_t k0 = std::lower_bound(rows.begin(), rows.end(), s) - rows.begin();
      const int64_t k1 = std::lower_bound(rows.begin(), rows.end(), s + n) - rows.begin();
      if (k1 > k0) {
        flagged = gn.rows.narrow(0, k0, k1 - k0) - s;
        g = gn.g.narrow(0, k0, k1 - k0);
      }
      attention<T>(a.narrow(0, s, n), grp, gn.g2.data() + s, flagged, g, h.alpha, xg.data() + s);
    }
    GradFactors fg;
    if (grad) {
      fg.u = f.u.narrow(0, s, n);
      fg.v = f.v.narrow(0, s, n);
      if (f.d.defined()) fg.d = f.d.narrow(0, s, n);
    }
    InputGradRows<T> ig;
    Tensor qx;  // Q_g X_g (one GEMM on the group's q), with the input gradient only
    if (want_dx) {
      ig = {c1.data() + s, c2.data() + s, beta.data() + s};
      qx = xa.narrow(0, s, n);
      at::mm_out(qx, grp.q, grp.x);
    }
    results[k] = row_epilogue<T>(grp, w, xg.data() + s, y + s, row_scale + s, h, fg, lossp + s,
                                 ig, qx);
    if (want_dx)
      augmented_rows<T>(grp, xa.narrow(0, s, n), c1.data() + s, c2.data() + s,
                        results[k].untrusted, inv_n.data() + s);
    if (compute_grad && !want_dx) grad_rows(grp.q, fg);
  };
  if (groups == 1) {
    run_group(0);
  } else if (groups_in_parallel(groups)) {
    at::parallel_for(0, groups, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) run_group(k);
    });
  } else {
    for (int64_t k = 0; k < groups; ++k) run_group(k);
  }
  if (want_dx) dx = input_grad<T>(f.d, w, beta.data(), xa, inv_n.data());
  if (!compute_grad) return;
  // with the input gradient X̃ is formed (untrusted rows included): dW = X̃ᵀD, one GEMM, and no
  // R = U + QᵀV
  dw = want_dx ? at::mm(xa.t(), f.d) : weight_grad(x, f.u, results);
  if (h.bias) db = f.d.sum(0);
}

}  // namespace

// The arguments come validated from Python (sea_kernels.op.call.validate: hyper-parameter ranges,
// the bias finite, the compute dtype): the checks here only guard memory — shapes that agree,
// dtypes it can read, CPU tensors, a group size ≥ 1 and labels that index a column of W.
std::tuple<Tensor, Tensor, Tensor, Tensor> sea_fwd_cpu(
    const Tensor& x, const Tensor& labels, const Tensor& weight, const Tensor& row_scale,
    double alpha, double eta, double lam, double delta, bool negative_only, bool compute_grad,
    std::optional<int64_t> group_size, const std::optional<Tensor>& bias, bool input_grad) {
  TORCH_CHECK(x.dim() == 2, "sea_fwd_cpu: x must be 2-D (batch × features), got shape ",
              x.sizes());
  TORCH_CHECK(weight.dim() == 2,
              "sea_fwd_cpu: weight must be 2-D (features × classes), got shape ", weight.sizes());
  const int64_t b = x.size(0), d = x.size(1), C = weight.size(1);
  TORCH_CHECK(b >= 1 && d >= 1, "sea_fwd_cpu: x must have at least one row and one feature, got ",
              x.sizes());
  TORCH_CHECK(weight.size(0) == d, "sea_fwd_cpu: weight must have shape (", d,
              ", classes) to match x, got ", weight.sizes());
  // The exact direction (row_prep) and the loss (row_epilogue) take a max over the classes c ≠ y.
  TORCH_CHECK_VALUE(C >= 2, "sea_fwd_cpu: weight needs at least 2 classes (columns), got shape ",
                    weight.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == b, "sea_fwd_cpu: labels must have shape (",
              b, ",), got ", labels.sizes());
  TORCH_CHECK(row_scale.dim() == 1 && row_scale.size(0) == b,
              "sea_fwd_cpu: row_scale must have shape (", b, ",), got ", row_scale.sizes());
  TORCH_CHECK_VALUE(!group_size || *group_size >= 1,
                    "sea_fwd_cpu: group_size must be ≥ 1 (None: the whole batch), got ",
                    group_size.value_or(0));
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == C, "sea_fwd_cpu: bias must have shape (", C,
                ",) to match weight, got ", bias->sizes());
  std::vector<const Tensor*> tensors{&x, &labels, &weight, &row_scale};
  if (has_bias) tensors.push_back(&*bias);
  for (const Tensor* t : tensors)
    TORCH_CHECK(t->device().is_cpu(), "sea_fwd_cpu: all tensors must be on the CPU, got one on ",
                t->device());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && at::isFloatingType(weight.scalar_type()) &&
                  (!has_bias || at::isFloatingType(bias->scalar_type())),
              "sea_fwd_cpu: x, weight and bias must be floating point, got ", x.scalar_type(),
              ", ", weight.scalar_type(), has_bias ? ", " : "",
              has_bias ? c10::toString(bias->scalar_type()) : "");
  // The compute dtype is row_scale's (the host's choice, sea_kernels.op.call.compute_dtype).
  const auto ct = row_scale.scalar_type();
  TORCH_CHECK(ct == at::kFloat || ct == at::kDouble,
              "sea_fwd_cpu: row_scale (its dtype is the compute dtype) must be float32 or "
              "float64 (floating point), got ", ct);
  TORCH_CHECK(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false),
              "sea_fwd_cpu: labels must be an integer tensor, got ", labels.scalar_type());

  at::AutoDispatchBelowADInplaceOrView guard;  // the internal ops record no autograd graph
  // Row- or column-major operands go to BLAS as they are; any other layout is copied once here
  // rather than inside every GEMM.
  auto operand = [ct](const Tensor& t) {
    Tensor c = t.to(ct);
    return c.stride(0) == 1 || c.stride(1) == 1 ? c : c.contiguous();
  };
  const Tensor xc = operand(x), wc = operand(weight);
  const Tensor y = labels.to(at::kLong).contiguous();
  const Tensor s = row_scale.contiguous();
  const Tensor bc = has_bias ? bias->to(ct).contiguous() : Tensor();
  const int64_t* yp = y.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i)  // a label indexes a column of W, Z and Y: out of range reads
    TORCH_CHECK(yp[i] >= 0 && yp[i] < C, "sea_fwd_cpu: labels[", i, "] = ", yp[i],
                " is out of range: labels must lie in [0, ", C, ") for a weight with ", C,
                " classes");

  Tensor losses = at::empty({b}, xc.options());
  Tensor dw = at::empty({0}, xc.options()), db = at::empty({0}, xc.options());
  Tensor dx = at::empty({0}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(ct, "sea_fwd_cpu", [&] {
    using T = scalar_t;
    const Hyper<T> h{T(alpha), T(eta), T(lam), T(1) / T(lam), T(delta), negative_only,
                     has_bias ? bc.const_data_ptr<T>() : nullptr};
    sea_impl<T>(xc, wc, yp, s.const_data_ptr<T>(), h, group_size.value_or(b), compute_grad,
                input_grad, losses, dw, db, dx);
  });
  return {losses, dw, db, dx};
}

}  // namespace sea_kernels

TORCH_LIBRARY(sea_kernels, m) {
  m.def(
      "sea_fwd_cpu(Tensor x, Tensor labels, Tensor weight, Tensor row_scale, float alpha, "
      "float eta, float lam, float delta, bool negative_only, bool compute_grad, "
      "int? group_size=None, Tensor? bias=None, bool input_grad=False) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sea_kernels, CPU, m) { m.impl("sea_fwd_cpu", &sea_kernels::sea_fwd_cpu); }
