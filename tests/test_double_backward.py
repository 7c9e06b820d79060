"""Double backward through `fused_sea` (issue #8): with x̃ held fixed (Alg. 1) the second
derivative is the Hessian of W ↦ ℓ(X̃W), X̃ = sea_augment(x, labels, W) a constant."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers import make_problem, margin_problem, rel_err  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import triton_backend  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]
HYPER = dict(alpha=0.02, eta=0.6, lam=0.5, delta=1.0)


def frozen_reference(x, y, w0, reduction, direction="sea", **kw):
    """W ↦ the reference loss of the augmentation computed at w0 and detached."""
    x_aug = reference.augment(x, y, w0, direction=direction, **kw).detach()
    return lambda w: reference.smoothed_hinge_loss(x_aug @ w, y, kw["lam"], kw["delta"],
                                                   reduction)


def op(x, y, reduction, backend="torch", direction="sea", **kw):
    return lambda w: sea_kernels.fused_sea(x, y, w, reduction=reduction, backend=backend,
                                           direction=direction, **kw)


def _hvp(fn, w, v, upstream=None):
    """(∂(u·f)/∂W, ∂/∂W ⟨∂(u·f)/∂W, V⟩) by double backward."""
    wg = w.detach().clone().requires_grad_(True)
    out = fn(wg)
    out = out @ upstream if upstream is not None else out
    (g,) = torch.autograd.grad(out, wg, create_graph=True)
    (h,) = torch.autograd.grad((g * v).sum(), wg)
    return g.detach(), h


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradgradcheck_without_augmentation(reduction):
    """η = 0: x̃ = Π(x) does not depend on W, so the op's second derivative is the true one."""
    x, y, w = make_problem(6, 5, 4, seed=3, normalise=False)
    kw = dict(HYPER, eta=0.0)
    assert torch.autograd.gradgradcheck(op(x, y, reduction, **kw), (w.requires_grad_(True),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("direction", ["sea", "sea_neg"])
def test_gradgradcheck_two_rows(reduction, direction):
    """b = 2: ĝ_i is the other row whatever W is, so x̃ is W-independent at any η."""
    x, y, w = make_problem(2, 5, 3, seed=4)
    fn = op(x, y, reduction, direction=direction, **HYPER)
    assert torch.autograd.gradgradcheck(fn, (w.requires_grad_(True),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("direction", ["sea", "sea_neg"])
def test_hessian_vector_product_matches_frozen_reference(reduction, direction):
    x, y, w = make_problem(11, 7, 4, seed=5)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(w.shape, generator=g, dtype=w.dtype)
    up = torch.rand(11, generator=g, dtype=w.dtype) if reduction == "none" else None
    got_g, got_h = _hvp(op(x, y, reduction, direction=direction, **HYPER), w, v, up)
    want_g, want_h = _hvp(frozen_reference(x, y, w, reduction, direction, **HYPER), w, v, up)
    assert rel_err(got_g, want_g) < 1e-12
    assert rel_err(got_h, want_h) < 1e-10
    assert got_h.norm() > 1e-3 * want_g.norm()  # used to be exactly 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradgradcheck_with_frozen_augmentation(reduction):
    """gradgradcheck of the frozen-x̃ reference passes, and the op's analytic second derivative
    (its full Hessian, by double backward) equals the frozen reference's, at η > 0."""
    x, y, w = make_problem(7, 4, 3, seed=6)
    ref = frozen_reference(x, y, w, reduction, **HYPER)
    assert torch.autograd.gradgradcheck(ref, (w.clone().requires_grad_(True),))
    up = torch.rand(7, dtype=w.dtype) if reduction == "none" else torch.tensor(1.0, dtype=w.dtype)

    def scalar(f):
        return lambda wt: (f(wt) * up).sum()
    got = torch.autograd.functional.hessian(scalar(op(x, y, reduction, **HYPER)), w)
    want = torch.autograd.functional.hessian(scalar(ref), w)
    assert rel_err(got, want) < 1e-10


def exact_hvp(x_aug, y, w, v, lam, delta, row_weights):
    """H·V of W ↦ Σ_i s_i ℓ(x̃_iᵀW) written out (x̃ fixed, no autograd): with t, u, σ = sigmoid(t)
    of docs/design.md §3 and e_i = u_i − e_y, the Hessian in l̃_i is
    (σ(1−σ) e_i e_iᵀ + σ(diag(u_i) − u_i u_iᵀ))/λ. (The reference's logsigmoid has an exact first
    derivative but not an exact second one at large margins.)"""
    yy = reference.one_hot(y, w.shape[1], w.dtype)
    z = (x_aug @ w + delta * (1 - yy)) / lam
    others = z.masked_fill(yy.bool(), float("-inf"))
    t = torch.logsumexp(others, dim=1) - (z * yy).sum(dim=1)
    u, sig = torch.softmax(others, dim=1), torch.sigmoid(t)
    e, dl = u - yy, x_aug @ v
    rows = ((sig * (1 - sig))[:, None] * e * (e * dl).sum(1, keepdim=True)
            + sig[:, None] * (u * dl - u * (u * dl).sum(1, keepdim=True)))
    return x_aug.T @ (row_weights[:, None] * rows / lam)


@pytest.mark.parametrize("margin", [1, 20, 100, 300, 1000])
def test_confident_rows_double_backward(margin):
    """Up to a 1000λ margin the Hessian is made of e^{t} terms; the exact formulas keep them."""
    x, y, w = margin_problem(10, 8, 4, margin, seed=2)
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(3), dtype=w.dtype)
    kw = dict(HYPER, lam=0.1, delta=0.0)
    up = torch.rand(10, generator=torch.Generator().manual_seed(4), dtype=w.dtype)
    _, got = _hvp(op(x, y, "none", **kw), w, v, up)
    want = exact_hvp(reference.augment(x, y, w, **kw), y, w, v, 0.1, 0.0, up)
    assert torch.isfinite(got).all()
    assert rel_err(got, want) < 1e-12


def test_first_order_unchanged_by_create_graph():
    x, y, w = make_problem(9, 6, 5, seed=7, dtype=torch.float32)
    wg = w.detach().clone().requires_grad_(True)
    plain = torch.autograd.grad(op(x, y, "mean", **HYPER)(wg), wg)
    (graph,) = torch.autograd.grad(op(x, y, "mean", **HYPER)(wg), wg, create_graph=True)
    assert graph.requires_grad and graph.dtype == torch.float32
    assert rel_err(graph.detach(), plain[0]) < 1e-5


@pytest.mark.skipif(not triton_backend.AVAILABLE, reason="triton unavailable")
def test_other_backends_share_the_double_backward():
    """The differentiable dW is built from torch ops whatever backend ran the forward."""
    x, y, w = make_problem(8, 6, 3, seed=8, dtype=torch.float32)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(4))
    got = _hvp(op(x.to(dev), y.to(dev), "mean", backend="triton", **HYPER), w.to(dev), v.to(dev))
    want = _hvp(frozen_reference(x.double(), y, w.double(), "mean", **HYPER), w.double(),
                v.double())
    assert rel_err(got[1].cpu(), want[1]) < 1e-4


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_double_backward_with_bias(reduction):
    """create_graph=True: the derivative of (dW, db) is the Hessian of (W, b) ↦ ℓ(X̃W + 1bᵀ) with
    X̃ held fixed (Alg. 1), against autograd on the frozen reference."""
    x, y, w = make_problem(6, 5, 3, seed=7)
    bias = torch.randn(3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    up = torch.rand(6, dtype=torch.float64) + 0.5
    x_aug = reference.augment(x, y, w, bias=bias, **HYPER)
    vw, vb = torch.randn_like(w), torch.randn_like(bias)

    def second(fn):
        wg, bg = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
        out = fn(wg, bg)
        out = out @ up if reduction == "none" else out
        gw, gb = torch.autograd.grad(out, (wg, bg), create_graph=True)
        hw, hb = torch.autograd.grad((gw * vw).sum() + (gb * vb).sum(), (wg, bg))
        return gw.detach(), gb.detach(), hw, hb

    got = second(lambda wg, bg: sea_kernels.fused_sea(x, y, wg, bias=bg, reduction=reduction,
                                                      backend="torch", **HYPER))
    want = second(lambda wg, bg: reference.smoothed_hinge_loss(
        x_aug @ wg + bg, y, HYPER["lam"], HYPER["delta"], reduction))
    for name, a, r in zip(("dW", "db", "H·v (W)", "H·v (b)"), got, want):
        assert rel_err(a, r) <= 1e-10, f"{name}: {rel_err(a, r):.3g}"
