"""The Triton backend against the float64 paper-literal reference.

Without a GPU the kernels run in Triton's interpreter on CPU tensors; TRITON_INTERPRET must be set
before `sea_kernels.op.triton_kernels` defines the kernels (triton_backend imports it;
tests/conftest.py sets the variable too, earlier).
Most tests use 16-wide blocks (the smallest tl.dot accepts on a GPU) so that the small, odd shapes
here still span several row, column, class and value tiles.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from backends import forward  # noqa: E402
from helpers import TOLERANCE, make_problem, one_hot_problem, reference_rows, rel_err  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import triton_backend

pytestmark = pytest.mark.skipif(not triton_backend.AVAILABLE,
                                reason=f"triton unavailable: {triton_backend.UNAVAILABLE_REASON}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = triton_backend.Config(row_m=16, row_c=16, block_m=16, block_n=16, block_c=16, block_v=16,
                          block_d=16)
SHAPES = [(1, 3, 2), (2, 5, 3), (7, 33, 10), (19, 40, 5), (33, 17, 70)]


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)


def check(x, labels, weight, row_scale=None, negative_only=False, **kw):
    """Run the Triton backend on x, weight (any dtype) and compare with the float64 reference:
    error ≤ 2 × the reference's own error on the same rounded inputs in float32 + TOLERANCE."""
    b = x.shape[0]
    row_scale = torch.full((b,), 1.0 / b) if row_scale is None else row_scale
    hyper = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0) | kw
    losses, grad = forward(
        triton_backend.sea_forward,
        x.to(DEVICE), labels.to(DEVICE), weight.to(DEVICE), row_scale.float().to(DEVICE),
        hyper["alpha"], hyper["eta"], hyper["lam"], hyper["delta"], negative_only=negative_only)
    assert losses.dtype == grad.dtype == torch.float32
    assert losses.shape == (b,) and grad.shape == weight.shape
    want = reference_rows(x.double(), labels, weight.double(), row_scale.double(), negative_only,
                          **hyper)
    own = reference_rows(x.float(), labels, weight.float(), row_scale.float(), negative_only,
                         **hyper)
    tol = TOLERANCE[x.dtype if x.dtype != torch.float32 else weight.dtype]
    for name, got, ref, low in zip(("loss", "grad"), (losses, grad), want, own):
        assert torch.isfinite(got).all(), f"{name} is not finite"
        err, bound = rel_err(got.cpu(), ref), 2 * rel_err(low, ref) + tol
        assert err <= bound, f"{name}: rel err {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("negative_only", [False, True])
@pytest.mark.parametrize("b,d,c", SHAPES)
def test_matches_reference(small_blocks, b, d, c, negative_only):
    x, y, w = make_problem(b, d, c, seed=b * 100 + c)
    rs = torch.rand(b, generator=torch.Generator().manual_seed(b)) + 0.1
    check(x.float(), y, w.float(), rs, negative_only, delta=0.5 if negative_only else 0.0)


@pytest.mark.parametrize("kw", [dict(eta=0.0), dict(alpha=1e3), dict(alpha=1e-4),
                                dict(lam=1.0, delta=1.0), dict(lam=0.01, delta=1.0),
                                dict(eta=10.0)], ids=str)
def test_hyperparameters(small_blocks, kw):
    x, y, w = make_problem(12, 16, 4, seed=7)
    check(x.float(), y, w.float(), **kw)


def test_zero_gradient_rows(small_blocks):
    """p one-hot at the label for rows 1.. (A = 0, S row 0, Q uniform); row 0 keeps a gradient."""
    b, d, c = 18, 8, 3
    x, y, w = one_hot_problem(b, d, c)
    check(x.float(), y, w.float())


def test_dominant_diagonal(small_blocks):
    """x_i nearly parallel to its own g_i at α = 0.01: the masked diagonal would dominate S."""
    x, y, w = make_problem(20, 16, 4, seed=3)
    x = reference.unit(x + 20 * reference.unit(reference.feature_gradient(x, y, w)))
    check(x.float(), y, w.float(), alpha=0.01)


def test_unnormalised_features(small_blocks):
    x, y, w = make_problem(17, 16, 5, seed=1, normalise=False)
    check(x.float(), y, w.float())


@pytest.mark.parametrize("xdtype,wdtype", [(torch.bfloat16, torch.float32),
                                           (torch.float16, torch.float32),
                                           (torch.bfloat16, torch.bfloat16),
                                           (torch.float16, torch.float16)])
