"""bias (issue #10): logits XW + 1bᵀ, ∂loss/∂b = Σ_i D_i.

fused_sea(x, y, W, bias=b) against the float64 reference loss with autograd for dW and db (every
backend whose `sea_forward` takes bias; the others are skipped until they do), an nn.Linear head
trained by SGD through fused_sea against the same head trained with the float64 reference loss,
double backward, dtype promotion and the refusals.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from backends import backend_params, forward, takes  # noqa: E402
from helpers import make_problem, rel_err  # noqa: E402
from test_groups import HYPER, device_for  # noqa: E402, F401

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import torch_backend  # noqa: E402


def problem(b, d, c, dtype, seed=0):
    x, y, w = make_problem(b, d, c, seed=seed)
    bias = torch.randn(c, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return x.to(dtype), y, w.to(dtype), bias.to(dtype)


def reference_grads(x, y, w, bias, upstream, direction="sea", group_size=None, **kw):
    """(per-row losses, ∂(u·ℓ)/∂W, ∂(u·ℓ)/∂b) of the reference, by autograd, in x's dtype."""
    wg, bg = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    rows = reference.sea_loss(x, y, wg, bias=bg, reduction="none", direction=direction,
                              group_size=group_size, **{**HYPER, **kw})
    dw, db = torch.autograd.grad(rows @ upstream.to(rows.dtype), (wg, bg))
    return rows.detach(), dw, db


def bound(dtype, own):
    return 1e-12 if dtype == torch.float64 else 2 * own + 2e-5


