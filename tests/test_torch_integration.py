"""`fused_sea` inside PyTorch's machinery (issue #10): torch.autocast (the op runs in float32, as a
loss), torch.compile(fullgraph=True, dynamic=True) with the hyper-parameters as traced Python
floats, and torch.func transforms (grad, vjp, jacrev) against torch.autograd."""
from __future__ import annotations

import pytest
import torch
from helpers import make_problem, rel_err

from sea_kernels import fused_sea, reference, sea_augment
from sea_kernels.op import cpp_backend as _ext
from sea_kernels.op.fused import fused_sea_op, weighted_grad_op

CPU_BACKENDS = [
    "torch",
    pytest.param("cpp", marks=pytest.mark.skipif(
        not _ext.CPP_AVAILABLE, reason=f"C++ extension not built: {_ext.CPP_ERROR}")),
]
OPS = ("sea_kernels::fused_sea", "sea_kernels::fused_sea_weighted_grad")


# ------------------------------------------------------------------------------ torch.autocast

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("key", ["AutocastCPU", "AutocastCUDA"])
def test_both_ops_declare_their_autocast_rule_for_cpu_and_cuda(op, key):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op, key)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_autocast_bf16_gives_the_float32_result(backend, dtype):
    """Under autocast the op takes its inputs in float32: loss and gradient are exactly those of
    the float32 inputs without autocast, the loss float32, ∂loss/∂W in the weight's dtype."""
    x, y, w = make_problem(37, 70, 9, seed=3, dtype=dtype)
    wg = w.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused_sea(x, y, wg, eta=0.4, backend=backend)
    loss.backward()
    assert loss.dtype == torch.float32 and wg.grad.dtype == dtype

    w32 = w.float().clone().requires_grad_(True)
    want = fused_sea(x.float(), y, w32, eta=0.4, backend=backend)
    want.backward()
    assert torch.equal(loss, want)
    assert torch.equal(wg.grad, w32.grad.to(dtype))
    wp = w.clone().requires_grad_(True)           # = the call without autocast, bf16 inputs too
    plain = fused_sea(x, y, wp, eta=0.4, backend=backend)
    plain.backward()
    assert torch.equal(loss, plain) and torch.equal(wg.grad, wp.grad)
    # against the float64 spec on the same (for bf16: bf16-rounded) inputs: float32 accuracy for
    # the loss; the gradient rounded once to the weight's dtype
    ref_loss, ref_grad = reference.sea_loss_and_grad(x.double(), y, w.double(), eta=0.4)
    assert rel_err(loss, ref_loss) < 2e-5
    assert rel_err(wg.grad, ref_grad) < (2e-5 if dtype == torch.float32 else 8e-3)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_autocast_reduction_none_backward_inside_the_context(backend):
    """reduction='none' runs the backend again in backward (fused_sea_weighted_grad), here with
    autocast still on: it is float32 too."""
    x, y, w = make_problem(29, 33, 6, seed=8, dtype=torch.float32)
    up = torch.rand(29, generator=torch.Generator().manual_seed(1))
    wg = w.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = fused_sea(x, y, wg, reduction="none", backend=backend)
        (rows * up).sum().backward()
    assert rows.dtype == torch.float32 and wg.grad.dtype == torch.float32
    ref_rows, ref_grad = reference.sea_loss_and_grad(x.double(), y, w.double(), reduction="none")
    assert rel_err(rows, ref_rows) < 2e-5
    wr = w.double().requires_grad_(True)
    (reference.sea_loss(x.double(), y, wr, reduction="none") * up.double()).sum().backward()
    assert rel_err(wg.grad, wr.grad) < 2e-5


