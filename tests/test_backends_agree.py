"""Every case of tests/cases.py on every backend that declares its features and dtype, through
the public op (`fused_sea(backend=...)` with autograd for dW and db, `sea_augment` for x̃), against
the float64 NumPy oracle (tests/fuzz_numpy.py; longdouble for float64 cases) with the per-dtype
bound of tests/fuzz_oracle.py; the same cases through the batched sweep engine; and the
properties every backend must have that are not a comparison with the truth (groups are each
group alone, whole-batch group sizes, a class-constant bias, no-grad forwards, dtype promotion).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fuzz_oracle as fo  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from backends import (  # noqa: E402, F401  (one_thread: autouse)
    INTERPRETED,
    NAMES,
    TRITON_MAX,
    backend_params,
    declares,
    device,
    one_thread,
    param,
)
from cases import ROWS, SPECS, random_arrays  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels.op import triton_backend  # noqa: E402
from sea_kernels.op.batched import Hyper, batched_sea_grad  # noqa: E402

#: 16-wide blocks (the smallest tl.dot takes on a GPU): shapes of 17…64 span several tiles.
SMALL = triton_backend.Config(row_m=16, row_c=16, block_m=16, block_n=16, block_c=16, block_v=16,
                              block_d=16)
_TRUTHS: dict = {}


def truths(row, reduction=None):
    """The oracle's truths of a table row (cached: every backend compares with the same)."""
    key = (row.id, reduction)
    if key not in _TRUTHS:
        case = row.case if reduction is None else fo.replace(row.case, reduction=reduction)
        _TRUTHS[key] = fo.truths(case, row.arrays())
    return _TRUTHS[key]


def _fits(name, case):
    return name != "triton" or not INTERPRETED or max(case.b, case.d, case.c) <= TRITON_MAX


def _runs(name, row):
    c = row.case
    dts = {getattr(torch, c.dtype), getattr(torch, c.weight_dtype or c.dtype)}
    return all(declares(name, row.spec.needs(), dt) for dt in dts) and _fits(name, c)


def _pairs():
    """(backend, the case's rows in the dtypes the backend declares): one test each."""
    out = []
    for spec in SPECS:
        rows = [r for r in ROWS if r.spec is spec]
        for name in NAMES:
            mine = [r for r in rows if _runs(name, r)]
            if mine:
                marks = ([pytest.mark.xfail(reason=spec.notes, strict=True)]
                         if name in spec.xfail else [])
                out.append(param(name, mine, id=f"{name}-{spec.name}", marks=marks))
    return out


@pytest.fixture
def blocks(monkeypatch):
    """Small Triton blocks so that the table's small shapes span several tiles."""
    monkeypatch.setattr(triton_backend, "CONFIG", SMALL)


@pytest.mark.parametrize("backend,rows", _pairs())
def test_case(backend, rows, blocks):
    """The case in each of its dtypes: loss, dW, db (and x̃ on the torch row) vs the truth."""
    for row in rows:
        fo.assert_close(row.case, backend, augment_too=backend == "torch", k_own=row.spec.k_own,
                        tr=truths(row))
        if row.spec.extra is not None:
            row.spec.extra(backend, row)


# ---- the batched sweep engine (op/batched.py) on the rows it computes ---------------------------

#: The table's cases whose numerics the sweep engine has its own code for (margins, the exact
#: direction, cancelling and untrusted rows, zero rows, groups); one configuration each.
BATCHED_FAMILIES = ("margin_", "w30_", "cancelling_", "near_cancelling_", "n2_", "parallel_",
                    "zero_row", "tiny_row", "groups_b", "found13", "shape_b256", "hyper_")
BATCHED = [pytest.param([r for r in ROWS if r.spec is spec and r.case.weight_dtype is None
                         and r.case.dtype in ("float32", "float64")], id=spec.name)
           for spec in SPECS if spec.name.startswith(BATCHED_FAMILIES)
           and not spec.needs() - {"groups"} and spec.case.direction == "sea"]


@pytest.mark.parametrize("rows", BATCHED)
def test_batched_engine(rows):
    """One configuration: mean loss and Σ_i s_i ∂ℓ_i/∂W with the row weights s, each dtype."""
    for row in rows:
        _check_batched(row)


