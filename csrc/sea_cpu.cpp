// Fused CPU kernel of the SeA loss and its gradient in Gram space (docs/design.md §2), the `cpp`
// backend of docs/design.md §5: same contract and the same stage names as the Triton and Python
// backends. With L = XW, K = XXᵀ, Z = (L + δ(1−Y))/λ, P = softmax(Z), A = P − Y (P for
// negative_only), the stages, in order (numerics: docs/design.md §3):
//   logits_and_gram  [K | L] = [XXᵀ | XW]                one b×(b+C) buffer, K from its lower
//                                                        block triangle
//   row_prep         A' = A / max_c|a_ic|                S is invariant to the row scale; ‖g_i‖
//                                                        cannot underflow (p_y − 1 is rounded
//                                                        exactly as the reference rounds it)
//   grad_norms       ‖g_i‖² = ‖W a'_i‖²                  a'_iᵀ M a'_i, M = WᵀW (C ≤ 2b), else
//                                                        rows of G = A'Wᵀ
//   attention        Q = softmax_j(S), S_ij = (A'Lᵀ)_ij / (α‖g_i‖), S_ii = −∞   (x_jᵀg_i =
//                    l_jᵀa_i);  x_iᵀĝ_i = Σ_j Q_ij K_ij
//   row_epilogue     [QK | QL] = Q [K | L]               one GEMM on the [K | L] buffer
//                    ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij,  r_i = 1/‖ĝ_i‖ (0 when ĝ_i = 0)
//                    n_i = sqrt(K_ii + 2η r_i x_iᵀĝ_i + η²)              (no η² when ĝ_i = 0)
//                    L̃ = diag(1/n) L + diag(ηr/n) QL,  ℓ_i = −λ log softmax(Z̃_i)_{y_i}
//                      = λ log1p(Σ_{c≠y} e^{z̃_c−z̃_y})  (no cancellation at p̃_y ≈ 1)
//                    D = diag(s)(softmax(Z̃) − Y) split into U = diag(1/n) D, V = diag(ηr/n) D
//   grad_rows        R = U + QᵀV                         X̃ = diag(1/n) X + diag(ηr/n) QX, so
//   weight_grad      dW = XᵀR                            X̃ᵀD = XᵀR
// The GEMMs go through ATen (MKL); every elementwise step is one at::parallel_for pass over rows.
#include "sea_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "sea_exp.h"

namespace sea_kernels {
namespace {

using at::Tensor;

// Below this many classes the GEMMs with a C-wide result (L = XW, dW = XᵀR) run several times
// faster as their transposes (C-tall results) in MKL; the transposed copy back is b×C or d×C.
constexpr int64_t kNarrow = 64;

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
T row_max(const T* u, int64_t n) {
  T acc = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : acc)
  for (int64_t k = 0; k < n; ++k) acc = u[k] > acc ? u[k] : acc;
  return acc;
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


// The scalar hyperparameters of one call, in the compute type.
template <typename T>
struct Hyper {
  T alpha, eta, lam, inv_lam, delta;
  bool negative_only;
};

// logits_and_gram: [K | L] = [XXᵀ | XW] in one b×(b+C) buffer, the "values" that Q multiplies.
// L = XW runs as Lᵀ = WᵀXᵀ for C < kNarrow; K = XXᵀ from its lower block triangle.
template <typename T>
Tensor logits_and_gram(const Tensor& x, const Tensor& w) {
  const int64_t b = x.size(0), C = w.size(1), ld = b + C;
  Tensor kl = at::empty({b, ld}, x.options());
  Tensor l = kl.narrow(1, b, C);
  if (C < kNarrow) {
    const Tensor lt = at::mm(w.t(), x.t());  // Lᵀ (C×b)
    const T* ltp = lt.const_data_ptr<T>();
    T* lp = l.data_ptr<T>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t c = 0; c < C; ++c) lp[i * ld + c] = ltp[c * b + i];
  } else {
    at::mm_out(l, x, w);
  }
  symmetric_gram<T>(x, kl.narrow(1, 0, b));
  return kl;
}

// row_prep: per row, z = (l + δ(1−y))/λ, p = softmax(z), a = p − y (p for negative_only), then
// A' = a / max_c|a_c| (a zero row stays zero) — b×C.
template <typename T>
Tensor row_prep(const Tensor& kl, const int64_t* y, const Hyper<T>& h) {
  const int64_t b = kl.size(0), ld = kl.size(1), C = ld - b;
  const T* klp = kl.const_data_ptr<T>();
  const T delta = h.delta, inv_lam = h.inv_lam;
  const bool negative_only = h.negative_only;
  Tensor a = at::empty({b, C}, kl.options());
  T* ap = a.data_ptr<T>();
  at::parallel_for(0, b, grain(2 * C), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* li = klp + i * ld + b;
      T* ai = ap + i * C;
      const int64_t yi = y[i];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) ai[c] = (li[c] + delta) * inv_lam;
      ai[yi] = li[yi] * inv_lam;
      exp_shifted(ai, row_max(ai, C), C);
      const T inv_sum = T(1) / row_sum(ai, C);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) ai[c] *= inv_sum;
      if (!negative_only) ai[yi] -= 1;
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

// grad_norms: ‖g_i‖² = ‖W a'_i‖² = a'_iᵀ (M a'_i) with M = WᵀW (C ≤ 2b), else Σ_k G_ik² over row
// blocks of G = A'Wᵀ (≥ 64 rows for GEMM efficiency, ≤ ~2^20 elements).
template <typename T>
std::vector<T> grad_norms(const Tensor& a, const Tensor& w) {
  const int64_t b = a.size(0), C = a.size(1), d = w.size(0);
  const T* ap = a.const_data_ptr<T>();
  std::vector<T> g2(b);
  if (C <= 2 * b) {
    Tensor m = at::empty({C, C}, a.options());
    symmetric_gram<T>(w.t(), m);
    const Tensor am = at::mm(a, m);
    const T* amp = am.const_data_ptr<T>();
    at::parallel_for(0, b, grain(C), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) g2[i] = dot(amp + i * C, ap + i * C, C);
    });
  } else {
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
  return g2;
}

