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
    """Features and a weight making p exactly one-hot at class 0 for rows labelled 0 (logit 0 ≥ 100,
    so A = 0 there at λ = 0.1); row 0 is labelled 1 and keeps a real gradient."""
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
