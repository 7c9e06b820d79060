// C++ unit test of sea_kernels::sea_fwd_cpu against a paper-literal ATen implementation (float64):
//   G = A' Wᵀ with the exact direction a'_c = softmax_{c≠y}(z)_c, a'_y = −1 (P for negative_only),
//   Q = masked softmax over unit(G) Xᵀ / α, ĝ = Q X, x̃ = unit(x + η unit(ĝ)),
//   ℓ_i = −λ log softmax((x̃W + δ(1−Y))/λ)[y_i],  dW = x̃ᵀ diag(s)(softmax(Z̃) − Y)  (closed form);
// and, exact at every margin (docs/design.md §3), against `direct`, the same formulas in
// plain loops in long double (loss λ·softplus(t), t = log Σ_{c≠y} e^{z̃_c − z̃_y}) on tiny inputs:
// logit margins 1λ … 1000λ in float32 and float64, and rows whose ĝ nearly cancels.
// Returns nonzero when a check fails.
#include "sea_cpu.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

Tensor unit(const Tensor& v) {
  Tensor norm = v.norm(2, {1}, /*keepdim=*/true);
  return at::where(norm > 0, v / at::where(norm > 0, norm, at::ones_like(norm)), at::zeros_like(v));
}

struct Hyper {
  double alpha = 0.01, eta = 0.8, lam = 0.1, delta = 0.0;
  bool negative_only = false;
};

// With group > 0 the rows attend only to the other rows of their group of `group` consecutive
// rows (none: q_i = 0); with a bias the logits are XW + 1bᵀ (not the scores); db = Σ_i D_i.
std::tuple<Tensor, Tensor, Tensor> literal(const Tensor& x, const Tensor& labels, const Tensor& w,
                                           const Tensor& s, const Hyper& h, int64_t group = 0,
                                           const Tensor& bias = Tensor()) {
  const int64_t b = x.size(0), C = w.size(1);
  Tensor y = at::one_hot(labels, C).to(at::kDouble);
  Tensor margin = h.delta * (1 - y);
  auto logits = [&](const Tensor& xx) { return bias.defined() ? xx.mm(w) + bias : xx.mm(w); };
  Tensor z = (logits(x) + margin) / h.lam;
  // The exact direction: a' = softmax over c ≠ y, a'_y = −1 (a = (1 − p_y) a'; only the direction
  // of g is used). negative_only: p.
  Tensor a = h.negative_only
                 ? at::softmax(z, 1)
                 : at::softmax(z.masked_fill(y > 0, -INFINITY), 1).masked_fill(y > 0, -1.0);
  Tensor g = a.mm(w.t());
  Tensor q = at::zeros({b, b}, x.options());
  if (b > 1) {
    const Tensor gid = at::floor_divide(at::arange(b, at::kLong), group > 0 ? group : b);
    const Tensor masked = at::eye(b, x.options().dtype(at::kBool)) |
                          gid.unsqueeze(1).ne(gid.unsqueeze(0));
    q = at::softmax((unit(g).mm(x.t()) / h.alpha).masked_fill(masked, -INFINITY), 1)
            .masked_fill(masked.all(1, /*keepdim=*/true), 0.0);
  }
  Tensor x_aug = unit(x + h.eta * unit(q.mm(x)));
  Tensor log_p = at::log_softmax((logits(x_aug) + margin) / h.lam, 1);
  Tensor loss = -h.lam * log_p.gather(1, labels.unsqueeze(1)).squeeze(1);
  Tensor dmat = s.unsqueeze(1) * (log_p.exp() - y);
  return {loss, x_aug.t().mm(dmat), dmat.sum(0)};
}

// A group size of the tests (0: the whole batch) as the kernel takes it (none: the whole batch).
std::optional<int64_t> grp(int64_t G) {
  return G > 0 ? std::optional<int64_t>(G) : std::nullopt;
}

// The kernel without groups or bias: (losses, dW); its db must be empty.
std::tuple<Tensor, Tensor> sea2(const Tensor& x, const Tensor& labels, const Tensor& w,
                                const Tensor& s, double alpha, double eta, double lam,
                                double delta, bool negative_only, bool compute_grad) {
  auto [loss, dw, db, loss_dx] = sea_kernels::sea_fwd_cpu(x, labels, w, s, alpha, eta, lam, delta,
                                                 negative_only, compute_grad);
  if (db.numel() != 0) check(false, "db is not empty without a bias");
  return {loss, dw};
}