// attention: S = A'Lᵀ into q, then per row Q_i = softmax_j(S_ij / (α‖g_i‖)) with S_ii = −∞, in
// place (a zero g_i gives S_i = 0: a uniform q_i); and x_iᵀĝ_i = Σ_j Q_ij K_ij into xg.
template <typename T>
void attention(const Tensor& a, const Tensor& kl, const std::vector<T>& g2, T alpha,
               Tensor& q, std::vector<T>& xg) {
  const int64_t b = kl.size(0), ld = kl.size(1), C = ld - b;
  constexpr T tiny = std::numeric_limits<T>::min();
  constexpr T inf = std::numeric_limits<T>::infinity();
  const T* klp = kl.const_data_ptr<T>();
  T* qp = q.data_ptr<T>();
  at::mm_out(q, a, kl.narrow(1, b, C).t());
  at::parallel_for(0, b, grain(2 * b), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* qi = qp + i * b;
      const T scale = (g2[i] > 0 ? T(1) / std::sqrt(std::max(g2[i], tiny)) : T(0)) / alpha;
#pragma omp simd
      for (int64_t j = 0; j < b; ++j) qi[j] *= scale;
      qi[i] = -inf;
      exp_shifted(qi, row_max(qi, b), b);
      const T inv_sum = T(1) / row_sum(qi, b);
#pragma omp simd
      for (int64_t j = 0; j < b; ++j) qi[j] *= inv_sum;
      xg[i] = dot(qi, klp + i * ld, b);
    }
  });
}

// The gradient factors of row_epilogue: U = diag(1/n) D (b×C; grad_rows turns it into R in
// place) and V = diag(ηr/n) D. Undefined tensors without compute_grad.
struct GradFactors {
  Tensor u, v;
};

