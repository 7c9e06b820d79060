"""Exact at every margin (issue #8, docs/design.md §3): every Python backend — torch, Triton (in
the interpreter on tiny shapes), the batched sweep engine and the fused op — against the exact,
paper-literal float64 reference (no Gram space), from a 1λ to a 1000λ logit margin, plus the
cancelling-direction rows that Gram space cannot resolve and the Triton underflow reproducer."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from backends import forward  # noqa: E402
from helpers import (  # noqa: E402
    assert_rows_close,
    cancelling_problem,
    margin_problem,
    reference_rows,
    rel_err,
)

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import torch_backend, triton_backend  # noqa: E402
from sea_kernels.op.batched import Hyper, batched_sea_grad  # noqa: E402


def torch_forward(*args, **kw):
    return forward(torch_backend.sea_forward, *args, **kw)


def triton_forward(*args, **kw):
    return forward(triton_backend.sea_forward, *args, **kw)

MARGINS = [1, 10, 20, 50, 100, 300, 1000]
DTYPES = [torch.float32, torch.float64]
HYPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = triton_backend.Config(row_m=16, row_c=16, block_m=16, block_n=16, block_c=16, block_v=16,
                              block_d=16)
needs_triton = pytest.mark.skipif(not triton_backend.AVAILABLE,
                                  reason=f"triton unavailable: {triton_backend.UNAVAILABLE_REASON}")
XAUG_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _scale(b, seed=0):
    return torch.rand(b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1


def _xaug_err(got, x, labels, weight, **kw):
    """max_i ‖x̃_i − x̃_i(exact)‖ against the float64 reference on the same rounded inputs."""
    want = reference.augment(x.double(), labels, weight.double(), **kw)
    return (got.double().cpu() - want).norm(dim=1).max().item()


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("negative_only", [False, True], ids=["sea", "sea_neg"])
def test_torch_backend(margin, dtype, negative_only):
    x, y, w = margin_problem(24, 16, 5, margin, seed=margin, dtype=dtype)
    rs = _scale(24)
    kw = dict(HYPER, delta=0.5) if negative_only else HYPER
    got = torch_forward(x, y, w, rs.to(dtype), negative_only=negative_only, **kw)
    assert got[0].dtype == got[1].dtype == dtype
    assert_rows_close(got, x, y, w, rs, dtype, negative_only=negative_only, **kw)


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sea_augment(margin, dtype):
    """x̃ itself: the direction keeps its −w_y term at every margin."""
    x, y, w = margin_problem(24, 16, 5, margin, seed=margin, dtype=dtype)
    got = sea_kernels.sea_augment(x, y, w, **HYPER)
    assert torch.isfinite(got).all()
    own = _xaug_err(reference.augment(x, y, w, **HYPER), x, y, w, **HYPER)
    assert _xaug_err(got, x, y, w, **HYPER) <= 2 * own + XAUG_TOL[dtype]


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_op(margin, dtype):
    """The public op with autograd (reduction="none": the weighted-gradient op runs too)."""
    x, y, w = margin_problem(20, 12, 4, margin, seed=margin + 1, dtype=dtype)
    rs = _scale(20, seed=1)
    wg = w.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x, y, wg, reduction="none", backend="torch", **HYPER)
    (loss @ rs.to(dtype)).backward()
    assert_rows_close((loss, wg.grad), x, y, w, rs, dtype, **HYPER)


@needs_triton
@pytest.mark.parametrize("margin", MARGINS)
def test_triton_backend(monkeypatch, margin):
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
    x, y, w = margin_problem(18, 12, 5, margin, seed=margin, dtype=torch.float32)
    rs = _scale(18)
    for negative_only in (False, True):
        got = triton_forward(x.to(DEVICE), y.to(DEVICE), w.to(DEVICE),
                                         rs.float().to(DEVICE), negative_only=negative_only,
                                         **HYPER)
        assert_rows_close(got, x, y, w, rs, torch.float32, negative_only=negative_only, **HYPER)


BATCHED = [(0.01, 0.0, 0.1, 0.0), (0.01, 0.8, 0.1, 0.0), (0.05, 0.4, 0.05, 1.0),
           (0.02, 0.8, 1.0, 0.5)]   # (α, η, λ, δ); the η = 0 one takes the baseline path


def _check_batched(loss, grad, x, y, w, row_scale, dtype, **kw):
    """One configuration of the batched engine (mean loss, dW for the row weights) against the
    float64 reference on the same rounded inputs: 2 × the reference's own error in dtype + tol."""
    ref_l, ref_g = reference_rows(x.double(), y, w.double(), row_scale.double(), **kw)
    low_l, low_g = reference_rows(x, y, w, row_scale.to(dtype), **kw)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert rel_err(loss, ref_l.mean()) <= 2 * rel_err(low_l.mean(), ref_l.mean()) + tol
    assert rel_err(grad, ref_g) <= 2 * rel_err(low_g, ref_g) + tol


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,d", [(12, 16), (24, 8)], ids=["QK", "QX"])  # d < b: ĝ = QX path
def test_batched_engine(margin, dtype, b, d):
    c = 4
    x, y, _ = margin_problem(b, d, c, margin, dtype=dtype)
    weights = [margin_problem(b, d, c, margin, lam=cfg[2], seed=i, dtype=dtype)[2]
               for i, cfg in enumerate(BATCHED)]  # seed 0's features; W's class part aligned
    w_t = torch.cat(weights, dim=1).T.contiguous()  # (kC, d)
    hyper = Hyper(*(torch.tensor([cfg[j] for cfg in BATCHED], dtype=dtype) for j in range(4)))
    grad_t, losses = batched_sea_grad(x, y, w_t, hyper, c, n_baseline=1, chunk_size=2)
    rs = torch.full((b,), 1.0 / b, dtype=dtype)
    for i, (alpha, eta, lam, delta) in enumerate(BATCHED):
        _check_batched(losses[i], grad_t[i * c:(i + 1) * c].T, x, y, weights[i], rs, dtype,
                       alpha=alpha, eta=eta, lam=lam, delta=delta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_random_weights(dtype):
    """W = 30·randn on 64 unit rows: most rows have margins far beyond 16.6λ; with p_y − 1 the
    augmented features were off by ≈ 0.9."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(64, 32, generator=g, dtype=torch.float64),
                                      dim=1).to(dtype)
    y = torch.randint(0, 10, (64,), generator=g)
    w = (30 * torch.randn(32, 10, generator=g, dtype=torch.float64)).to(dtype)
    got = sea_kernels.sea_augment(x, y, w)
    assert _xaug_err(got, x, y, w) <= XAUG_TOL[dtype]
    rs = _scale(64)
    assert_rows_close(torch_forward(x, y, w, rs.to(dtype), **HYPER), x, y, w, rs,
                      dtype, **HYPER)


@needs_triton
def test_large_random_weights_triton(monkeypatch):
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(40, 24, generator=g), dim=1)
    y = torch.randint(0, 10, (40,), generator=g)
    w = 30 * torch.randn(24, 10, generator=g)
    rs = _scale(40)
    got = triton_forward(x.to(DEVICE), y.to(DEVICE), w.to(DEVICE),
                                     rs.float().to(DEVICE), **HYPER)
    assert_rows_close(got, x, y, w, rs, torch.float32, **HYPER)


@needs_triton
def test_triton_subnormal_sum_reproducer():
    """Target logit 95 ahead at λ = 0.1: Σ_{c≠y} e^{z_c − max} was subnormal, 1/s overflowed and
    the loss was NaN. With the max over c ≠ y the sum is ≥ 1."""
    x, y = torch.eye(2), torch.tensor([0, 1])
    w = torch.tensor([[9.5, 0], [0, .5]])
    wg = w.clone().to(DEVICE).requires_grad_(True)
    loss = sea_kernels.fused_sea(x.to(DEVICE), y.to(DEVICE), wg, lam=0.1, backend="triton")
    loss.backward()
    want_l, want_g = reference_rows(x.double(), y, w.double(), torch.full((2,), 0.5,
                                    dtype=torch.float64), lam=0.1)
    assert torch.isfinite(loss) and torch.isfinite(wg.grad).all()
    assert rel_err(loss.detach().cpu(), want_l.mean()) < 1e-6
    assert rel_err(wg.grad.cpu(), want_g) < 1e-6


def _implied_xaug(x, y, w, **kw):
    """The x̃ that the torch backend's forward trains on: diag(c1) X + diag(c2) QX with its
    Gram-space row factors (untrusted rows: their direct x̃)."""
    yy = reference.one_hot(y, w.shape[1], x.dtype)
    _, q, _, c1, c2, rows, x_aug = torch_backend._front(x, yy, w, kw["alpha"], kw["eta"],
                                                        kw["lam"], kw["delta"], False)
    out = c1[:, None] * x + c2[:, None] * (q @ x)
    if x_aug is not None:
        out[rows] = x_aug
    return out


def test_cancelling_reproducer(monkeypatch):
    """x₁ + x₂ ≈ 0 (spec §3): q₀ᵀKq₀ was off by 100%, x̃₀ by 8e-3; the direct ĝ₀ is exact."""
    x, y, w = cancelling_problem()
    kw = dict(HYPER)
    want = reference.augment(x.double(), y, w.double(), **kw)
    assert (sea_kernels.sea_augment(x, y, w, **kw)[0].double() - want[0]).norm() < 1e-6
    assert (_implied_xaug(x, y, w, **kw)[0].double() - want[0]).norm() < 1e-6
    rs = _scale(3)
    assert_rows_close(torch_forward(x, y, w, rs.float(), **kw), x, y, w, rs,
                      torch.float32, **kw)
    monkeypatch.setitem(torch_backend.TAU, torch.float32, float("-inf"))  # no untrusted rows
    assert (_implied_xaug(x, y, w, **kw)[0].double() - want[0]).norm() > 1e-3


@needs_triton
def test_cancelling_reproducer_triton(monkeypatch):
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
    x, y, w = cancelling_problem()
    rs = _scale(3)
    for wt in (w, torch.randn(2, 3, generator=torch.Generator().manual_seed(0))):
        got = triton_forward(x.to(DEVICE), y.to(DEVICE), wt.to(DEVICE),
                                         rs.float().to(DEVICE), **HYPER)
        assert_rows_close(got, x, y, wt, rs, torch.float32, **HYPER)


def test_cancelling_reproducer_batched():
    x, y, w = cancelling_problem()
    hyper = Hyper(*(torch.tensor([v], dtype=torch.float32) for v in HYPER.values()))
    for wt in (w, torch.randn(2, 3, generator=torch.Generator().manual_seed(0))):
        grad_t, loss = batched_sea_grad(x, y, wt.T.contiguous(), hyper, 3)
        _check_batched(loss[0], grad_t.T, x, y, wt, torch.full((3,), 1 / 3), torch.float32,
                       **HYPER)


def near_cancelling(level, b=9, d=16, seed=0):
    """Row 0's partners come in nearly opposite pairs (v, −v + p): at a huge α (q ≈ uniform)
    ‖ĝ₀‖² ≈ level. float64; W random O(1)."""
    g = torch.Generator().manual_seed(seed)
    h = (b - 1) // 2
    v = torch.nn.functional.normalize(torch.randn(h, d, generator=g, dtype=torch.float64), dim=1)
    p = torch.randn(h, d, generator=g, dtype=torch.float64)
    p = p / p.norm() * level ** 0.5 * (b - 1)
    x0 = torch.randn(1, d, generator=g, dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.cat([x0, v, -v + p]), dim=1)
    return x, torch.randint(0, 4, (b,), generator=g), torch.randn(d, 4, generator=g,
                                                                  dtype=torch.float64)


@pytest.mark.parametrize("level", [1e-2, 1e-4, 1e-6, 1e-8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_near_cancelling_rows(level, dtype):
    """Random near-cancelling directions, ‖ĝ₀‖² from 1e-2 to 1e-8: torch backend, batched engine and
    the forward's x̃ agree with the paper-literal reference to its own accuracy."""
    kw = dict(HYPER, alpha=1e9)
    for seed in range(3):
        x, y, w = near_cancelling(level, seed=seed)
        x, w = x.to(dtype), w.to(dtype)
        rs = _scale(9, seed)
        assert_rows_close(torch_forward(x, y, w, rs.to(dtype), **kw), x, y, w, rs,
                          dtype, **kw)
        own = _xaug_err(reference.augment(x, y, w, **kw), x, y, w, **kw)
        assert _xaug_err(_implied_xaug(x, y, w, **kw), x, y, w, **kw) <= 2 * own + XAUG_TOL[dtype]
        hyper = Hyper(*(torch.tensor([v], dtype=dtype) for v in kw.values()))
        mean = torch.full((9,), 1 / 9, dtype=dtype)
        grad_t, loss = batched_sea_grad(x, y, w.T.contiguous(), hyper, 4)
        _check_batched(loss[0], grad_t.T, x, y, w, mean, dtype, **kw)


@needs_triton
@pytest.mark.parametrize("level", [1e-2, 1e-5, 1e-8])
def test_near_cancelling_rows_triton(monkeypatch, level):
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
    kw = dict(HYPER, alpha=1e9)
    x, y, w = near_cancelling(level)
    x, w = x.float(), w.float()
    rs = _scale(9)
    got = triton_forward(x.to(DEVICE), y.to(DEVICE), w.to(DEVICE),
                                     rs.float().to(DEVICE), **kw)
    assert_rows_close(got, x, y, w, rs, torch.float32, **kw)


def _all_python_backends(x, y, w, rs, dtype, monkeypatch, **kw):
    """torch backend, Triton (float32, interpreter) and the batched engine on one problem."""
    assert_rows_close(torch_forward(x, y, w, rs.to(dtype), **kw), x, y, w, rs, dtype,
                      **kw)
    if dtype == torch.float32 and triton_backend.AVAILABLE:
        monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
        got = triton_forward(x.to(DEVICE), y.to(DEVICE), w.to(DEVICE),
                                         rs.float().to(DEVICE), **kw)
        assert_rows_close(got, x, y, w, rs, dtype, **kw)
    hyper = Hyper(*(torch.tensor([kw[k]], dtype=dtype) for k in ("alpha", "eta", "lam", "delta")))
    b = x.shape[0]
    grad_t, loss = batched_sea_grad(x, y, w.T.contiguous(), hyper, w.shape[1])
    _check_batched(loss[0], grad_t.T, x, y, w, torch.full((b,), 1 / b, dtype=dtype), dtype, **kw)


@pytest.mark.parametrize("spread", [1e-2, 1e-4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_weight_columns(monkeypatch, spread, dtype):
    """W's columns nearly equal: g_i = W a'_i cancels and a'_iᵀ(WᵀW)a'_i (squared conditioning)
    came out 0 or garbage in float32; ‖g_i‖ is then taken from W a'_i directly (§3)."""
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(6, 3, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 4, (6,), generator=g)
    col = torch.randn(3, 1, generator=g, dtype=torch.float64)
    w = col + spread * torch.randn(3, 4, generator=g, dtype=torch.float64)
    _all_python_backends(x.to(dtype), y, w.to(dtype), _scale(6), dtype, monkeypatch,
                         **dict(HYPER, alpha=0.1, eta=0.9))


@pytest.mark.parametrize("s", [0.06, 0.047])
def test_tiny_direction_keeps_its_direction(monkeypatch, s):
    """Rows e₁, e₂, 0 with row 0's q almost all on the zero row: ĝ₀ ≈ 1e-27·e₂ is tiny but has a
    direction; ‖ĝ₀‖² underflows in float32, so the direct ĝ is normalised before its norm."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    w = torch.tensor([[0.0, (1 - s * s) ** 0.5], [0.0, -s]])
    y = torch.zeros(3, dtype=torch.long)
    kw = dict(HYPER, alpha=1e-3)
    _all_python_backends(x, y, w, _scale(3), torch.float32, monkeypatch, **kw)
    want = reference.augment(x.double(), y, w.double(), **kw)
    assert (sea_kernels.sea_augment(x, y, w, **kw).double() - want).norm(dim=1).max() < 1e-6
    assert (_implied_xaug(x, y, w, **kw).double() - want).norm(dim=1).max() < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_cancelling_n(monkeypatch, dtype):
    """x₁ ≈ −x₀ and η = 1: u₀ = x₀ + ηĝ̂₀ has norm ≈ 0.01 and n₀² = K₀₀ + 2ηx₀ᵀĝ̂₀ + η² cancels;
    the row is untrusted and n₀ = ‖u₀‖ is taken from the vector."""
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.01]],
                                                   dtype=torch.float64), dim=1).to(dtype)
    y, w = torch.tensor([0, 1]), torch.zeros(2, 2, dtype=dtype)
    kw = dict(HYPER, eta=1.0)
    _all_python_backends(x, y, w, _scale(2), dtype, monkeypatch, **kw)
    want = reference.augment(x.double(), y, w.double(), **kw)
    assert (_implied_xaug(x, y, w, **kw).double() - want).norm(dim=1).max() < XAUG_TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_row_moved_by_a_tiny_eta(monkeypatch, dtype):
    """A zero row with η = 1e-20 (float32) / 1e-200 (float64): x̃ = Π(ηĝ̂) = ĝ̂, but n² = η²
    underflows in Gram space; the row is untrusted and x̃ formed directly."""
    x = torch.tensor([[0.6, 0.8], [0.0, 0.0], [-0.8, 0.6]], dtype=dtype)
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([[1.0, -0.5], [0.3, 0.2]], dtype=dtype)
    kw = dict(HYPER, eta=1e-20 if dtype == torch.float32 else 1e-200)
    _all_python_backends(x, y, w, _scale(3), dtype, monkeypatch, **kw)
    want = reference.augment(x.double(), y, w.double(), **kw)
    assert (_implied_xaug(x, y, w, **kw).double() - want).norm(dim=1).max() < XAUG_TOL[dtype]
    assert (sea_kernels.sea_augment(x, y, w, **kw).double() - want).norm(dim=1).max() < 1e-6