double rel_err(const Tensor& got, const Tensor& want) {
  return (got.to(at::kDouble) - want).norm().item<double>() /
         std::max(want.norm().item<double>(), 1e-300);
}

void compare(const std::string& name, int64_t b, int64_t d, int64_t C, const Hyper& h,
             double weight_scale = 3.0) {
  at::manual_seed(b * 1000 + d * 10 + C);
  Tensor x = unit(at::randn({b, d}, at::kDouble));
  Tensor labels = at::randint(C, {b}, at::kLong);
  Tensor w = at::randn({d, C}, at::kDouble) * (weight_scale / std::sqrt(double(d)));
  Tensor s = at::rand({b}, at::kDouble);
  auto [ref_loss, ref_dw, ref_db] = literal(x, labels, w, s, h);
  auto [loss, dw] = sea2(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta, h.negative_only, true);
  const double el = rel_err(loss, ref_loss), eg = rel_err(dw, ref_dw);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s b=%ld d=%ld C=%ld: loss err %.2e, dW err %.2e", name.c_str(),
                long(b), long(d), long(C), el, eg);
  check(loss.scalar_type() == at::kDouble && dw.sizes() == w.sizes() && el < 1e-10 && eg < 1e-10,
        buf);

  // compute_grad = false: same losses, empty dW.
  auto [loss2, dw2] =
      sea2(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta, h.negative_only, false);
  check(dw2.numel() == 0 && at::equal(loss2, loss), name + ": compute_grad=false");

  // Non-contiguous inputs (transposed storage) give the same result.
  Tensor xt = x.t().contiguous().t(), wt = w.t().contiguous().t();
  auto [loss3, dw3] =
      sea2(xt, labels, wt, s, h.alpha, h.eta, h.lam, h.delta, h.negative_only, true);
  check(rel_err(loss3, ref_loss) < 1e-10 && rel_err(dw3, ref_dw) < 1e-10,
        name + ": non-contiguous x and weight");

  // float32 inputs compute in float32, close to the float64 result.
  auto [loss4, dw4] = sea2(x.to(at::kFloat), labels, w.to(at::kFloat), s.to(at::kFloat), h.alpha,
                           h.eta, h.lam, h.delta, h.negative_only, true);
  check(loss4.scalar_type() == at::kFloat && dw4.scalar_type() == at::kFloat &&
            rel_err(loss4, ref_loss) < 1e-3 && rel_err(dw4, ref_dw) < 1e-3,
        name + ": float32");
}

// ---- direct computation in plain loops (no Gram space), in type R ------------------------------

// A b×n row-major matrix.
template <typename R>
struct Mat {
  int64_t rows, cols;
  std::vector<R> v;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), v(r * c, R(0)) {}
  R& operator()(int64_t i, int64_t j) { return v[i * cols + j]; }
  R operator()(int64_t i, int64_t j) const { return v[i * cols + j]; }
};

template <typename R>
Mat<R> to_mat(const Tensor& t) {
  Tensor c = t.to(at::kDouble).contiguous();
  Mat<R> m(c.size(0), c.size(1));
  const double* p = c.const_data_ptr<double>();
  for (int64_t k = 0; k < c.numel(); ++k) m.v[k] = R(p[k]);
  return m;
}

template <typename R>
void unit_rows(Mat<R>& m) {
  for (int64_t i = 0; i < m.rows; ++i) {
    R n = 0;
    for (int64_t k = 0; k < m.cols; ++k) n += m(i, k) * m(i, k);
    n = std::sqrt(n);
    for (int64_t k = 0; k < m.cols; ++k) m(i, k) = n > 0 ? m(i, k) / n : R(0);
  }
}

// softmax of u over the entries with keep[c], in place; the others become 0.
template <typename R>
void masked_softmax(std::vector<R>& u, const std::vector<bool>& keep) {
  R m = -std::numeric_limits<R>::infinity(), s = 0;
  for (size_t c = 0; c < u.size(); ++c)
    if (keep[c]) m = std::max(m, u[c]);
  for (size_t c = 0; c < u.size(); ++c) {
    u[c] = keep[c] ? std::exp(u[c] - m) : R(0);
    s += u[c];
  }
  for (auto& e : u) e /= s;
}