// row_epilogue: [QK | QL] = Q [K | L] (one GEMM), then per row r = 1/‖ĝ‖ with ‖ĝ‖² = Σ_j (QK)_ij
// Q_ij, 1/n with n² = K_ii + 2ηr x_iᵀĝ_i + η², the augmented logits
// z̃ = (l/n + (ηr/n) ql + δ(1−y))/λ, the loss ℓ_i = λ log1p(Σ_{c≠y} e^{z̃_c−z̃_y}) into losses and,
// with compute_grad, D = s (softmax(z̃) − y) with p̃_y − 1 = −Σ_{c≠y} p̃_c, split into U and V.
template <typename T>
GradFactors row_epilogue(const Tensor& kl, const Tensor& q, const std::vector<T>& xg,
                         const int64_t* y, const T* row_scale, const Hyper<T>& h,
                         bool compute_grad, const Tensor& losses) {
  const int64_t b = kl.size(0), ld = kl.size(1), C = ld - b;
  constexpr T tiny = std::numeric_limits<T>::min();
  const T eta = h.eta, lam = h.lam, inv_lam = h.inv_lam, delta = h.delta;
  const Tensor qkl = at::mm(q, kl);
  const T* qklp = qkl.const_data_ptr<T>();
  const T* klp = kl.const_data_ptr<T>();
  const T* qp = q.const_data_ptr<T>();
  GradFactors f;
  T *up = nullptr, *vp = nullptr;
  if (compute_grad) {
    f.u = at::empty({b, C}, kl.options());
    f.v = at::empty({b, C}, kl.options());
    up = f.u.data_ptr<T>();
    vp = f.v.data_ptr<T>();
  }
  T* lossp = losses.data_ptr<T>();
  at::parallel_for(0, b, grain(b + 3 * C), [&](int64_t r0, int64_t r1) {
    std::vector<T> e(C);
    for (int64_t i = r0; i < r1; ++i) {
      const T* qli = qklp + i * ld + b;
      const T* li = klp + i * ld + b;
      const int64_t yi = y[i];
      const T gh2 = dot(qklp + i * ld, qp + i * b, b);
      const bool moved = gh2 > 0;
      const T r = moved ? T(1) / std::sqrt(std::max(gh2, tiny)) : T(0);
      const T n2 = klp[i * ld + i] + 2 * eta * r * xg[i] + (moved ? eta * eta : T(0));
      const T inv_n = T(1) / std::sqrt(std::max(n2, tiny));
      const T c2 = eta * r * inv_n;
      T* z = e.data();
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) z[c] = (inv_n * li[c] + c2 * qli[c] + delta) * inv_lam;
      z[yi] = (inv_n * li[yi] + c2 * qli[yi]) * inv_lam;
      const T m = row_max(z, C), zy = z[yi];
      exp_shifted(z, m, C);
      const T ey = z[yi];
      z[yi] = 0;
      const T s = row_sum(z, C);  // Σ_{c≠y} e^{z̃_c − m}
      // −log p̃_y = log Σ_c e^{z̃_c − z̃_y} = log1p(s e^{m − z̃_y}): exact also when p̃_y ≈ 1
      const T gap = m - zy;
      lossp[i] = lam * (gap > T(20) ? gap + std::log(s + ey) : std::log1p(s * std::exp(gap)));
      if (!compute_grad) continue;
      // D_i = s_i (p̃_i − e_y), p̃_c = e^{z̃_c − m}/(s + e_y), p̃_y − 1 = −s/(s + e_y)
      const T dscale = row_scale[i] / (s + ey);
      T* ui = up + i * C;
      T* vi = vp + i * C;
      z[yi] = -s;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T dic = dscale * z[c];
        ui[c] = inv_n * dic;
        vi[c] = c2 * dic;
      }
    }
  });
  return f;
}

// grad_rows: R = U + QᵀV, in place over U (b×C). Since X̃ = diag(1/n) X + diag(ηr/n) QX, the
// gradient X̃ᵀD of the augmented batch is XᵀR: row j of R collects D_j/n_j and x_j's share Q_ij
// of every ĝ_i.
Tensor grad_rows(const Tensor& q, GradFactors&& f) {
  f.u.addmm_(q.t(), f.v);
  return std::move(f.u);
}

// weight_grad: dW = XᵀR (d×C), as (RᵀX)ᵀ for C < kNarrow.
Tensor weight_grad(const Tensor& x, const Tensor& r) {
  return r.size(1) < kNarrow ? at::mm(r.t(), x).t().contiguous() : at::mm(x.t(), r);
}

// The stages in order. b = 1 has no other example to project on: Q = 0, x_iᵀĝ_i = 0 (ĝ = 0, so
// x̃ = unit(x)), and row_prep, grad_norms, attention are skipped.
template <typename T>
void sea_impl(const Tensor& x, const Tensor& w, const int64_t* y, const T* row_scale,
              const Hyper<T>& h, bool compute_grad, const Tensor& losses, Tensor& dw) {
  const int64_t b = x.size(0);
  const Tensor kl = logits_and_gram<T>(x, w);
  Tensor q = at::empty({b, b}, x.options());
  std::vector<T> xg(b, T(0));
  if (b == 1) {
    q.data_ptr<T>()[0] = 0;
  } else {
    const Tensor a = row_prep<T>(kl, y, h);
    const std::vector<T> g2 = grad_norms<T>(a, w);
    attention<T>(a, kl, g2, h.alpha, q, xg);
  }
  GradFactors f = row_epilogue<T>(kl, q, xg, y, row_scale, h, compute_grad, losses);
  if (!compute_grad) return;
  dw = weight_grad(x, grad_rows(q, std::move(f)));
}

}  // namespace