def _check_batched(row):
    tr = truths(row, "none")
    case, inp = tr.case, tr.inp
    td = getattr(torch, case.dtype)
    hyper = Hyper(*(torch.tensor([v], dtype=td) for v in fo.hyper(case).values()))
    grad_t, losses = batched_sea_grad(torch.from_numpy(inp.x_r).to(td), torch.from_numpy(inp.y),
                                      torch.from_numpy(inp.w_r).to(td).T.contiguous(), hyper,
                                      case.c, row_scale=torch.from_numpy(inp.rw_r).to(td),
                                      group_size=case.group_size)
    k = row.spec.k_own
    metrics = [fo.metric("dW", grad_t.T.double().numpy(), tr.truth[1],
                         [low[1] for low in tr.lows], case.dtype, 1.0, scale=tr.dw_scale,
                         cond=tr.cond.get("dW", 0.0), k_own=k),
               fo.metric("loss", losses[0].double().numpy(), np.mean(tr.truth[0]),
                         [np.mean(low[0]) for low in tr.lows], case.dtype, case.lam,
                         fo.compute_dtype_name(case.dtype),
                         cond=tr.cond.get("loss", 0.0) / case.b, k_own=k)]
    bad = fo.failures(metrics)
    assert not bad, f"batched on {case.short()}:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("b,g,d", [(12, None, 16), (24, None, 8), (7, 3, 6), (7, 2, 2),
                                   (9, 4, 3), (6, 1, 6)])
def test_batched_engine_many_configurations(b, g, d, dtype):
    """Four configurations at once (η = 0 first: the baseline path; chunks of 2; a zero weight),
    with and without groups, d < b and d < G (ĝ = QX) and d ≥ b (ĝ via QK)."""
    x, y, w0, _ = random_arrays(b, d, 4, b + (g or 0), zero_rows=(2,) if b > 6 else ())
    cfg = dict(alpha=[0.05, 1e-3, 0.1, 0.05], eta=[0.0, 0.8, 0.4, 1.0], lam=[0.2, 0.1, 1.0, 0.5],
               delta=[0.5, 0.0, 1.0, 0.0])
    weights = [w0 * f for f in (1.0, 30.0, 2.0, 0.0)]
    td = getattr(torch, dtype)
    hyper = Hyper(*(torch.tensor(cfg[k], dtype=td) for k in ("alpha", "eta", "lam", "delta")))
    w_t = torch.from_numpy(np.concatenate([wk.T for wk in weights])).to(td).contiguous()
    grad_t, losses = batched_sea_grad(torch.from_numpy(x).to(td), torch.from_numpy(y), w_t,
                                      hyper, 4, n_baseline=1, chunk_size=2, group_size=g)
    for k, wk in enumerate(weights):
        case = fo.Case(b=b, d=d, c=4, dtype=dtype, group_size=g,
                       **{n: cfg[n][k] for n in cfg})
        tr = fo.truths(case, (x, y, wk, np.ones(b)))
        m = [fo.metric("dW", grad_t[4 * k:4 * k + 4].T.double().numpy(), tr.truth[1],
                       [low[1] for low in tr.lows], dtype, 1.0, scale=tr.dw_scale,
                       cond=tr.cond.get("dW", 0.0)),
             fo.metric("loss", losses[k].double().numpy(), tr.truth[0],
                       [low[0] for low in tr.lows], dtype, case.lam, cond=tr.cond.get("loss", 0))]
        assert not fo.failures(m), (k, fo.failures(m))


# ---- properties of every backend --------------------------------------------------------------

def _inputs(b, d, c, dtype, seed, bias=False, dev="cpu"):
    x, y, w, rw, *rest = random_arrays(b, d, c, seed, bias=0.5 if bias else None)
    out = [torch.from_numpy(x).to(dev, dtype), torch.from_numpy(y).to(dev),
           torch.from_numpy(w).to(dev, dtype), torch.from_numpy(rw).to(dev, dtype)]
    return out + [torch.from_numpy(rest[0]).to(dev, dtype) if rest else None]


def _rows_and_grads(backend, x, y, w, rw, bias=None, **kw):
    """(per-row losses, ∂(Σ s_i ℓ_i)/∂W[, ∂/∂b]) through the public op."""
    wg = w.detach().clone().requires_grad_(True)
    bg = None if bias is None else bias.detach().clone().requires_grad_(True)
    rows = sea_kernels.fused_sea(x, y, wg, bias=bg, reduction="none", backend=backend,
                                 **{**fo.hyper(fo.Case()), **kw})
    grads = torch.autograd.grad((rows * rw).sum(), [wg] + ([] if bg is None else [bg]))
    return (rows.detach(), *grads)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("backend", backend_params("groups", "bias"))