template <typename R>
struct Direct {
  std::vector<R> loss;
  Mat<R> dw, x_aug;
};

// Per-row losses, dW = ∂(Σ s_i ℓ_i)/∂W and X̃, paper-literal with the exact formulas.
template <typename R>
Direct<R> direct(const Tensor& xt, const Tensor& labels, const Tensor& wt, const Tensor& st,
                 const Hyper& h) {
  const Mat<R> x = to_mat<R>(xt), w = to_mat<R>(wt);
  const int64_t b = x.rows, d = x.cols, C = w.cols;
  const auto lab = labels.contiguous();
  const int64_t* y = lab.const_data_ptr<int64_t>();
  const Tensor sd = st.to(at::kDouble).contiguous();
  const double* s = sd.const_data_ptr<double>();
  const R alpha = R(h.alpha), eta = R(h.eta), lam = R(h.lam), delta = R(h.delta);
  auto logits = [&](const Mat<R>& xx, int64_t i) {  // z = (Wᵀx_i + δ(1 − e_y))/λ
    std::vector<R> z(C);
    for (int64_t c = 0; c < C; ++c) {
      R acc = 0;
      for (int64_t k = 0; k < d; ++k) acc += xx(i, k) * w(k, c);
      z[c] = (acc + (c == y[i] ? R(0) : delta)) / lam;
    }
    return z;
  };
  // g_i = W a'_i, unit
  Mat<R> g(b, d);
  for (int64_t i = 0; i < b; ++i) {
    std::vector<R> a = logits(x, i);
    std::vector<bool> keep(C, true);
    if (!h.negative_only) keep[y[i]] = false;
    masked_softmax(a, keep);
    if (!h.negative_only) a[y[i]] = -1;
    for (int64_t k = 0; k < d; ++k)
      for (int64_t c = 0; c < C; ++c) g(i, k) += w(k, c) * a[c];
  }
  unit_rows(g);
  // q_i = masked softmax_j(x_jᵀḡ_i/α), ĝ_i = q_i X, x̃_i = Π(x_i + η Π(ĝ_i))
  Mat<R> gh(b, d);
  for (int64_t i = 0; i < b && b > 1; ++i) {
    std::vector<R> sc(b);
    std::vector<bool> keep(b, true);
    keep[i] = false;
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < d; ++k) sc[j] += x(j, k) * g(i, k) / alpha;
    masked_softmax(sc, keep);
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < d; ++k) gh(i, k) += sc[j] * x(j, k);
  }
  unit_rows(gh);
  Mat<R> xa(b, d);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t k = 0; k < d; ++k) xa(i, k) = x(i, k) + eta * gh(i, k);
  unit_rows(xa);
  // ℓ_i = λ softplus(t), t = log Σ_{c≠y} e^{z̃_c − z̃_y};  D_i = s_i σ(t) (u − e_y)
  Direct<R> out{std::vector<R>(b), Mat<R>(d, C), xa};
  for (int64_t i = 0; i < b; ++i) {
    std::vector<R> z = logits(xa, i);
    const R zy = z[y[i]];
    R m = -std::numeric_limits<R>::infinity(), sum = 0;
    for (int64_t c = 0; c < C; ++c)
      if (c != y[i]) m = std::max(m, z[c]);
    for (int64_t c = 0; c < C; ++c) sum += c == y[i] ? R(0) : std::exp(z[c] - m);
    const R t = m - zy + std::log(sum);
    out.loss[i] = lam * (std::max(t, R(0)) + std::log1p(std::exp(-std::fabs(t))));
    const R sigma = t >= 0 ? R(1) / (1 + std::exp(-t)) : std::exp(t) / (1 + std::exp(t));
    for (int64_t c = 0; c < C; ++c) {
      const R dic = R(s[i]) * sigma * (c == y[i] ? R(-1) : std::exp(z[c] - m) / sum);
      for (int64_t k = 0; k < d; ++k) out.dw(k, c) += xa(i, k) * dic;
    }
  }
  return out;
}

template <typename R>
double rel_err_vec(const Tensor& got, const std::vector<R>& want) {
  const Tensor g = got.to(at::kDouble).contiguous().reshape({-1});
  const double* p = g.const_data_ptr<double>();
  long double num = 0, den = 0;
  for (size_t k = 0; k < want.size(); ++k) {
    const long double e = (long double)p[k] - (long double)want[k];
    num += e * e;
    den += (long double)want[k] * (long double)want[k];
  }
  return double(std::sqrt(num) / std::max(std::sqrt(den), 1e-300L));
}