@pytest.mark.parametrize("group_size", [None, 3])
@pytest.mark.parametrize("direction", ["sea", "sea_neg"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("backend", backend_params("bias"))
def test_fused_sea_with_bias(backend, reduction, direction, group_size, device_for):  # noqa: F811
    if group_size and backend != "torch" and not _takes_group(backend):
        pytest.skip(f"{backend} takes no group_size yet")
    dev = device_for(backend)
    b, d, c = 7, 6, 5
    for dtype in [torch.float32] + ([] if backend == "triton" else [torch.float64]):
        x, y, w, bias = problem(b, d, c, dtype, seed=3)
        up = (torch.rand(b, dtype=torch.float64) + 0.1 if reduction == "none" else
              torch.full((b,), 1.0 / b if reduction == "mean" else 1.0, dtype=torch.float64))
        want = reference_grads(x.double(), y, w.double(), bias.double(), up, direction,
                               group_size)
        own = want if dtype == torch.float64 else reference_grads(
            x.float(), y, w.float(), bias.float(), up, direction, group_size)
        wg, bg = w.to(dev).requires_grad_(True), bias.to(dev).requires_grad_(True)
        loss = sea_kernels.fused_sea(x.to(dev), y.to(dev), wg, bias=bg, reduction=reduction,
                                     direction=direction, group_size=group_size, backend=backend,
                                     **HYPER)
        total = loss @ up.to(dev, loss.dtype) if reduction == "none" else loss
        dw, db = torch.autograd.grad(total, (wg, bg))
        assert dw.dtype == w.dtype and db.dtype == bias.dtype and db.shape == (c,)
        want_loss = want[0] if reduction == "none" else (want[0] @ up).reshape(())
        own_loss = own[0] if reduction == "none" else (own[0] @ up.to(own[0].dtype)).reshape(())
        for name, got, ref, low in (("loss", total if reduction != "none" else loss, want_loss,
                                     own_loss), ("dW", dw, want[1], own[1]),
                                    ("db", db, want[2], own[2])):
            got = got.detach().cpu().double().reshape(-1)
            ref, low = ref.reshape(-1), low.double().reshape(-1)
            assert torch.isfinite(got).all(), f"{name} not finite"
            err, lim = rel_err(got, ref), bound(dtype, rel_err(low, ref))
            assert err <= lim, f"{dtype} {name}: rel err {err:.3g} > {lim:.3g}"


def _takes_group(backend):
    return takes(backend, "group_size")


def test_bias_gradient_is_the_column_sum_of_d():
    """db = Σ_i D_i, D = diag(s)(P̃ − Y): from the augmented logits X̃W + 1bᵀ, float64."""
    x, y, w, bias = problem(6, 4, 3, torch.float64, seed=4)
    s = torch.rand(6, dtype=torch.float64)
    losses, dw, db = forward(torch_backend.sea_forward, x, y, w, s, bias=bias, **HYPER)
    x_aug = reference.augment(x, y, w, bias=bias, **HYPER)
    p = torch.softmax(reference.margin_logits(x_aug @ w + bias, y, HYPER["lam"], HYPER["delta"]),
                      dim=1)
    d = s[:, None] * (p - reference.one_hot(y, 3, p.dtype))
    torch.testing.assert_close(db, d.sum(dim=0), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(dw, x_aug.T @ d, rtol=1e-12, atol=1e-15)


def test_reference_direction_uses_the_biased_logits():
    """The reference's direction is ∇_x ℓ(xW + b) (a positive multiple): the bias enters P, not
    the map a ↦ W a."""
    x, y, w, bias = problem(5, 4, 3, torch.float64, seed=5)
    xg = x.clone().requires_grad_(True)
    loss = reference.smoothed_hinge_loss(xg @ w + bias, y, HYPER["lam"], HYPER["delta"], "sum")
    (g,) = torch.autograd.grad(loss, xg)
    got = reference.gradient_direction(x, y, w, HYPER["lam"], HYPER["delta"], bias=bias)
    torch.testing.assert_close(reference.unit(got), reference.unit(g), rtol=1e-12, atol=1e-13)
    plain = reference.gradient_direction(x, y, w, HYPER["lam"], HYPER["delta"])
    assert (reference.unit(plain) - reference.unit(got)).abs().max() > 1e-3


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_linear_head_trained_with_bias(dtype, tol):
    """An nn.Linear(d, C) head, 5 SGD steps (momentum 0.9) with fused_sea(x, y, lin.weight.T,
    bias=lin.bias), equals the same head trained with the float64 reference loss."""
    torch.manual_seed(0)
    b, d, c = 12, 8, 4
    x, y, _ = make_problem(b, d, c, seed=6)
    torch.manual_seed(1)
    init = torch.nn.Linear(d, c, dtype=torch.float64)
    heads = []
    for kind in ("fused", "reference"):
        lin = torch.nn.Linear(d, c, dtype=dtype if kind == "fused" else torch.float64)
        with torch.no_grad():
            lin.weight.copy_(init.weight)
            lin.bias.copy_(init.bias)
        opt = torch.optim.SGD(lin.parameters(), lr=0.5, momentum=0.9)
        for step in range(5):
            rows = slice(0, 8) if step % 2 == 0 else slice(4, 12)
            opt.zero_grad()
            if kind == "fused":
                loss = sea_kernels.fused_sea(x[rows].to(dtype), y[rows], lin.weight.T,
                                             bias=lin.bias, backend="auto", **HYPER)
            else:
                loss = reference.sea_loss(x[rows], y[rows], lin.weight.T, bias=lin.bias,
                                          **HYPER)
            loss.backward()
            opt.step()
        heads.append(lin)
    got, want = heads
    assert rel_err(got.weight.detach(), want.weight.detach()) <= tol
    assert rel_err(got.bias.detach(), want.bias.detach()) <= tol
    assert (want.bias.detach() - init.bias.detach()).abs().max() > 1e-3   # the bias did train


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_double_backward_with_bias(reduction):
    """create_graph=True: the derivative of (dW, db) is the Hessian of (W, b) ↦ ℓ(X̃W + 1bᵀ) with
    X̃ held fixed (Alg. 1), against autograd on the frozen reference."""
    x, y, w, bias = problem(6, 5, 3, torch.float64, seed=7)
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


def test_bias_dtype_promotes_like_weight():
    """float32 x and W with a float64 bias compute in float64; db comes back in the bias dtype."""
    x, y, w, bias = problem(5, 4, 3, torch.float32, seed=8)
    bg = bias.double().requires_grad_(True)
    wg = w.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x, y, wg, bias=bg, **HYPER)
    assert loss.dtype == torch.float64
    loss.backward()
    assert wg.grad.dtype == torch.float32 and bg.grad.dtype == torch.float64
    want = reference.sea_loss(x.double(), y, w.double(), bias=bias.double(), **HYPER)
    assert abs(loss.item() - want.item()) <= 1e-12 * abs(want.item())


def test_bias_only_requires_grad():
    """A frozen weight with a trainable bias: db only (weight.grad stays None)."""
    x, y, w, bias = problem(5, 4, 3, torch.float64, seed=9)
    bg = bias.clone().requires_grad_(True)
    sea_kernels.fused_sea(x, y, w, bias=bg, backend="torch", **HYPER).backward()
    want = reference.sea_loss_and_grad(x, y, w, bias=bias, **HYPER)[2]
    torch.testing.assert_close(bg.grad, want, rtol=1e-12, atol=1e-15)
    assert w.grad is None


def test_sea_augment_with_bias():
    x, y, w, bias = problem(7, 5, 4, torch.float64, seed=10)
    for direction in ("sea", "sea_neg", "adv"):
        got = sea_kernels.sea_augment(x, y, w, bias=bias, direction=direction, group_size=3,
                                      **HYPER)
        want = reference.augment(x, y, w, bias=bias, direction=direction, group_size=3, **HYPER)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
        plain = sea_kernels.sea_augment(x, y, w, direction=direction, group_size=3, **HYPER)
        assert (plain - got).abs().max() > 1e-4


@pytest.mark.parametrize("bad,exc,match", [
    (torch.zeros(4), ValueError, r"shape \(classes=3,\)"),
    (torch.zeros(1, 3), ValueError, r"shape \(classes=3,\)"),
    (torch.zeros(3, dtype=torch.int64), TypeError, "bias must be float"),
    ([0.0, 0.0, 0.0], TypeError, "bias must be a torch.Tensor"),
    (torch.tensor([0.0, float("nan"), 0.0]), ValueError, "bias contains NaN"),
    (torch.zeros(3, device="meta"), ValueError, "device"),
])
def test_bad_bias_refused(bad, exc, match):
    x, y, w, _ = problem(5, 4, 3, torch.float32)
    for fn in (sea_kernels.fused_sea, sea_kernels.sea_augment):
        with pytest.raises(exc, match=match):
            fn(x, y, w, bias=bad)