def test_groups_are_each_group_alone(backend, blocks):
    """The contract's definition: the op on every group's slice (row weights kept global) gives
    the grouped losses (concatenated), dW and db (summed), up to the rounding of other shapes."""
    dtype = torch.float32 if backend == "triton" else torch.float64
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    x, y, w, rw, bias = _inputs(9, 8, 6, dtype, 3, bias=True, dev=device(backend))
    grouped = _rows_and_grads(backend, x, y, w, rw, bias, group_size=4)
    parts = [_rows_and_grads(backend, x[lo:lo + 4], y[lo:lo + 4], w, rw[lo:lo + 4], bias)
             for lo in range(0, 9, 4)]
    assert _rel(grouped[0], torch.cat([p[0] for p in parts])) < tol
    for k in (1, 2):
        assert _rel(grouped[k], sum(p[k] for p in parts)) < tol


@pytest.mark.parametrize("backend", backend_params("groups"))
def test_whole_batch_group_sizes_agree(backend, blocks):
    """group_size None, b, b + 1 and 1000 are the same call, bit for bit."""
    x, y, w, _, _ = _inputs(7, 6, 4, torch.float32, 8, dev=device(backend))
    base = sea_kernels.fused_sea(x, y, w, reduction="none", backend=backend)
    for g in (7, 8, 1000):
        got = sea_kernels.fused_sea(x, y, w, reduction="none", group_size=g, backend=backend)
        assert torch.equal(got, base), g


@pytest.mark.parametrize("backend", backend_params("bias"))
def test_class_constant_bias_changes_nothing(backend, blocks):
    """A zero bias is no bias (bitwise); a bias equal for every class changes neither the losses
    nor dW (softmax is shift-invariant and the scores never see the bias), and db = Σ_i D_i sums
    to 0 over the classes."""
    dtype = torch.float32 if backend == "triton" else torch.float64
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    x, y, w, rw, _ = _inputs(12, 9, 5, dtype, 9, dev=device(backend))
    plain = _rows_and_grads(backend, x, y, w, rw, group_size=4)
    zero = _rows_and_grads(backend, x, y, w, rw, torch.zeros_like(w[0]), group_size=4)
    assert torch.equal(zero[0], plain[0]) and torch.equal(zero[1], plain[1])
    shifted = _rows_and_grads(backend, x, y, w, rw, torch.full_like(w[0], 3.0), group_size=4)
    assert _rel(shifted[0], plain[0]) < tol and _rel(shifted[1], plain[1]) < tol
    assert shifted[2].sum().abs() < tol


@pytest.mark.parametrize("backend", backend_params())
def test_forward_without_grad_gives_the_same_losses(backend, blocks):
    """Under no_grad (no dW computed) the losses are those of the forward with autograd."""
    x, y, w, _, _ = _inputs(9, 12, 5, torch.float32, 4, dev=device(backend))
    wg = w.clone().requires_grad_(True)
    with_grad = sea_kernels.fused_sea(x, y, wg, reduction="none", backend=backend)
    with torch.no_grad():
        without = sea_kernels.fused_sea(x, y, wg, reduction="none", backend=backend)
    assert torch.equal(with_grad.detach(), without)


@pytest.mark.parametrize("backend", backend_params(dtype=torch.float64))
def test_mixed_float32_float64_compute_in_float64(backend):
    """float32 x with a float64 weight, and float32 x, W with a float64 bias: the op computes in
    float64 (the loss float64; each gradient in its parameter's dtype), as the float64 inputs."""
    x, y, w, _, bias = _inputs(8, 20, 4, torch.float64, 7, bias=True)
    x32 = x.float()
    want = sea_kernels.fused_sea(x32.double(), y, w, backend=backend)
    got = sea_kernels.fused_sea(x32, y, w, backend=backend)
    assert got.dtype == torch.float64 and _rel(got, want) < 1e-13
    wg, bg = w.float().requires_grad_(True), bias.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x32, y, wg, bias=bg, backend=backend)
    loss.backward()
    assert loss.dtype == torch.float64
    assert wg.grad.dtype == torch.float32 and bg.grad.dtype == torch.float64
    want = sea_kernels.fused_sea(x32.double(), y, w.float().double(), bias=bias, backend=backend)
    assert _rel(loss, want) < 1e-13