// Clustered unit rows x_i ≈ e_{y_i} and a weight whose smallest clean logit margin
// l_iy − max_{c≠y} l_ic is margin·λ; every fourth row has a wrong label (a large loss).
std::tuple<Tensor, Tensor, Tensor> margin_problem(double margin, double lam, int64_t b = 12,
                                                  int64_t d = 7, int64_t C = 4) {
  at::manual_seed(int64_t(margin));
  Tensor y = at::arange(b, at::kLong).remainder(C);
  Tensor x = unit(at::eye(d, at::kDouble).index_select(0, y) +
                  0.15 * at::randn({b, d}, at::kDouble));
  Tensor w1 = at::eye(d, C, at::kDouble) + 0.05 * at::randn({d, C}, at::kDouble);
  Tensor l = x.mm(w1);
  Tensor onehot = at::one_hot(y, C) > 0;
  Tensor gaps = l.gather(1, y.unsqueeze(1)).squeeze(1) -
                std::get<0>(l.masked_fill(onehot, -INFINITY).max(1));
  Tensor w = w1 * (margin * lam / gaps.min().item<double>());
  Tensor labels = y.clone();
  for (int64_t i = 0; i < b; i += 4) labels[i] = (y[i].item<int64_t>() + 1) % C;
  return {x, labels, w};
}

// The op in `dtype` against direct<long double> on the same rounded inputs: float64 within tol64;
// float32 within 2 × direct<float>'s own error (the problem's conditioning in float) + tol32.
void compare_direct(const std::string& name, const Tensor& x, const Tensor& labels,
                    const Tensor& w, const Tensor& s, const Hyper& h, at::ScalarType dtype,
                    double tol64 = 1e-12, double tol32 = 2e-5, double own_factor = 2) {
  const Tensor xx = x.to(dtype), ww = w.to(dtype), ss = s.to(dtype);
  auto [loss, dw] =
      sea2(xx, labels, ww, ss, h.alpha, h.eta, h.lam, h.delta, h.negative_only, true);
  const bool finite = at::isfinite(loss).all().item<bool>() && at::isfinite(dw).all().item<bool>();
  const Direct<long double> ref = direct<long double>(xx, labels, ww, ss, h);
  const double el = rel_err_vec(loss, ref.loss), eg = rel_err_vec(dw, ref.dw.v);
  double bl = tol64, bg = tol64;
  if (dtype == at::kFloat) {
    const Direct<float> own = direct<float>(xx, labels, ww, ss, h);
    const Tensor ol = at::from_blob(const_cast<float*>(own.loss.data()),
                                    {int64_t(own.loss.size())}, at::kFloat);
    const Tensor og = at::from_blob(const_cast<float*>(own.dw.v.data()),
                                    {int64_t(own.dw.v.size())}, at::kFloat);
    bl = own_factor * rel_err_vec(ol, ref.loss) + tol32;
    bg = own_factor * rel_err_vec(og, ref.dw.v) + tol32;
  }
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s %s: loss err %.2e (bound %.1e), dW err %.2e (bound %.1e)",
                name.c_str(), dtype == at::kFloat ? "float32" : "float64", el, bl, eg, bg);
  check(finite && loss.scalar_type() == dtype && el <= bl && eg <= bg, buf);
}

