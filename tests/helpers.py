"""Shared test helpers: random SeA problems and the per-dtype comparison against float64."""
from __future__ import annotations

import torch

from sea_kernels import reference

# Allowed relative error on top of the reference's own error in that dtype.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def make_problem(b, d, c, *, seed=0, dtype=torch.float64, weight_scale=None, normalise=True):
    """Unit-norm random features, random labels, and a weight giving O(1) logits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    if normalise:
        x = torch.nn.functional.normalize(x, dim=1)
    labels = torch.randint(0, c, (b,), generator=g)
    scale = weight_scale if weight_scale is not None else 3.0 / max(1, d) ** 0.5
    weight = torch.randn(d, c, generator=g, dtype=torch.float64) * scale
    return x.to(dtype), labels, weight.to(dtype)


def reference_rows(x, labels, weight, row_scale, negative_only=False, **kw):
    """Per-row losses and ∂(Σ s_i ℓ_i)/∂W of the paper-literal reference, in x's dtype."""
    w = weight.detach().clone().requires_grad_(True)
    losses = reference.sea_loss(x, labels, w, direction="sea_neg" if negative_only else "sea",
                                reduction="none", **kw)
    (grad,) = torch.autograd.grad((losses * row_scale.to(losses.dtype)).sum(), w)
    return losses.detach(), grad


def one_hot_problem(b, d, c, *, seed=7):
    """Features and a weight making p one-hot at class 0 to the last bit for rows labelled 0 (logit
    0 ≥ 100, a ≥ 1000λ margin at λ = 0.1: p − e_y rounds to 0, the exact direction a' does not,
    docs/design.md §3); row 0 is labelled 1 and has an O(1) gradient."""
    x, _, _ = make_problem(b, d, c, seed=seed)
    u = reference.unit(torch.ones(1, d, dtype=x.dtype))
    x = reference.unit(x + 3 * u)
    weight = torch.zeros(d, c, dtype=x.dtype)
    weight[:, 0] = 200 * u[0]
    labels = torch.zeros(b, dtype=torch.long)
    labels[0] = 1
    return x, labels, weight


def rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def reference_in(dtype, x, labels, weight, **kw):
    """The paper-literal reference computed in `dtype` (float32 for half types, on rounded
    inputs)."""
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    return reference.sea_loss_and_grad(x.to(dtype).to(ct), labels, weight.to(dtype).to(ct), **kw)


def assert_matches_reference(got_loss, got_grad, x, labels, weight, dtype, **kw):
    """Error vs the float64 reference ≤ 2 × the reference's own error in `dtype` + TOLERANCE."""
    ref_loss, ref_grad = reference.sea_loss_and_grad(x.double(), labels, weight.double(), **kw)
    low_loss, low_grad = reference_in(dtype, x, labels, weight, **kw)
    for name, got, ref, low in (("loss", got_loss, ref_loss, low_loss),
                                ("grad", got_grad, ref_grad, low_grad)):
        if got is None:
            continue
        assert torch.isfinite(got).all(), f"{name} is not finite"
        err, own = rel_err(got, ref), rel_err(low, ref)
        bound = 2 * own + TOLERANCE[dtype]
        assert err <= bound, f"{name}: rel err {err:.3g} > {bound:.3g} (reference's own {own:.3g})"


def margin_problem(b, d, c, margin, *, lam=0.1, seed=0, noise=0.1, dtype=torch.float64):
    """Confident rows (docs/design.md §3): unit features clustered at class directions,
    x_i ≈ e_{y_i}, and W = margin·λ·[e_0 … e_{C−1}] + λ·W₀, so that every clean row's target
    logit leads the others by ≈ 0.8–1 × margin·λ (any b; needs d ≥ C). Every class appears."""
    assert d >= c
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(b) % c)[torch.randperm(b, generator=g)]
    basis = torch.eye(d, c, dtype=torch.float64)
    x = basis[:, labels].T + noise * torch.randn(b, d, generator=g, dtype=torch.float64)
    x = torch.nn.functional.normalize(x, dim=1)
    weight = margin * lam * basis + lam * torch.randn(d, c, generator=g, dtype=torch.float64)
    return x.to(dtype), labels, weight.to(dtype)


def cancelling_problem():
    """The cancelling reproducer of docs/design.md §3 (float32): x₁ + x₂ nearly cancel, W = 0 (q
    uniform), so ĝ₀ = (x₁ + x₂)/2 has ‖ĝ₀‖ ≈ 5e-4 and q₀ᵀKq₀ loses all accuracy."""
    x = torch.nn.functional.normalize(torch.tensor([[.6, .8], [0, 1], [1e-3, -1]]), dim=1)
    return x, torch.tensor([0, 1, 2]), torch.zeros(2, 3)


def assert_rows_close(got, x, labels, weight, row_scale, dtype, rtol=None, negative_only=False,
                      **kw):
    """Per-row losses and dW of a backend (`got` = (losses, dW)) against the exact float64
    reference on the same rounded inputs: every loss to 2 × the float32 reference's own error on
    that row + rtol·(1 + max_c |z̃_ic|)·|ℓ_i| (the loss's condition number in its logits), and dW
    normwise as `assert_matches_reference`. No NaN/Inf anywhere."""
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    xr, wr = x.to(dtype).double(), weight.to(dtype).double()
    rs = row_scale.double()
    ref = reference_rows(xr, labels, wr, rs, negative_only, **kw)
    low = (ref if ct == torch.float64 else
           reference_rows(xr.to(ct), labels, wr.to(ct), rs.to(ct), negative_only, **kw))
    rtol = (1e-13 if ct == torch.float64 else 2e-6) if rtol is None else rtol
    direction = "sea_neg" if negative_only else "sea"
    hyper = {k: v for k, v in kw.items() if k in ("alpha", "eta", "lam", "delta")}
    z = reference.margin_logits(reference.augment(xr, labels, wr, direction=direction, **hyper)
                                @ wr, labels, hyper.get("lam", 0.1), hyper.get("delta", 0.0))
    cond = 1 + z.abs().amax(dim=1)
    losses, grad = (t.detach().cpu().double() for t in got)
    for name, t in (("loss", losses), ("grad", grad)):
        assert torch.isfinite(t).all(), f"{name} is not finite"
    ref_l, low_l = ref[0], low[0].double()
    err = (losses - ref_l).abs()
    bound = 2 * (low_l - ref_l).abs() + rtol * cond * ref_l.abs() + torch.finfo(ct).tiny
    worst = int((err - bound).argmax())
    assert (err <= bound).all(), (f"loss row {worst}: {losses[worst]:.17g} vs {ref_l[worst]:.17g}"
                                  f" (err {err[worst]:.3g} > {bound[worst]:.3g})")
    gerr, own = rel_err(grad, ref[1]), rel_err(low[1], ref[1])
    gbound = 2 * own + (TOLERANCE[ct] if ct == torch.float32 else 1e-12)
    assert gerr <= gbound, f"grad: rel err {gerr:.3g} > {gbound:.3g} (reference's own {own:.3g})"
