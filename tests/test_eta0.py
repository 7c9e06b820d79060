"""η = 0 (issue #16): no row moves, so `fused_sea` (every backend, every reduction, its backward,
double backward and `sea_augment`) and `sea_linear_cross_entropy` do no b×b work at all, and the
results equal the backends' own η = 0 results."""
import dataclasses

import pytest
import torch
from backends import backend_params, device
from torch.utils._python_dispatch import TorchDispatchMode

import sea_kernels
from sea_kernels.op import dispatch, torch_backend
from sea_kernels.op.call import Hyper, row_scale

B, D, C = 7, 5, 4            # b distinct from d and C: a b×b product is recognisable by shape
GRAM_STAGES = ("logits_and_gram", "gram_blocks", "projection_blocks", "attention",
               "sea_direction", "grad_rows")


def _problem(dtype=torch.float32, zero_row=True):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, D, generator=g, dtype=dtype)
    if zero_row:
        x[2] = 0
    y = torch.randint(0, C, (B,), generator=g)
    w = torch.randn(D, C, generator=g, dtype=dtype)
    bias = torch.randn(C, generator=g, dtype=dtype)
    return x, y, w, bias


class _GramCounter(TorchDispatchMode):
    """Records the shapes of every matrix product's result."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm,
                                   torch.ops.aten.matmul, torch.ops.aten.baddbmm):
            self.shapes.append(tuple(out.shape))
        return out

    def gram_products(self):
        return [s for s in self.shapes if s[-2:] == (B, B)]


@pytest.fixture
def no_gram(monkeypatch):
    """Every backend's forward and every b×b stage of the torch backend raise when called."""
    def refuse(*args, **kwargs):
        raise AssertionError("b×b work at η = 0")

    for name, spec in dispatch.BACKENDS_BY_NAME.items():
        monkeypatch.setitem(dispatch.BACKENDS_BY_NAME, name,
                            dataclasses.replace(spec, forward=refuse))
    for stage in GRAM_STAGES:
        monkeypatch.setattr(torch_backend, stage, refuse)


@pytest.mark.parametrize("backend", backend_params("groups", "bias"))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("group_size,with_bias", [(None, False), (3, True)])
def test_eta0_equals_backend_and_skips_gram_work(backend, reduction, group_size, with_bias,
                                                 monkeypatch):
    """fused_sea(η=0): loss and dW/db equal the backend's own forward at η = 0, and its forward
    is never called (neither in backward for reduction="none")."""
    dev = device(backend)
    x, y, w, bias = (t.to(dev) for t in _problem())
    bias = bias if with_bias else None
    hyper = Hyper(0.05, 0.0, 0.5, 0.3, False, group_size)
    losses, dw, db = dispatch.BACKENDS_BY_NAME[backend].forward(
        x, y, w, row_scale(B, reduction, torch.float32, x.device), hyper, True, bias)
    calls = []
    for name, spec in dispatch.BACKENDS_BY_NAME.items():
        monkeypatch.setitem(dispatch.BACKENDS_BY_NAME, name, dataclasses.replace(
            spec, forward=lambda *a, _n=name, **k: calls.append(_n)))
    wg = w.clone().requires_grad_(True)
    bg = None if bias is None else bias.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x, y, wg, alpha=0.05, eta=0, lam=0.5, delta=0.3,
                                 reduction=reduction, group_size=group_size, bias=bg,
                                 backend=backend)
    (loss.sum() if reduction == "none" else loss).backward()
    assert calls == []
    want = {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wg.grad, dw, rtol=1e-5, atol=1e-6)
    if bias is not None:
        torch.testing.assert_close(bg.grad, db, rtol=1e-5, atol=1e-6)


def test_eta0_zero_row_stays_zero():
    """A zero row is x̃ = 0 at η = 0: its logits are the bias alone."""
    x, y, w, bias = _problem(torch.float64)
    got = sea_kernels.fused_sea(x, y, w, eta=0.0, lam=1.0, delta=0.0, reduction="none",
                                bias=bias, backend="torch")
    want = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(x, dim=1) @ w + bias, y, reduction="none")
    torch.testing.assert_close(got, want)
    assert torch.equal(sea_kernels.sea_augment(x, y, w, eta=0.0)[2], torch.zeros(D,
                                                                              dtype=x.dtype))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_eta0_no_gram_work_to_second_order(no_gram, reduction):
    """With every backend's forward and the b×b stages raising, η = 0 still runs: the loss, dW,
    db, reduction="none"'s backward, double backward (Hessian-vector product) and sea_augment."""
    x, y, w, bias = _problem()
    wg, bg = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x, y, wg, eta=0.0, reduction=reduction, bias=bg)
    loss = loss.sum() if reduction == "none" else loss
    gw, gb = torch.autograd.grad(loss, (wg, bg), create_graph=True)
    (hv,) = torch.autograd.grad((gw * torch.ones_like(gw)).sum() + gb.sum(), wg)
    assert torch.isfinite(hv).all()
    loss = sea_kernels.fused_sea(x, y, wg, eta=0.0, reduction=reduction, bias=bg)
    (loss.sum() if reduction == "none" else loss).backward()
    sea_kernels.sea_augment(x, y, w, eta=0.0)


def test_eta0_no_gram_product():
    """No b×b matrix product outside the custom op at η = 0 (double backward and
    sea_linear_cross_entropy run as plain torch ops), while η > 0 does form them."""
    x, y, w, bias = _problem()
    wg = w.clone().requires_grad_(True)
    with _GramCounter() as mode:
        loss = sea_kernels.fused_sea(x, y, wg, eta=0.0, bias=bias)
        (g,) = torch.autograd.grad(loss, wg, create_graph=True)
        g.sum().backward()
        h = x.clone().requires_grad_(True)
        v = w.T.clone().requires_grad_(True)
        sea_kernels.sea_linear_cross_entropy(h, v, y, eta=0.0).backward()
    assert mode.shapes and mode.gram_products() == []
    with _GramCounter() as mode:
        sea_kernels.sea_augment(x, y, w, eta=0.8)
    assert mode.gram_products()