// x = Π([[.6, .8], [0, 1], [1e-3, −1]]), W = 0: q is uniform, ĝ_0 = (x_1 + x_2)/2 nearly cancels
// (‖ĝ_0‖² ≈ 2.5e-7 ≪ max K_jj = 1). With C = 2, y_0 = 0 and row weights e_0, D_0 = (−½, ½) and
// dW = x̃_0 D_0ᵀ, so dW shows x̃_0. Gram space alone was off by 8e-3 in float32; the row is
// untrusted and taken from ĝ_0 = q_0 X (norms, (QL)_0 and its dW share): as exact as direct.
void cancelling_reproducer(at::ScalarType dtype, double tol) {
  Tensor x = unit(at::tensor({0.6, 0.8, 0.0, 1.0, 1e-3, -1.0}, at::kDouble).reshape({3, 2}))
                 .to(dtype);
  Tensor w = at::zeros({2, 2}, dtype), labels = at::tensor({0, 1, 0}, at::kLong);
  Tensor s = at::tensor({1.0, 0.0, 0.0}, at::kDouble).to(dtype);
  Hyper h;
  auto [loss, dw] = sea2(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta, false, true);
  const Direct<long double> ref = direct<long double>(x, labels, w, s, h);
  Tensor got = 2 * dw.select(1, 1).to(at::kDouble);
  double err = 0;
  for (int64_t k = 0; k < 2; ++k)
    err = std::max(err, double(std::fabs((long double)got[k].item<double>() - ref.x_aug(0, k))));
  char buf[256];
  std::snprintf(buf, sizeof buf, "cancelling reproducer %s: max |x̃_0 − direct| = %.2e (tol %.0e)",
                dtype == at::kFloat ? "float32" : "float64", err, tol);
  check(at::isfinite(dw).all().item<bool>() && err <= tol, buf);
  compare_direct("cancelling reproducer, every row", x, labels, w,
                 at::tensor({0.3, 0.5, 0.7}, at::kDouble), h, dtype, 1e-14, 1e-6);
}

// Six rows ≈ v, five ≈ −v and eight pairs p, ≈ −p: the rows sum to ≈ v, so under a uniform q
// (α = 1e6) each row ≈ v has ‖ĝ_i‖ ≈ spread/5 (at 1e-4, ‖ĝ‖² ≈ 1e-10 is below float32's ε).
void near_cancelling(double spread, at::ScalarType dtype) {
  at::manual_seed(int64_t(-std::log10(spread)));
  const int64_t d = 10, C = 4;
  Tensor v = unit(at::randn({1, d}, at::kDouble)), p = unit(at::randn({8, d}, at::kDouble));
  Tensor x = unit(at::cat({v + spread * at::randn({6, d}, at::kDouble),
                           -v + spread * at::randn({5, d}, at::kDouble), p,
                           -p + spread * at::randn({8, d}, at::kDouble)}));
  Tensor w = 0.5 * at::randn({d, C}, at::kDouble);
  Tensor labels = at::randint(C, {x.size(0)}, at::kLong), s = at::rand({x.size(0)}, at::kDouble);
  Hyper h;
  h.alpha = 1e6;
  char name[64];
  std::snprintf(name, sizeof name, "near-cancelling rows, spread %.0e", spread);
  compare_direct(name, x, labels, w, s, h, dtype);
}

