"""The public ops (`fused_sea`, `sea_augment`) on every CPU backend against the float64 spec."""
import subprocess
import sys

import pytest
import torch
from helpers import assert_matches_reference, make_problem, one_hot_problem, rel_err

import sea_kernels
from sea_kernels import reference
from sea_kernels.op import cpp_backend as _ext
from sea_kernels.op.fused import fused_sea_op, weighted_grad_op

CPU_BACKENDS = [
    "torch",
    pytest.param("cpp", marks=pytest.mark.skipif(
        not _ext.CPP_AVAILABLE, reason=f"C++ extension not built: {_ext.CPP_ERROR}")),
]

SHAPES = [(1, 3, 2), (2, 130, 10), (7, 3, 151), (7, 130, 2), (33, 1280, 10), (256, 130, 151),
          (256, 1280, 2)]


def run_op(x, y, w, backend, reduction="mean", upstream=None, **kw):
    """loss and dW through the public op and autograd."""
    wg = w.detach().clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x, y, wg, reduction=reduction, backend=backend, **kw)
    (loss if upstream is None else loss @ upstream.to(loss.dtype)).sum().backward()
    return loss.detach(), wg.grad


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("b,d,c", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(backend, b, d, c, dtype):
    x, y, w = make_problem(b, d, c, seed=b * 1000 + d + c, dtype=dtype)
    loss, grad = run_op(x, y, w, backend)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert_matches_reference(loss, grad, x, y, w, dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("direction", ["sea", "sea_neg"])
def test_reductions_and_directions(backend, reduction, direction):
    x, y, w = make_problem(19, 40, 7, seed=5)
    upstream = torch.rand(19, dtype=torch.float64) if reduction == "none" else None
    loss, grad = run_op(x, y, w, backend, reduction=reduction, upstream=upstream,
                        direction=direction, alpha=0.02, eta=0.4, lam=0.5, delta=1.0)
    kw = dict(direction=direction, alpha=0.02, eta=0.4, lam=0.5, delta=1.0, reduction=reduction)
    ref_loss = reference.sea_loss(x, y, w, **kw)
    assert rel_err(loss, ref_loss) < 1e-10
    wg = w.clone().requires_grad_(True)
    ref = reference.sea_loss(x, y, wg, **kw)
    (ref if upstream is None else ref @ upstream).sum().backward()
    assert rel_err(grad, wg.grad) < 1e-10


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_features(backend, dtype):
    """bf16/fp16 features accumulate in fp32; the loss comes back in fp32."""
    x, y, w = make_problem(37, 96, 10, seed=11)
    xh = x.to(dtype)
    loss, grad = run_op(xh, y, w.float(), backend)
    assert loss.dtype == torch.float32
    assert_matches_reference(loss, grad, xh, y, w.float(), dtype)


CORNER_CASES = {
    "single_example": dict(shape=(1, 5, 3)),
    "two_examples": dict(shape=(2, 5, 3)),
    "zero_gradient_rows": dict(shape=(9, 8, 3), one_hot=True),
    "dominant_diagonal": dict(shape=(12, 16, 4), dominant=True, kw=dict(alpha=0.01)),
    "huge_alpha": dict(shape=(12, 16, 4), kw=dict(alpha=1e3)),
    "small_alpha": dict(shape=(12, 16, 4), kw=dict(alpha=1e-4)),
    "small_lambda": dict(shape=(12, 16, 4), kw=dict(lam=0.01, delta=1.0)),
    "large_lambda": dict(shape=(12, 16, 4), kw=dict(lam=100.0)),
    "eta_zero": dict(shape=(12, 16, 4), kw=dict(eta=0.0)),
    "big_eta": dict(shape=(12, 16, 4), kw=dict(eta=10.0)),
    "unnormalised_features": dict(shape=(12, 16, 4), raw=True),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", sorted(CORNER_CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_corner_cases(backend, case, dtype):
    spec = CORNER_CASES[case]
    b, d, c = spec["shape"]
    x, y, w = make_problem(b, d, c, seed=7, normalise=not spec.get("raw"))
    if spec.get("one_hot"):
        x, y, w = one_hot_problem(b, d, c, seed=7)
    if spec.get("dominant"):
        g = reference.feature_gradient(x, y, w)
        x = reference.unit(x + 20 * reference.unit(g))
    x, w = x.to(dtype), w.to(dtype)
    kw = spec.get("kw", {})
    loss, grad = run_op(x, y, w, backend, **kw)
    assert_matches_reference(loss, grad, x, y, w, dtype, **kw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    x, y, w = make_problem(24, 60, 9, seed=2)
    xs = torch.cat([x, x], dim=1)[:, ::2]          # strided columns
    wt = w.T.contiguous().T                         # column-major weight
    ys = torch.stack([y, y], dim=1)[:, 0]
    assert not xs.is_contiguous() and not wt.is_contiguous() and not ys.is_contiguous()
    loss, grad = run_op(xs, ys, wt, backend)
    assert_matches_reference(loss, grad, xs.contiguous(), y, w, torch.float64)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_grad_forward(backend):
    x, y, w = make_problem(16, 20, 5)
    with torch.no_grad():
        loss = sea_kernels.fused_sea(x, y, w.requires_grad_(True), backend=backend)
    assert rel_err(loss, reference.sea_loss(x, y, w.detach())) < 1e-10


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
        return sea_kernels.fused_sea(x, y, wt, eta=0.0, lam=0.5, delta=1.0, reduction=reduction,
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
        return sea_kernels.fused_sea(x, y, weight, backend=backend) * 2.0

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
    compiled = torch.compile(lambda wt: sea_kernels.fused_sea(x, y, wt, backend="torch"),
                             fullgraph=True)
    wc = w.clone().requires_grad_(True)
    compiled(wc).backward()
    _, grad = reference.sea_loss_and_grad(x.double(), y, w.double())
    assert rel_err(wc.grad, grad) < 1e-4


@pytest.mark.parametrize("direction", reference.DIRECTIONS)
def test_sea_augment(direction):
    x, y, w = make_problem(20, 30, 6, seed=9)
    got = sea_kernels.sea_augment(x, y, w, eta=0.4, direction=direction,
                                  generator=torch.Generator().manual_seed(1))
    want = reference.augment(x, y, w, eta=0.4, direction=direction,
                             generator=torch.Generator().manual_seed(1))
    assert rel_err(got, want) < 1e-12
    got32 = sea_kernels.sea_augment(x.float(), y, w.float(), direction=direction)
    assert got32.dtype == torch.float32 and torch.isfinite(got32).all()


def test_auto_backend_picks_cpp_on_cpu_when_built():
    picked = sea_kernels.resolve_backend("auto", torch.device("cpu"))
    assert picked == ("cpp" if _ext.CPP_AVAILABLE else "torch")


@pytest.mark.slow
def test_info_reports_every_backend():
    out = subprocess.run([sys.executable, "-m", "sea_kernels"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("torch", "cpp", "triton", "auto picks"):
        assert name in out
    status = sea_kernels.backend_status()
    assert status["torch"][0] and status["cpp"][0] == _ext.CPP_AVAILABLE
