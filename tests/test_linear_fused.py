"""The drop-in loss's two paths give the same numbers (docs/design.md §8): the fused path
(`linear_loss_op`: the backend's forward with input_grad=True, the gradients computed in the
forward pass) against the autograd path (direction op + autograd) — every backend declaring
"input_grad", reductions, groups, bias, ignore_index, tensor hyper-parameters, η = 0 with λ ≠ 1;
double backward (create_graph) through the fused op; torch.func; opcheck of the op; the input
gradient alone and the weight gradient alone; an explicit backend without "input_grad" refused."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backends import NAMES, TRITON_OK, declares, param

from sea_kernels.op import linear
from sea_kernels.op.linear import linear_loss_op, sea_linear_cross_entropy

D64 = torch.float64
HYPER = dict(alpha=0.05, eta=0.5, lam=0.3, delta=0.2)


def problem(b=12, d=7, c=5, dtype=D64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=g, dtype=dtype) * 2
    v = torch.randn(c, d, generator=g, dtype=dtype)
    bias = torch.randn(c, generator=g, dtype=dtype)
    y = torch.randint(0, c, (b,), generator=g)
    return h, v, y, bias


def run(fused, h, v, y, bias, *, need=(True, True), **kw):
    """(loss, ∂/∂h, ∂/∂V, ∂/∂b) through the fused (True) or the autograd path (False)."""
    hh = h.detach().clone().requires_grad_(need[0])
    vv = v.detach().clone().requires_grad_(need[1])
    bb = None if bias is None else bias.detach().clone().requires_grad_(need[1])
    old = linear._use_fused
    linear._use_fused = lambda *a: fused
    try:
        out = sea_linear_cross_entropy(hh, vv, y, linear_bias=bb, **kw)
    finally:
        linear._use_fused = old
    scalar = out if out.dim() == 0 else (out * torch.linspace(0.5, 1.5, out.numel(),
                                                              dtype=out.dtype)).sum()
    leaves = [t for t in (hh, vv, bb) if t is not None and t.requires_grad]
    gs = iter(torch.autograd.grad(scalar, leaves))
    return (out.detach(), next(gs) if need[0] else None, next(gs) if need[1] else None,
            next(gs) if need[1] and bias is not None else None)


def same(a, b, rtol):
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
            continue
        torch.testing.assert_close(x.double(), y.double(), rtol=rtol, atol=rtol * 1e-2)


def _params():
    return [param(n, marks=() if declares(n, ("input_grad",)) else (pytest.mark.skip(
        reason=f"{n} does not declare input_grad"),)) for n in NAMES]


@pytest.mark.parametrize("dtype", [D64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", _params())
def test_fused_equals_autograd_path(name, reduction, dtype):
    if not declares(name, dtype=dtype):
        pytest.skip(f"{name} does not compute in {dtype}")
    h, v, y, bias = problem(dtype=dtype)
    y = y.clone()
    y[[2, 9]] = -100
    h[5] = 0
    tol = 1e-9 if dtype == D64 else 2e-4
    for kw in (dict(HYPER), dict(HYPER, group_size=5), dict(alpha=0.01, eta=0.8, lam=1.0,
                                                                delta=0.0)):
        for b in (bias, None):
            same(run(True, h, v, y, b, reduction=reduction, backend=name, **kw),
                 run(False, h, v, y, b, reduction=reduction, backend=name, **kw), tol)


@pytest.mark.parametrize("name", _params())
def test_fused_eta_zero_and_tensor_hyperparameters(name):
    """η = 0 with λ ≠ 1 (`unmoved_forward` inside the op), and tensor α, η, λ, δ (η = 0 too)."""
    dtype = D64 if declares(name, dtype=D64) else torch.float32
    tol = 1e-10 if dtype == D64 else 2e-4
    h, v, y, bias = problem(seed=2, dtype=dtype)
    kw = dict(alpha=0.05, eta=0.0, lam=0.3, delta=0.2)
    same(run(True, h, v, y, bias, backend=name, **kw),
         run(False, h, v, y, bias, backend=name, **kw), tol)
    for eta in (0.0, 0.7):
        t = {k: torch.tensor(x, dtype=dtype) for k, x in dict(kw, eta=eta).items()}
        same(run(True, h, v, y, bias, backend=name, **t),
             run(False, h, v, y, bias, backend=name, **dict(kw, eta=eta)), tol)


@pytest.mark.parametrize("need", [(True, False), (False, True)], ids=["input", "weight"])
def test_fused_input_gradient_alone_and_weight_gradient_alone(need):
    h, v, y, bias = problem(seed=4)
    same(run(True, h, v, y, bias, need=need, **HYPER),
         run(False, h, v, y, bias, need=need, **HYPER), 1e-10)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_double_backward_through_the_fused_op(reduction):
    """backward(create_graph=True) through the fused op: the gradients are differentiable (the
    autograd path's graph, direction fixed), so a gradient-norm penalty has the same
    derivative on both paths."""
    h, v, y, bias = problem(b=8, seed=5)

    def penalty(fused):
        hh, vv = h.clone().requires_grad_(True), v.clone().requires_grad_(True)
        old = linear._use_fused
        linear._use_fused = lambda *a: fused
        try:
            loss = sea_linear_cross_entropy(hh, vv, y, linear_bias=bias, reduction=reduction,
                                            **HYPER)
        finally:
            linear._use_fused = old
        loss = loss if loss.dim() == 0 else loss.sum()
        gh, gv = torch.autograd.grad(loss, (hh, vv), create_graph=True)
        return torch.autograd.grad(gh.square().sum() + gv.square().sum(), (hh, vv))

    same(penalty(True), penalty(False), 1e-9)


def test_torch_func_grad_takes_the_autograd_path():
    h, v, y, bias = problem(seed=6)

    def f(hh, vv):
        return sea_linear_cross_entropy(hh, vv, y, linear_bias=bias, **HYPER)

    gh, gv = torch.func.grad(f, argnums=(0, 1))(h, v)
    _, want_h, want_v, _ = run(True, h, v, y, bias, **HYPER)
    same((gh, gv), (want_h, want_v), 1e-10)


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_opcheck(reduce, with_bias):
    h, v, y, bias = problem(b=7, d=5, c=3)
    x = F.normalize(h, dim=1).requires_grad_(True)
    s = torch.full((7,), 1 / 7, dtype=D64)
    scalars = torch.tensor([0.05, 0.5, 0.3, 0.2], dtype=D64)
    torch.library.opcheck(linear_loss_op, (x, y, v.requires_grad_(True), s, scalars, "torch",
                                           reduce, True, True, 3,
                                           bias if with_bias else None))


@pytest.mark.skipif(not TRITON_OK, reason="triton not runnable here")
def test_backend_without_input_grad_is_refused_when_the_input_requires_grad():
    h, v, y, _ = problem()
    if declares("triton", ("input_grad",)):
        pytest.skip("triton declares input_grad")
    with pytest.raises(ValueError, match="input_grad"):
        sea_linear_cross_entropy(h.float().requires_grad_(True), v.float(), y, backend="triton",
                                 **HYPER)


def test_eta_zero_without_torch_linear_cross_entropy(monkeypatch):
    """torch < 2.13 (the GPU image's 2.11) has no F.linear_cross_entropy: the η = 0, λ = 1,
    δ = 0 call falls back to F.cross_entropy(F.linear(...)), the same numbers."""
    h, v, y, bias = problem(seed=7)
    y = y.clone()
    y[3] = -100
    kw = dict(eta=0.0, lam=1.0, delta=0.0, reduction="none")
    want = run(True, h, v, y, bias, **kw)
    monkeypatch.delattr(F, "linear_cross_entropy")
    same(run(True, h, v, y, bias, **kw), want, 1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_zero_rows_agree_on_both_paths(eta):
    """A zero row: η ≠ 0 moves it to x̃ = u (gradient (γ − βu)/η, then F.normalize's); η = 0
    (λ ≠ 1, not torch's own kernel) keeps x̃ = Π(0) = 0, no gradient — on both paths."""
    h, v, y, bias = problem(seed=8)
    h[[1, 6]] = 0
    kw = dict(HYPER, eta=eta, reduction="none")
    fused, autograd = run(True, h, v, y, bias, **kw), run(False, h, v, y, bias, **kw)
    same(fused, autograd, 1e-9)
    if eta == 0:
        assert fused[1][[1, 6]].abs().max() == 0
