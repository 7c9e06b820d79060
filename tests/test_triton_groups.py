"""The Triton backend's groups, zero rows and bias against a float64 truth (docs/design.md §3).

The truth here is written out independently of the backends: per group of G consecutive rows,
the paper-literal step with zero rows and the diagonal left out of q_i (q_i = 0 without an
allowed partner), logits XW + 1bᵀ, and ∂/∂W, ∂/∂b by float64 autograd. Under TRITON_INTERPRET=1
the kernels run on CPU tensors; blocks of 4 (and a mixed 8/4/2 set) make the tiny shapes here
span several row, key, class and value tiles, with groups that start and end inside tiles.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from backends import forward  # noqa: E402
from helpers import TOLERANCE, make_problem, rel_err  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import torch_backend, triton_backend  # noqa: E402
from sea_kernels.params import ParameterError  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_backend.AVAILABLE,
                                reason=f"triton unavailable: {triton_backend.UNAVAILABLE_REASON}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TINY = triton_backend.Config(row_m=4, row_c=4, block_m=4, block_n=4, block_c=4, block_v=4,
                             block_d=4)
MIXED = triton_backend.Config(row_m=4, row_c=2, block_m=8, block_n=4, block_c=2, block_v=4,
                              block_d=2)
HYPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)


@pytest.fixture(params=[TINY, MIXED], ids=["tiny", "mixed"])
def blocks(request, monkeypatch):
    monkeypatch.setattr(triton_backend, "CONFIG", request.param)
    return request.param


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(triton_backend, "CONFIG", TINY)


def _augment_group(x, labels, w, bias, alpha, eta, lam, delta, negative_only):
    """x̃ of one group, paper-literal: q_i = softmax over the non-zero x_j, j ≠ i (0 if none)."""
    logits = x @ w if bias is None else x @ w + bias
    z = reference.margin_logits(logits, labels, lam, delta)
    y = reference.one_hot(labels, w.shape[1], z.dtype)
    a = (torch.softmax(z, dim=1) if negative_only else
         torch.softmax(z.masked_fill(y.bool(), float("-inf")), dim=1) - y)
    s = reference.unit(a @ w.T) @ x.T / alpha
    blocked = torch.eye(x.shape[0], dtype=torch.bool) | (x == 0).all(dim=1)[None, :]
    q = torch.softmax(s.masked_fill(blocked, float("-inf")), dim=1)
    q = q.masked_fill(blocked.all(dim=1, keepdim=True), 0)
    return reference.unit(x + eta * reference.unit(q @ x))


def truth(x, labels, w, row_scale, group=0, bias=None, negative_only=False, dtype=torch.float64,
          **hyper):
    """(losses, dW[, db]) with groups [kG, min((k+1)G, b)) projected alone, in `dtype`."""
    hyper = HYPER | hyper
    x, w = x.to(dtype), w.detach().to(dtype).requires_grad_(True)
    bb = None if bias is None else bias.detach().to(dtype).requires_grad_(True)
    b = x.shape[0]
    g = b if group == 0 else group
    with torch.no_grad():
        x_aug = torch.cat([_augment_group(x[lo:lo + g], labels[lo:lo + g], w, bb,
                                          negative_only=negative_only, **hyper)
                           for lo in range(0, b, g)])
    logits = x_aug @ w if bb is None else x_aug @ w + bb
    losses = reference.smoothed_hinge_loss(logits, labels, hyper["lam"], hyper["delta"], "none")
    grads = torch.autograd.grad((losses * row_scale.to(dtype)).sum(),
                                (w,) if bb is None else (w, bb))
    return (losses.detach(), *grads)


def run(x, labels, w, row_scale, **kw):
    kw = HYPER | kw
    if kw.get("bias") is not None:
        kw["bias"] = kw["bias"].float().to(DEVICE)
    out = forward(
        triton_backend.sea_forward, x.float().to(DEVICE), labels.to(DEVICE), w.float().to(DEVICE),
        row_scale.float().to(DEVICE), kw.pop("alpha"), kw.pop("eta"), kw.pop("lam"),
        kw.pop("delta"), **kw)
    return tuple(t.cpu() for t in out)


def check(x, labels, w, row_scale=None, **kw):
    """Triton (float32) against the float64 truth: error ≤ 2 × the float32 truth's own error on
    the same rounded inputs + TOLERANCE[float32], for the losses, dW and (with a bias) db."""
    b = x.shape[0]
    row_scale = torch.full((b,), 1.0 / b) if row_scale is None else row_scale
    got = run(x, labels, w, row_scale, **kw)
    truth_kw = {k: v for k, v in kw.items() if k not in ("compute_grad", "group_size")}
    truth_kw["group"] = kw.get("group_size", 0)
    xr, wr = x.float().double(), w.float().double()
    if truth_kw.get("bias") is not None:
        truth_kw["bias"] = truth_kw["bias"].float().double()
    want = truth(xr, labels, wr, row_scale.double(), **truth_kw)
    own = truth(xr, labels, wr, row_scale.double(), dtype=torch.float32, **truth_kw)
    assert len(got) == len(want) == (2 if kw.get("bias") is None else 3)
    for name, g, ref, low in zip(("loss", "dW", "db"), got, want, own):
        assert g.dtype == torch.float32 and g.shape == ref.shape, name
        assert torch.isfinite(g).all(), f"{name} is not finite"
        err, bound = rel_err(g, ref), 2 * rel_err(low, ref) + TOLERANCE[torch.float32]
        assert err <= bound, f"{name}: rel err {err:.3g} > {bound:.3g}"
    return got, want


@pytest.mark.parametrize("b,d,c,group", [(12, 8, 6, 5), (11, 7, 3, 4), (12, 8, 5, 3),
                                         (7, 5, 3, 3), (10, 6, 4, 2), (9, 5, 4, 8),
                                         (12, 8, 6, 12), (9, 5, 4, 20), (10, 6, 3, 1),
                                         (5, 3, 2, 0)])
def test_groups_match_truth(blocks, b, d, c, group):
    """Last groups shorter (down to one row), G not a multiple of any block, G ≥ b, G = 1."""
    x, y, w = make_problem(b, d, c, seed=b * 10 + group)
    rs = torch.rand(b, generator=torch.Generator().manual_seed(group)) + 0.1
    check(x, y, w, rs, group_size=group)


@pytest.mark.parametrize("negative_only", [False, True])
def test_groups_bias_and_hyperparameters(blocks, negative_only):
    x, y, w = make_problem(11, 6, 5, seed=5)
    bias = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    check(x, y, w, group_size=4, bias=bias, negative_only=negative_only, delta=0.5, lam=0.5,
          alpha=0.05, eta=1.5)


def test_groups_equal_each_group_alone(tiny):
    """The contract's definition: the op on every group's slice, row_scale kept global, gives the
    grouped losses (concatenated), dW and db (summed) to float32 rounding."""
    b, g = 9, 4
    x, y, w = make_problem(b, 8, 6, seed=3)
    bias = torch.randn(6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rs = torch.rand(b, generator=torch.Generator().manual_seed(4)) + 0.1
    grouped = run(x, y, w, rs, group_size=g, bias=bias)
    parts = [run(x[lo:lo + g], y[lo:lo + g], w, rs[lo:lo + g], bias=bias)
             for lo in range(0, b, g)]
    assert rel_err(grouped[0], torch.cat([p[0] for p in parts])) < 1e-6
    for k in (1, 2):
        assert rel_err(grouped[k], sum(p[k] for p in parts)) < 1e-5


def test_group_of_one_is_no_augmentation(tiny):
    """G = 1: q = 0, x̃ = Π(x), so the losses are those of the normalised clean rows."""
    x, y, w = make_problem(9, 6, 4, seed=6, normalise=False)
    losses, _ = run(x, y, w, torch.ones(9), group_size=1)
    want = reference.smoothed_hinge_loss(reference.unit(x) @ w, y, 0.1, 0.0, "none")
    assert rel_err(losses, want) < 1e-6


def test_whole_batch_spellings_agree(tiny):
    x, y, w = make_problem(7, 6, 4, seed=8)
    rs = torch.full((7,), 0.1)
    base = run(x, y, w, rs)
    for g in (7, 1000):
        assert all(torch.equal(a, b) for a, b in zip(base, run(x, y, w, rs, group_size=g)))


@pytest.mark.parametrize("group", [0, 4])
def test_zero_rows_masked(blocks, group):
    """Zero rows anywhere (one group, rows 4..7, has a single non-zero row: its q = 0)."""
    x, y, w = make_problem(11, 6, 4, seed=9)
    x[[1, 5, 6, 7, 10]] = 0
    check(x, y, w, group_size=group)


def _underflow_problem():
    """x₀ = e₁, x₁ with x₁ᵀḡ₀ = −0.3, x₂ = 0 and α = 0.001: S₀₁ = −300, S₀₂ = 0. Kept in, the zero
    row takes all of q₀ in float32 (e^{−300} = 0) and x̃₀ = Π(x₀); its exact direction is x₁."""
    x = torch.tensor([[1.0, 0.0], [0.91 ** 0.5, -0.3], [0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0], [0.0, 5.0]], dtype=torch.float64)  # g₀ ∝ w₁ − w₀ = 5e₂
    return x, torch.tensor([0, 1, 0]), w


@pytest.mark.parametrize("bias", [None, (0.3, -0.2)])
def test_zero_row_underflow_regression(blocks, bias):
    """Row 0 must move toward its only non-zero partner, as in float64 (where e^{−300} is still
    a normal number and the zero row does not matter)."""
    x, y, w = _underflow_problem()
    bias = None if bias is None else torch.tensor(bias, dtype=torch.float64)
    got, want = check(x, y, w, torch.ones(3), alpha=0.001, bias=bias)
    unmoved = reference.smoothed_hinge_loss(reference.unit(x[:1]) @ w + (0 if bias is None
                                                                          else bias),
                                            y[:1], 0.1, 0.0, "none")
    moved = reference.unit(x[:1] + 0.8 * reference.unit(x[1:2]))
    assert unmoved[0] > 100 * want[0][0]  # the test tells the two apart
    assert rel_err(moved @ w, _aug_logits_row0(x, y, w, bias)) < 1e-6
    assert abs(got[0][0] - want[0][0]) <= 1e-5 * abs(want[0][0])


def _aug_logits_row0(x, y, w, bias):
    """x̃₀ᵀW of the Triton backend, read back from its stages (L̃ = c1 L + c2 QL)."""
    tb, cfg = triton_backend, triton_backend.CONFIG
    xf, wf = x.float(), w.float()
    bf = torch.zeros(2) if bias is None else bias.float()
    logits, v = tb.logits_and_gram(xf, wf)
    nz = (xf != 0).any(dim=1).float()
    a = tb.row_prep(logits, bf, y, 0.1, 0.0, False, cfg)
    sc, ql, mz, gh2, xg = tb.attention(a, logits, v, nz, torch_backend.grad_norms(a, wf), 0.001,
                                        3, cfg)
    c1, c2, _, _ = tb.factors(xf, wf, lambda r: tb.q_rows(a, logits, sc, mz, nz, 3, r), ql, gh2,
                              xg, v.diagonal(), 0.8)
    return (c1[0] * logits[0] + c2[0] * ql[0]).double()[None]


def test_zero_row_underflow_in_a_group(tiny):
    """The same three rows as the second group of two."""
    x0, y0, w = _underflow_problem()
    x1, y1, _ = make_problem(3, 2, 2, seed=1)
    check(torch.cat([x1, x0]), torch.cat([y1, y0]), w, group_size=3, alpha=0.001)


def test_tiny_row_is_not_a_zero_row(tiny):
    """Only exactly zero rows are masked: x₂ = 1e-24·e₂ (‖x₂‖² underflows in float32) scores ≈ 0
    against −300 and takes q₀, so x̃₀ moves along e₂, as in float64."""
    x, y, w = _underflow_problem()
    x[2, 1] = 1e-24
    got, want = check(x, y, w, torch.ones(3), alpha=0.001)
    moved = reference.unit(x[:1] + 0.8 * reference.unit(x[2:]))
    assert rel_err(moved @ w, _aug_logits_row0(x, y, w, None)) < 1e-6


def test_bias_outputs(tiny):
    x, y, w = make_problem(7, 5, 3, seed=2)
    bias = torch.tensor([1.0, -2.0, 0.5])
    rs = torch.ones(7)
    losses, dw, db = run(x, y, w, rs, bias=bias)
    assert db.shape == (3,) and abs(db.sum()) < 1e-5  # Σ_c D_ic = s_i(Σ_c p̃_c − 1) = 0
    no_grad = run(x, y, w, rs, bias=bias, compute_grad=False)
    assert len(no_grad) == 3 and no_grad[1].numel() == no_grad[2].numel() == 0
    assert torch.equal(no_grad[0], losses)
    zero = run(x, y, w, rs, bias=torch.zeros(3))
    assert all(torch.equal(a, b) for a, b in zip(zero[:2], run(x, y, w, rs)))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_public_op_against_reference(tiny, reduction):
    """fused_sea(backend="triton", group_size, bias) with autograd against the package's own
    float64 reference (op/reference.py), a zero row included."""
    import sea_kernels
    x, y, w = make_problem(11, 6, 5, seed=3)
    x[4] = 0
    bias = torch.randn(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    wg = w.float().to(DEVICE).requires_grad_(True)
    bg = bias.float().to(DEVICE).requires_grad_(True)
    loss = sea_kernels.fused_sea(x.float().to(DEVICE), y.to(DEVICE), wg, group_size=4, bias=bg,
                                 reduction=reduction, backend="triton")
    loss.sum().backward()
    want = reference.sea_loss_and_grad(x.float().double(), y, w.float().double(),
                                       bias=bias.float().double(), group_size=4,
                                       reduction="sum" if reduction == "none" else reduction)
    for got, ref in zip((loss.detach().sum(), wg.grad, bg.grad), want):
        assert rel_err(got.cpu(), ref) < 1e-5


def test_bad_group_size_and_bias():
    x, y, w = make_problem(4, 3, 2)
    args = (x.float().to(DEVICE), y.to(DEVICE), w.float().to(DEVICE))
    with pytest.raises(ParameterError, match="group_size"):   # validated once, op/call.py
        sea_kernels.fused_sea(*args, backend="triton", group_size=True)
    with pytest.raises(ValueError, match="group_size"):
        sea_kernels.fused_sea(*args, backend="triton", group_size=-1)
    with pytest.raises(TypeError, match="float64"):
        sea_kernels.fused_sea(*args, backend="triton", bias=torch.zeros(2, dtype=torch.float64))


def test_key_tiles_cover_every_group_range():
    """key_tiles ≥ the K tiles any row block's group range needs (aligned to block_v)."""
    for cfg in (TINY, MIXED, triton_backend.Config()):
        for b in range(1, 70):
            for g in range(1, b + 1):
                n = triton_backend.key_tiles(b, g, cfg)
                for r0 in range(0, b, cfg.block_m):
                    lo = (r0 // g) * g // cfg.block_v * cfg.block_v
                    hi = min((min(r0 + cfg.block_m, b) - 1) // g * g + g, b)
                    assert lo + n * cfg.block_v >= hi, (cfg, b, g, r0)


COMPILE_CHECK = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from sea_kernels.op import triton_backend as ts
from sea_kernels.op import triton_kernels as tk

cfg = ts.Config()
dot = dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, PREC=ts.DOT_PRECISION)
# Triton specialises int arguments equal to 1 as constants: G = 1, NKT = 1 and b = 1 included.
jobs = [(tk._attention, dict(dot, BLOCK_V=cfg.block_v), {}),
        (tk._attention, dict(dot, BLOCK_V=cfg.block_v), dict(G=1, NKT=1)),
        (tk._attention, dict(dot, BLOCK_V=cfg.block_v), dict(b=1, G=1, NKT=1)),
        (tk._grad_rows, dict(dot, BLOCK_D=cfg.block_d), dict(G=1)),
        (tk._grad_rows, dict(dot, BLOCK_D=cfg.block_d), dict(b=1, G=1))]
for fn, consts, ones in jobs:
    sig, cx = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts or name in ones:
            sig[name], cx[(i,)] = "constexpr", consts.get(name, ones.get(name))
        else:
            sig[name] = "*fp32" if name.endswith("_ptr") else "i32"
    kernel = triton.compile(ASTSource(fn, sig, cx), target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=cfg.num_warps))
    assert kernel.asm["cubin"], fn.__name__
print("compiled", len(jobs))
"""


@pytest.mark.build
def test_group_kernels_compile_for_sm90():
    """The grouped kernels lower to sm_90 cubins also where Triton turns G, NKT or b into
    constants (the shipped blocks; tests/test_triton_backend.py checks the general signature)."""
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