// group_size G and a bias: the op against the literal implementation (Q block diagonal, logits
// XW + 1bᵀ, db = Σ_i D_i) and against itself run on each group's rows alone (row_scale sliced
// alike: the losses concatenate, dW and db add up); float64, and float32 close to it. zero_rows:
// the rows i ≡ 1 (mod 3) are zero (every row of a group of ≤ 2 rows may have no partner).
void grouped(const std::string& name, int64_t b, int64_t d, int64_t C, int64_t G, const Hyper& h,
             bool with_bias, bool zero_rows = false) {
  at::manual_seed(b * 7 + d * 3 + C + G);
  Tensor x = unit(at::randn({b, d}, at::kDouble));
  if (zero_rows) x.index_fill_(0, at::arange(1, b, 3, at::kLong), 0.0);
  Tensor labels = at::randint(C, {b}, at::kLong);
  Tensor w = at::randn({d, C}, at::kDouble) * (3.0 / std::sqrt(double(d)));
  Tensor s = at::rand({b}, at::kDouble);
  Tensor bias = with_bias ? 0.5 * at::randn({C}, at::kDouble) : Tensor();
  std::optional<Tensor> ob = with_bias ? std::optional<Tensor>(bias) : std::nullopt;
  auto [ref_loss, ref_dw, ref_db] = literal(x, labels, w, s, h, G, bias);
  auto [loss, dw, db, loss_dx] = sea_kernels::sea_fwd_cpu(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta,
                                                 h.negative_only, true, grp(G), ob);
  const double el = rel_err(loss, ref_loss), eg = rel_err(dw, ref_dw);
  const double eb = with_bias ? rel_err(db, ref_db) : 0.0;
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s b=%ld d=%ld C=%ld G=%ld bias=%d: loss err %.2e, dW err %.2e, "
                "db err %.2e", name.c_str(), long(b), long(d), long(C), long(G), int(with_bias),
                el, eg, eb);
  check(el < 1e-10 && eg < 1e-10 && eb < 1e-10 && db.numel() == (with_bias ? C : 0), buf);
  // Each group alone.
  Tensor sum_dw = at::zeros_like(dw), sum_db = at::zeros({C}, at::kDouble);
  std::vector<Tensor> losses;
  const int64_t step = G > 0 ? G : b;
  for (int64_t lo = 0; lo < b; lo += step) {
    const int64_t n = std::min(step, b - lo);
    auto [l, g, gb, l_dx] = sea_kernels::sea_fwd_cpu(x.narrow(0, lo, n), labels.narrow(0, lo, n), w,
                                               s.narrow(0, lo, n), h.alpha, h.eta, h.lam,
                                               h.delta, h.negative_only, true, std::nullopt, ob);
    losses.push_back(l);
    sum_dw += g;
    if (with_bias) sum_db += gb;
  }
  const double al = rel_err(loss, at::cat(losses)), ag = rel_err(dw, sum_dw);
  const double ab = with_bias ? rel_err(db, sum_db) : 0.0;
  std::snprintf(buf, sizeof buf, "%s G=%ld: vs each group alone: loss %.1e, dW %.1e, db %.1e",
                name.c_str(), long(G), al, ag, ab);
  check(al < 1e-12 && ag < 1e-12 && ab < 1e-12, buf);
  // float32; compute_grad = false: same losses, empty dW and db.
  std::optional<Tensor> ob32 = with_bias ? std::optional<Tensor>(bias.to(at::kFloat))
                                         : std::nullopt;
  auto [l32, g32, b32, l32_dx] = sea_kernels::sea_fwd_cpu(x.to(at::kFloat), labels, w.to(at::kFloat),
                                                  s.to(at::kFloat), h.alpha, h.eta, h.lam,
                                                  h.delta, h.negative_only, true, grp(G), ob32);
  check(l32.scalar_type() == at::kFloat && rel_err(l32, ref_loss) < 1e-3 &&
            rel_err(g32, ref_dw) < 1e-3 && (!with_bias || rel_err(b32, ref_db) < 1e-3),
        name + ": float32");
  auto [l0, g0, b0, l0_dx] = sea_kernels::sea_fwd_cpu(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta,
                                               h.negative_only, false, grp(G), ob);
  check(at::equal(l0, loss) && g0.numel() == 0 && b0.numel() == 0,
        name + ": compute_grad=false with groups");
}

template <typename F>
void expect_error(const std::string& name, const std::string& fragment, F&& f) {
  try {
    f();
    check(false, name + ": no error raised");
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    check(msg.find(fragment) != std::string::npos,
          name + ": error mentions '" + fragment + "' (" + msg.substr(0, msg.find('\n')) + ")");
  }
}

}  // namespace

