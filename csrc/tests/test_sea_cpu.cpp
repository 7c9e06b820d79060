// C++ unit test of sea_kernels::sea_fwd_cpu against a paper-literal ATen implementation (float64):
//   G = (P − Y) Wᵀ, Q = masked softmax over unit(G) Xᵀ / α, ĝ = Q X, x̃ = unit(x + η unit(ĝ)),
//   ℓ_i = −λ log softmax((x̃W + δ(1−Y))/λ)[y_i],  dW = x̃ᵀ diag(s)(softmax(Z̃) − Y)  (closed form).
// Returns nonzero when a check fails.
#include "sea_cpu.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>

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

std::tuple<Tensor, Tensor> literal(const Tensor& x, const Tensor& labels, const Tensor& w,
                                   const Tensor& s, const Hyper& h) {
  const int64_t b = x.size(0), C = w.size(1);
  Tensor y = at::one_hot(labels, C).to(at::kDouble);
  Tensor margin = h.delta * (1 - y);
  Tensor p = at::softmax((x.mm(w) + margin) / h.lam, 1);
  Tensor g = (h.negative_only ? p : p - y).mm(w.t());
  Tensor q = at::zeros({b, b}, x.options());
  if (b > 1) {
    Tensor eye = at::eye(b, x.options().dtype(at::kBool));
    q = at::softmax((unit(g).mm(x.t()) / h.alpha).masked_fill(eye, -INFINITY), 1);
  }
  Tensor x_aug = unit(x + h.eta * unit(q.mm(x)));
  Tensor log_p = at::log_softmax((x_aug.mm(w) + margin) / h.lam, 1);
  Tensor loss = -h.lam * log_p.gather(1, labels.unsqueeze(1)).squeeze(1);
  Tensor dw = x_aug.t().mm(s.unsqueeze(1) * (log_p.exp() - y));
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
  auto [ref_loss, ref_dw] = literal(x, labels, w, s, h);
  auto [loss, dw] = sea_kernels::sea_fwd_cpu(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta,
                                             h.negative_only, true);
  const double el = rel_err(loss, ref_loss), eg = rel_err(dw, ref_dw);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s b=%ld d=%ld C=%ld: loss err %.2e, dW err %.2e", name.c_str(),
                long(b), long(d), long(C), el, eg);
  check(loss.scalar_type() == at::kDouble && dw.sizes() == w.sizes() && el < 1e-10 && eg < 1e-10,
        buf);

  // compute_grad = false: same losses, empty dW.
  auto [loss2, dw2] = sea_kernels::sea_fwd_cpu(x, labels, w, s, h.alpha, h.eta, h.lam, h.delta,
                                               h.negative_only, false);
  check(dw2.numel() == 0 && at::equal(loss2, loss), name + ": compute_grad=false");

  // Non-contiguous inputs (transposed storage) give the same result.
  Tensor xt = x.t().contiguous().t(), wt = w.t().contiguous().t();
  auto [loss3, dw3] = sea_kernels::sea_fwd_cpu(xt, labels, wt, s, h.alpha, h.eta, h.lam, h.delta,
                                               h.negative_only, true);
  check(rel_err(loss3, ref_loss) < 1e-10 && rel_err(dw3, ref_dw) < 1e-10,
        name + ": non-contiguous x and weight");

  // float32 inputs compute in float32, close to the float64 result.
  auto [loss4, dw4] = sea_kernels::sea_fwd_cpu(x.to(at::kFloat), labels, w.to(at::kFloat),
                                               s.to(at::kFloat), h.alpha, h.eta, h.lam, h.delta,
                                               h.negative_only, true);
  check(loss4.scalar_type() == at::kFloat && dw4.scalar_type() == at::kFloat &&
            rel_err(loss4, ref_loss) < 1e-3 && rel_err(dw4, ref_dw) < 1e-3,
        name + ": float32");
}

template <typename F>
void expect_error(const std::string& name, const std::string& fragment, F&& f) {
  try {
    f();
    check(false, name + ": no error raised");
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    check(msg.find(fragment) != std::string::npos, name + ": error mentions '" + fragment + "'");
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

  // The registered op reaches the same kernel through the dispatcher.
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("sea_kernels::sea_fwd_cpu", "")
                .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                  const Tensor&, double, double, double, double,
                                                  bool, bool)>();
  {
    Tensor x = unit(at::randn({5, 8}, at::kDouble)), w = at::randn({8, 3}, at::kDouble);
    Tensor labels = at::randint(3, {5}, at::kLong), s = at::ones({5}, at::kDouble);
    auto [l1, g1] = op.call(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    auto [l2, g2] = sea_kernels::sea_fwd_cpu(x, labels, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    check(at::equal(l1, l2) && at::equal(g1, g2), "dispatcher call matches the direct call");

    Tensor bad = labels.clone();
    bad[2] = 3;
    expect_error("label = C", "out of range", [&] {
      sea_kernels::sea_fwd_cpu(x, bad, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    });
    bad[2] = -1;
    expect_error("label < 0", "out of range", [&] {
      op.call(x, bad, w, s, 0.01, 0.8, 0.1, 0.0, false, true);
    });
    expect_error("weight rows != d", "weight must have shape", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w.narrow(0, 0, 7), s, 0.01, 0.8, 0.1, 0.0, false, true);
    });
    expect_error("row_scale length", "row_scale", [&] {
      sea_kernels::sea_fwd_cpu(x, labels, w, s.narrow(0, 0, 4), 0.01, 0.8, 0.1, 0.0, false, true);
    });
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