def test_autocast_leaves_float64_in_float64():
    x, y, w = make_problem(11, 20, 4, seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused_sea(x, y, w, backend="torch")
    assert loss.dtype == torch.float64
    assert torch.equal(loss, fused_sea(x, y, w, backend="torch"))


@pytest.mark.parametrize("direction", ["sea", "sea_neg", "mixup"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sea_augment_under_autocast_is_the_result_without_it(direction, dtype):
    x, y, w = make_problem(21, 30, 5, seed=9, dtype=dtype)
    want = sea_augment(x, y, w, direction=direction, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sea_augment(x, y, w, direction=direction,
                          generator=torch.Generator().manual_seed(0))
    assert got.dtype == want.dtype == dtype and torch.equal(got, want)


# ------------------------------------------------------------------------------ torch.func

def _loss_fn(x, y, backend, reduction="mean", **kw):
    def f(w, b=None):
        out = fused_sea(x, y, w, bias=b, reduction=reduction, backend=backend, eta=0.4, **kw)
        return out.sum()
    return f


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_func_grad_matches_autograd(backend, reduction, dtype):
    x, y, w = make_problem(23, 40, 6, seed=11, dtype=dtype)
    f = _loss_fn(x, y, backend, reduction)
    got = torch.func.grad(f)(w)
    wg = w.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(f(wg), wg)
    assert got.dtype == dtype
    assert rel_err(got, want) < (1e-12 if dtype == torch.float64 else 1e-5)
    _, ref = reference.sea_loss_and_grad(x.double(), y, w.double(), eta=0.4, reduction=reduction)
    assert rel_err(got, ref) < (1e-10 if dtype == torch.float64 else 2e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_func_grad_of_weight_and_bias_and_vjp(backend):
    x, y, w = make_problem(17, 12, 5, seed=4)
    bias = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = _loss_fn(x, y, backend, group_size=6)
    gw, gb = torch.func.grad(f, argnums=(0, 1))(w, bias)
    wg, bg = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    want_w, want_b = torch.autograd.grad(f(wg, bg), (wg, bg))
    assert rel_err(gw, want_w) < 1e-12 and rel_err(gb, want_b) < 1e-12
    value, vjp_fn = torch.func.vjp(f, w, bias)
    vw, vb = vjp_fn(torch.tensor(2.0, dtype=torch.float64))
    assert value == f(w, bias)
    assert rel_err(vw, 2 * want_w) < 1e-12 and rel_err(vb, 2 * want_b) < 1e-12


def test_func_second_order_matches_double_backward():
    """jacrev(grad(f)) is the Hessian with x̃ held fixed, as backward(create_graph=True) gives."""
    x, y, w = make_problem(9, 5, 3, seed=6)
    f = _loss_fn(x, y, "torch")
    hess = torch.func.jacrev(torch.func.grad(f))(w)              # (d, C, d, C)
    wg = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(wg), wg, create_graph=True)
    v = torch.randn(w.shape, dtype=w.dtype, generator=torch.Generator().manual_seed(3))
    (hv,) = torch.autograd.grad(g, wg, v)
    assert rel_err(torch.einsum("ijkl,kl->ij", hess, v), hv) < 1e-12


# ------------------------------------------------------------------------------ torch.compile

@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compile_fullgraph_dynamic_training_step_matches_eager(backend):
    """Three SGD steps compiled with fullgraph=True, dynamic=True — η a Python float argument,
    which dynamic=True traces as a SymFloat — on two batch sizes without a recompile, equal to
    eager."""
    torch._dynamo.reset()

    def step(x, y, w, eta):
        return fused_sea(x, y, w, alpha=0.02, eta=eta, lam=0.1, backend=backend) \
            + 1e-4 * (w * w).sum()

    compiled = torch.compile(step, fullgraph=True, dynamic=True)
    _, _, w0 = make_problem(1, 24, 5, seed=0, dtype=torch.float32)
    w_c, w_e = w0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    for i, b in enumerate((16, 23, 16)):
        x, y, _ = make_problem(b, 24, 5, seed=b + i, dtype=torch.float32)
        if i == 0:
            loss_c = compiled(x, y, w_c, 0.4)
        else:
            with torch.compiler.set_stance("fail_on_recompile"):
                loss_c = compiled(x, y, w_c, 0.4)
        loss_e = step(x, y, w_e, 0.4)
        loss_c.backward()
        loss_e.backward()
        torch.testing.assert_close(loss_c, loss_e)
        torch.testing.assert_close(w_c.grad, w_e.grad)
        with torch.no_grad():
            for w in (w_c, w_e):
                w -= 0.5 * w.grad
                w.grad = None
    torch.testing.assert_close(w_c, w_e)


# ------------------------------------------------------------------------------ opcheck, gradcheck

def run_op(x, y, w, backend, **kw):
    """loss and dW through the public op and autograd."""
    wg = w.detach().clone().requires_grad_(True)
    loss = fused_sea(x, y, wg, backend=backend, **kw)
    loss.backward()
    return loss.detach(), wg.grad


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_opcheck(backend, reduction):
    x, y, w = make_problem(11, 13, 5, dtype=torch.float32)
    w.requires_grad_(True)
    torch.library.opcheck(fused_sea_op, (x, y, w, 0.01, 0.8, 0.1, 0.0, reduction, backend, False,
                                         True))
    torch.library.opcheck(weighted_grad_op, (x, y, w.detach(), torch.rand(11), 0.01, 0.8, 0.1, 0.0,
                                             backend, False))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_without_augmentation(backend, reduction):
    """η = 0: x̃ = Π(x) does not depend on W, so the op's dW is the true gradient."""
    x, y, w = make_problem(6, 5, 4, seed=3, normalise=False)
    w.requires_grad_(True)

    def fn(wt):
        return fused_sea(x, y, wt, eta=0.0, lam=0.5, delta=1.0, reduction=reduction,
                                     backend=backend)
    assert torch.autograd.gradcheck(fn, (w,))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradient_with_frozen_augmentation(backend):
    """η > 0: dW equals the finite-difference gradient of W ↦ ℓ(X̃₀ W), X̃₀ frozen (Alg. 1)."""
    x, y, w = make_problem(8, 6, 3, seed=4)
    x_aug = reference.augment(x, y, w, eta=0.6)

    def frozen(wt):
        return reference.smoothed_hinge_loss(x_aug @ wt, y)
    _, grad = run_op(x, y, w, backend, eta=0.6)
    eps, numeric = 1e-6, torch.zeros_like(w)
    for idx in range(w.numel()):
        e = torch.zeros_like(w).view(-1)
        e[idx] = eps
        e = e.view_as(w)
        numeric.view(-1)[idx] = (frozen(w + e) - frozen(w - e)) / (2 * eps)
    assert rel_err(grad, numeric) < 1e-7


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    x, y, w = make_problem(32, 24, 6, dtype=torch.float32)
    torch._dynamo.reset()

    def step(weight):
        return fused_sea(x, y, weight, backend=backend) * 2.0

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    w_eager, w_comp = (w.clone().requires_grad_(True) for _ in range(2))
    step(w_eager).backward()
    out = compiled(w_comp)
    out.backward()
    assert rel_err(out.detach(), step(w).detach()) < 1e-6
    assert rel_err(w_comp.grad, w_eager.grad) < 1e-6


@pytest.mark.slow
def test_torch_compile_inductor():
    """The default inductor backend compiles the op too (the custom op stays opaque)."""
    x, y, w = make_problem(16, 12, 4, dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(lambda wt: fused_sea(x, y, wt, backend="torch"),
                             fullgraph=True)
    wc = w.clone().requires_grad_(True)
    compiled(wc).backward()
    _, grad = reference.sea_loss_and_grad(x.double(), y, w.double())
    assert rel_err(wc.grad, grad) < 1e-4