def test_half_precision_inputs(small_blocks, xdtype, wdtype):
    x, y, w = make_problem(21, 24, 9, seed=11)
    check(x.to(xdtype), y, w.to(wdtype))


def test_default_blocks():
    """The shipped block sizes (64-wide) on odd b and C spanning several blocks and tiles."""
    x, y, w = make_problem(130, 20, 150, seed=2)
    check(x.float(), y, w.float(), row_scale=torch.rand(130), delta=0.3)


def test_no_grad_and_noncontiguous(small_blocks):
    x, y, w = make_problem(9, 12, 5, seed=4)
    xs = torch.cat([x, x], dim=1)[:, ::2].float().to(DEVICE)
    wt = w.T.contiguous().T.float().to(DEVICE)
    rs = torch.ones(9, device=DEVICE)
    full, _ = forward(triton_backend.sea_forward, xs, y.to(DEVICE), wt, rs, 0.01, 0.8, 0.1, 0.0)
    losses, grad = forward(triton_backend.sea_forward, xs, y.to(DEVICE), wt, rs, 0.01, 0.8, 0.1,
                           0.0, compute_grad=False)
    assert grad.numel() == 0 and torch.equal(losses, full)
    want, _ = reference_rows(xs.double().cpu(), y, w, rs.double().cpu())
    assert rel_err(losses.cpu(), want) < 1e-5


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_public_op(small_blocks, reduction):
    """fused_sea(backend="triton") with autograd; "none" runs the weighted-gradient op."""
    import sea_kernels
    x, y, w = make_problem(13, 10, 6, seed=8)
    up = torch.rand(13, dtype=torch.float64)
    wg = w.float().to(DEVICE).requires_grad_(True)
    loss = sea_kernels.fused_sea(x.float().to(DEVICE), y.to(DEVICE), wg, reduction=reduction,
                                 backend="triton")
    (loss if reduction == "mean" else loss @ up.float().to(DEVICE)).backward()
    ref_loss, ref_grad = reference_rows(x, y, w, up if reduction == "none" else torch.ones(13) / 13)
    ref_loss = ref_loss if reduction == "none" else ref_loss.mean()
    assert rel_err(loss.detach().cpu(), ref_loss) < 1e-5
    assert rel_err(wg.grad.cpu(), ref_grad) < 1e-5


def test_rejects_float64_and_cpu_without_interpreter(monkeypatch):
    x, y, w = make_problem(4, 3, 2)
    with pytest.raises(TypeError, match="float64"):   # refused by the dispatcher
        sea_kernels.fused_sea(x.to(DEVICE), y.to(DEVICE), w.to(DEVICE), backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        forward(triton_backend.sea_forward, x.float(), y, w.float(), torch.ones(4), 0.01, 0.8,
                0.1, 0.0)


COMPILE_CHECK = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from sea_kernels.op import triton_backend as ts
from sea_kernels.op import triton_kernels as tk

cfg = ts.Config()
floats = {"delta", "inv_lam", "eta", "lam"}
dot = dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, PREC=ts.DOT_PRECISION)
jobs = [(tk._row_prep, dict(NEG_ONLY=neg, BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c), cfg.row_warps)
        for neg in (False, True)]
jobs += [(tk._row_epilogue, dict(GRAD=g, BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c), cfg.row_warps)
         for g in (False, True)]
jobs += [(tk._attention, dict(dot, BLOCK_V=cfg.block_v), cfg.num_warps),
         (tk._grad_rows, dict(dot, BLOCK_D=cfg.block_d), cfg.num_warps),
         (tk._attention, dict(BLOCK_M=16, BLOCK_N=16, BLOCK_C=16, BLOCK_V=32, PREC="ieee"), 4)]
for fn, consts, warps in jobs:
    sig, cx = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name], cx[(i,)] = "constexpr", consts[name]
        elif name == "y_ptr":
            sig[name] = "*i64"
        else:
            sig[name] = "*fp32" if name.endswith("_ptr") else "fp32" if name in floats else "i32"
    kernel = triton.compile(ASTSource(fn, sig, cx), target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=warps))
    assert kernel.asm["cubin"], fn.__name__
print("compiled", len(jobs))
"""


@pytest.mark.build
def test_kernels_compile_for_sm90():
    """Lower every kernel to an sm_90 cubin (no GPU needed): catches what the interpreter accepts
    but the compiler does not (tl.dot shapes, branch-dependent types, ...)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", COMPILE_CHECK], env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode and ("ptxas" in out.stderr and "not found" in out.stderr.lower()):
        pytest.skip("no ptxas for the CUDA backend of triton")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiled" in out.stdout
