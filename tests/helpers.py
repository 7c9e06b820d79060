"""Shared test helpers: random SeA problems, the reference's per-row losses and gradient, and the
relative error. (The per-dtype comparison with a float64 truth is tests/fuzz_oracle.py's.)"""
from __future__ import annotations

import torch

from sea_kernels import reference


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


def rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


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