int main() {
  Hyper paper;  // α = 0.01, η = 0.8, λ = 0.1, δ = 0
  compare("paper", 1, 5, 3, paper);
  compare("paper", 2, 7, 4, paper);
  compare("paper", 7, 13, 5, paper);
  compare("paper C>2b", 9, 33, 40, paper);
  compare("paper", 64, 129, 10, paper);
  compare("paper block-triangular K", 300, 65, 7, paper);
  compare("paper C>2b large", 40, 257, 151, paper);
  compare("paper C>=64 (XW, XᵀR untransposed), C<=2b", 70, 31, 100, paper);
  Hyper neg;
  neg.negative_only = true;
  neg.delta = 0.5;
  compare("negative_only", 7, 13, 5, neg);
  compare("negative_only", 150, 31, 3, neg);
  Hyper soft;
  soft.alpha = 1e3;
  soft.lam = 1.0;
  soft.eta = 0.0;
  compare("alpha=1e3 lam=1 eta=0", 11, 17, 6, soft);
  Hyper sharp;
  sharp.lam = 0.01;
  compare("lam=0.01 strong weight", 12, 9, 4, sharp, 30.0);

  // Groups (group_size) and the bias: odd sizes, G = 1, G = b − 1, G ≥ b, zero rows in a group.
  for (const bool with_bias : {false, true}) {
    grouped("groups", 10, 13, 5, 4, paper, with_bias);
    grouped("groups G=1", 7, 13, 5, 1, paper, with_bias);
    grouped("groups G=b-1", 9, 13, 5, 8, paper, with_bias);
    grouped("groups G>=b", 9, 13, 5, 9, paper, with_bias);
    grouped("groups G>b", 9, 13, 5, 50, paper, with_bias);
    grouped("groups, zero rows", 11, 13, 5, 3, paper, with_bias, true);
    grouped("groups C>2G (A'Wᵀ norms)", 23, 40, 70, 5, paper, with_bias);
    grouped("groups negative_only", 17, 13, 5, 6, neg, with_bias);
    grouped("groups, many (in parallel)", 300, 33, 7, 16, paper, with_bias);
  }
  grouped("bias, whole batch", 12, 13, 5, 0, paper, true);

  // Exact at every margin: logit margins 1λ … 1000λ, float64 and float32, finite and matching the
  // long-double direct computation.
  for (const double margin : {1.0, 10.0, 20.0, 50.0, 100.0, 300.0, 1000.0}) {
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      Hyper h;  // the paper's α, η, λ
      auto [x, labels, w] = margin_problem(margin, h.lam);
      char name[64];
      std::snprintf(name, sizeof name, "margin %gλ", margin);
      compare_direct(name, x, labels, w, at::rand({x.size(0)}, at::kDouble), h, dtype);
      Hyper other;
      other.delta = 1.0;
      other.lam = 0.05;
      other.eta = 0.05;
      std::tie(x, labels, w) = margin_problem(margin, other.lam);
      std::snprintf(name, sizeof name, "margin %gλ (δ=1, λ=0.05, η=0.05)", margin);
      compare_direct(name, x, labels, w, at::ones({x.size(0)}, at::kDouble), other, dtype);
      Hyper neg;
      neg.negative_only = true;
      neg.delta = 0.3;
      std::snprintf(name, sizeof name, "margin %gλ negative_only", margin);
      compare_direct(name, x, labels, w, at::ones({x.size(0)}, at::kDouble), neg, dtype);
    }
  }
  // Rows where Gram space cannot be trusted are recomputed from ĝ = q X.
  cancelling_reproducer(at::kFloat, 1e-6);
  cancelling_reproducer(at::kDouble, 1e-14);
  for (const double spread : {1e-1, 1e-2, 1e-3, 1e-4})
    for (const auto dtype : {at::kDouble, at::kFloat}) near_cancelling(spread, dtype);
  {
    // x_1 ≈ −x_0, η = 1: n_0² = K_00 + 2ηr x_0ᵀĝ_0 + η² cancels to 1e-4 (n from u directly).
    Tensor x = unit(at::tensor({1.0, 0.0, -1.0, 0.01}, at::kDouble).reshape({2, 2}));
    Hyper h;
    h.eta = 1.0;
    for (const auto dtype : {at::kDouble, at::kFloat})
      compare_direct("cancelling n²", x, at::tensor({0, 0}, at::kLong),
                     at::zeros({2, 2}, at::kDouble), at::tensor({1.0, 0.3}, at::kDouble), h,
                     dtype);
    // Rows e_1, e_2, 0 at α = 1e-3 with S_01 = −60: q_0 ≈ 1 on the zero row, ĝ_0 = 8.7e-27·e_2,
    // whose ‖ĝ_0‖² underflows in float32 (the recomputed ĝ_0 is scaled first). direct<float>
    // underflows too, so the bound is tol32 alone.
    Tensor xz = at::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0}, at::kDouble).reshape({3, 2});
    Tensor wz = at::tensor({0.0, std::sqrt(1 - 0.06 * 0.06), 0.0, -0.06}, at::kDouble)
                    .reshape({2, 2});
    Hyper hz;
    hz.alpha = 1e-3;
    compare_direct("zero row takes q_0 ≈ 1", xz, at::zeros({3}, at::kLong), wz,
                   at::ones({3}, at::kDouble), hz, at::kFloat, 1e-12, 2e-5, 0.0);
    // ḡ_i = e_1 for every row, α = 1e-3: row 0 scores 0 on the zero row x_1 and −894, −958 on
    // x_2, x_3, whose exponentials flush to 0 (float32 and float64): zero rows are masked like the
    // diagonal, so ĝ_0 keeps its direction ≈ x_2 (the long-double direct form resolves e^{−894};
    // direct<float> does not, so the float32 bound is tol32 alone).
    Tensor xf = unit(at::tensor({1.0, 0.0, 0.0, 0.0, -1.0, 0.5, -1.0, -0.3}, at::kDouble)
                         .reshape({4, 2}));
    Tensor wf = at::tensor({0.0, 0.5, 0.0, 0.0}, at::kDouble).reshape({2, 2});
    Hyper hf;
    hf.alpha = 1e-3;
    for (const auto dtype : {at::kDouble, at::kFloat})
      compare_direct("zero row beside flushed scores", xf, at::zeros({4}, at::kLong), wf,
                     at::tensor({1.0, 0.4, 0.7, 0.2}, at::kDouble), hf, dtype, 1e-12, 2e-5, 0.0);
    // A zero row moved by a tiny η (1e-200 in float64, 1e-20 in float32): n_1² = η² underflows,
    // yet x̃_1 = Π(0 + ηΠ(ĝ_1)) = Π(ĝ_1) for every η > 0 (formed directly: n_1² is below the
    // smallest normal number). direct<float> underflows too, so the float32 bound is tol32 alone.
    Tensor xe = at::tensor({0.6, 0.8, 0.0, 0.0, -0.8, 0.6}, at::kDouble).reshape({3, 2});
    Tensor we = at::tensor({1.0, -0.5, 0.3, 0.2}, at::kDouble).reshape({2, 2});
    for (const auto& [dtype, eta] : {std::pair{at::kDouble, 1e-200}, std::pair{at::kFloat, 1e-20}}) {
      Hyper he;
      he.eta = eta;
      compare_direct("zero row moved by a tiny eta", xe, at::tensor({0, 1, 1}, at::kLong), we,
                     at::ones({3}, at::kDouble), he, dtype, 1e-12, 2e-5, 0.0);
    }
  }

  // The registered op reaches the same kernel through the dispatcher (its schema's defaults:
  // group_size = None, bias = None).
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("sea_kernels::sea_fwd_cpu", "")
                .typed<std::tuple<Tensor, Tensor, Tensor, Tensor>(
                    const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, double,
                    double, double, bool, bool, std::optional<int64_t>,
                    const std::optional<Tensor>&, bool)>();
  {
    Tensor x = unit(at::randn({5, 8}, at::kDouble)), w = at::randn({8, 3}, at::kDouble);
    Tensor labels = at::randint(3, {5}, at::kLong), s = at::ones({5}, at::kDouble);
    auto [l1, g1, b1, l1_dx] = op.call(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true, std::nullopt, {}, false);
    auto [l2, g2] = sea2(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    check(at::equal(l1, l2) && at::equal(g1, g2) && b1.numel() == 0,
          "dispatcher call matches the direct call");
    Tensor bias = at::randn({3}, at::kDouble);
    auto [l3, g3, b3, l3_dx] = op.call(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true, 2, bias, false);
    auto [l4, g4, b4, l4_dx] = sea_kernels::sea_fwd_cpu(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false,
                                                 true, 2, bias);
    check(at::equal(l3, l4) && at::equal(g3, g4) && at::equal(b3, b4),
          "dispatcher call with group_size and bias matches the direct call");

    Tensor bad = labels.clone();
    bad[2] = 3;
    expect_error("label = C", "out of range", [&] {
      sea_kernels::sea_fwd_cpu(x, bad, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    });
    bad[2] = -1;
    expect_error("label < 0", "out of range", [&] {
      op.call(x, bad, w, s, 0.01, 0.8, 0.1, 0.0, false, true, std::nullopt, {}, false);
    });
    expect_error("weight rows != d", "weight must have shape", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w.narrow(0, 0, 7), s, 0.01, 0.8, 0.1, 0.0, false, true);
    });
    expect_error("one class", "at least 2 classes", [&] {
      sea_kernels::sea_fwd_cpu(x, labels.zero_(), w.narrow(1, 0, 1), s, 0.01, 0.8, 0.1, 0.0,
                               false, true);
    });
    expect_error("row_scale length", "row_scale", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w, s.narrow(0, 0, 4), 0.01, 0.8, 0.1, 0.0, false, true);
    });
    expect_error("group_size < 1", "group_size must be", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true, -1);
    });
    expect_error("bias length", "bias must have shape", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true, std::nullopt,
                               at::zeros({4}, at::kDouble));
    });
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