std::tuple<Tensor, Tensor> sea_fwd_cpu(const Tensor& x, const Tensor& labels, const Tensor& weight,
                                       const Tensor& row_scale, double alpha, double eta,
                                       double lam, double delta, bool negative_only,
                                       bool compute_grad) {
  TORCH_CHECK(x.dim() == 2, "sea_fwd_cpu: x must be 2-D (batch × features), got shape ",
              x.sizes());
  TORCH_CHECK(weight.dim() == 2,
              "sea_fwd_cpu: weight must be 2-D (features × classes), got shape ", weight.sizes());
  const int64_t b = x.size(0), d = x.size(1), C = weight.size(1);
  TORCH_CHECK(b >= 1 && d >= 1, "sea_fwd_cpu: x must have at least one row and one feature, got ",
              x.sizes());
  TORCH_CHECK(weight.size(0) == d && C >= 1, "sea_fwd_cpu: weight must have shape (", d,
              ", classes ≥ 1) to match x, got ", weight.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == b, "sea_fwd_cpu: labels must have shape (",
              b, ",), got ", labels.sizes());
  TORCH_CHECK(row_scale.dim() == 1 && row_scale.size(0) == b,
              "sea_fwd_cpu: row_scale must have shape (", b, ",), got ", row_scale.sizes());
  for (const Tensor* t : {&x, &labels, &weight, &row_scale})
    TORCH_CHECK(t->device().is_cpu(), "sea_fwd_cpu: all tensors must be on the CPU, got one on ",
                t->device());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && at::isFloatingType(weight.scalar_type()) &&
                  at::isFloatingType(row_scale.scalar_type()),
              "sea_fwd_cpu: x, weight and row_scale must be floating point, got ", x.scalar_type(),
              ", ", weight.scalar_type(), ", ", row_scale.scalar_type());
  TORCH_CHECK(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false),
              "sea_fwd_cpu: labels must be an integer tensor, got ", labels.scalar_type());
  TORCH_CHECK(alpha > 0 && lam > 0, "sea_fwd_cpu: alpha and lam must be > 0, got alpha=", alpha,
              ", lam=", lam);

  at::AutoDispatchBelowADInplaceOrView guard;  // the internal ops record no autograd graph
  const auto ct = (x.scalar_type() == at::kDouble || weight.scalar_type() == at::kDouble)
                      ? at::kDouble
                      : at::kFloat;
  // Row- or column-major operands go to BLAS as they are; any other layout is copied once here
  // rather than inside every GEMM.
  auto operand = [ct](const Tensor& t) {
    Tensor c = t.to(ct);
    return c.stride(0) == 1 || c.stride(1) == 1 ? c : c.contiguous();
  };
  const Tensor xc = operand(x), wc = operand(weight);
  const Tensor y = labels.to(at::kLong).contiguous();
  const Tensor s = row_scale.to(ct).contiguous();
  const int64_t* yp = y.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i)
    TORCH_CHECK(yp[i] >= 0 && yp[i] < C, "sea_fwd_cpu: labels[", i, "] = ", yp[i],
                " is out of range: labels must lie in [0, ", C, ") for a weight with ", C,
                " classes");

  Tensor losses = at::empty({b}, xc.options());
  Tensor dw = at::empty({0}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(ct, "sea_fwd_cpu", [&] {
    using T = scalar_t;
    const Hyper<T> h{T(alpha), T(eta), T(lam), T(1) / T(lam), T(delta), negative_only};
    sea_impl<T>(xc, wc, yp, s.const_data_ptr<T>(), h, compute_grad, losses, dw);
  });
  return {losses, dw};
}

}  // namespace sea_kernels

TORCH_LIBRARY(sea_kernels, m) {
  m.def(
      "sea_fwd_cpu(Tensor x, Tensor labels, Tensor weight, Tensor row_scale, float alpha, "
      "float eta, float lam, float delta, bool negative_only, bool compute_grad) -> (Tensor, "
      "Tensor)");
}

TORCH_LIBRARY_IMPL(sea_kernels, CPU, m) { m.impl("sea_fwd_cpu", &sea_kernels::sea_fwd_cpu); }
