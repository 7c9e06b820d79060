"""Host syncs of one SeA step, counted on the CPU (issue #15: no host sync in the hot path).

A host sync is a point where Python needs a tensor's value: `.item()`, `.tolist()`, `bool()`,
`int()`, `float()` of a tensor, `nonzero`, `unique`, boolean-mask indexing. `count_syncs` catches
them twice over: it patches those Python-level entry points (they also catch a `.tolist()` on a
CPU tensor, which never reaches the dispatcher) and runs a TorchDispatchMode that flags the aten
ops that read values (`_local_scalar_dense`, `nonzero`, `unique*`, `masked_select`, index /
index_put with a bool index). A dispatch mode sees a custom op as one call and not the ops inside
it, so the op path is counted with `fused._forward` (the op's one entry to the backends) run under
a mode of its own, and the torch backend's `sea_forward` / `unmoved_forward` (every stage) are
also called directly under the mode.

Asserted: 0 syncs for the torch backend's forward with and without dW (whole batch, groups with
a shorter last group, bias, zero rows, untrusted rows, cancelling rows, b = 1), for
`unmoved_forward` (η = 0, rows whose norm under- or overflows included), for
`fused_sea(..., validate=False)` forward and backward through the op (every reduction, η = 0
too), and for `op.linear.direction_op`; the default validation syncs exactly twice per call (the
label range with the bias, the finite loss: both raise a Python error), and under torch.compile
they are a device-side assert. `test_the_counter_*` shows the counter does catch a deliberate
sync, also one inside the op. Where CUDA exists, CUDA's own sync detector checks the same step.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import make_problem, margin_problem
from torch.utils._python_dispatch import TorchDispatchMode

from sea_kernels import fused_sea, reference
from sea_kernels.op import fused, linear, torch_backend
from sea_kernels.op.call import Hyper, row_scale

aten = torch.ops.aten
#: aten ops that bring a value to the host (or have a data-dependent output shape)
SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten._unique, aten._unique2, aten.unique_dim,
            aten.unique_consecutive, aten.unique_dim_consecutive, aten.masked_select,
            aten.is_nonzero, aten.item}
#: aten ops that sync when one of their indices is a bool mask
INDEX_OPS = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
#: Python-level entry points that sync
PYTHON_SYNCS = [(torch.Tensor, n) for n in ("item", "tolist", "__bool__", "__int__", "__float__",
                                            "__index__", "nonzero", "unique")]
PYTHON_SYNCS += [(torch, "nonzero"), (torch, "unique")]


class _Counter(TorchDispatchMode):
    """Appends the name of every syncing aten op to `hits` (not while a patched Python-level
    sync, already counted, runs: one sync, one hit)."""

    def __init__(self, hits, state):
        super().__init__()
        self.hits, self.state = hits, state

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        indices = args[1] if packet in INDEX_OPS and len(args) > 1 else ()
        masked = any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                     for i in indices or ())
        if not self.state["inside"] and (packet in SYNC_OPS or masked):
            self.hits.append(str(func))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_syncs(monkeypatch=None):
    """Yields the list of host syncs made in the block (see the module docstring). With a
    monkeypatch, `fused._forward` (run inside the custom ops) is counted under a mode too."""
    hits, state = [], {"inside": False}

    def patched(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            outer = state["inside"]
            if not outer:
                hits.append(name)
            state["inside"] = True
            try:
                return original(*args, **kwargs)
            finally:
                state["inside"] = outer
        return original, wrapper

    saved = [(owner, name, *patched(owner, name)) for owner, name in PYTHON_SYNCS]
    if monkeypatch is not None:
        inner = fused._forward

        def counted_forward(*args, **kwargs):
            with _Counter(hits, state):
                return inner(*args, **kwargs)
        monkeypatch.setattr(fused, "_forward", counted_forward)
    for owner, name, _, wrapper in saved:
        setattr(owner, name, wrapper)
    try:
        with _Counter(hits, state):
            yield hits
    finally:
        for owner, name, original, _ in saved:
            setattr(owner, name, original)


# --------------------------------------------------------------------------- the counter works

@pytest.mark.parametrize("sync", [
    lambda t: t.sum().item(), lambda t: t.tolist(), lambda t: bool(t.sum() > 0),
    lambda t: int(t.sum()), lambda t: float(t.sum()), lambda t: torch.nonzero(t),
    lambda t: t.nonzero(), lambda t: torch.unique(t), lambda t: t[t > 0],
    lambda t: t.masked_fill(t > 0, 0)[t > 0], lambda t: t.index_put_((t > 0,), t.new_zeros(())),
    lambda t: range(10)[t.long()[0]],
], ids=["item", "tolist", "bool", "int", "float", "torch.nonzero", "Tensor.nonzero",
        "torch.unique", "bool-mask index", "bool-mask index 2", "bool-mask index_put",
        "__index__"])
def test_the_counter_catches_a_deliberate_sync(sync):
    t = torch.tensor([1.0, -2.0, 3.0])
    with count_syncs() as hits:
        sync(t)
    assert len(hits) >= 1
    with count_syncs() as hits:            # and nothing for the same tensor's sync-free work
        torch.where(t > 0, t, 0).sum()
    assert hits == []


def test_the_counter_sees_inside_the_op(monkeypatch):
    """A deliberate `.item()` in a stage the op runs is counted (the Python-level patch), and so
    is a bool-mask index (the mode around `fused._forward`, below the custom op)."""
    x, y, w = make_problem(9, 5, 3, dtype=torch.float32)
    w.requires_grad_(True)
    epilogue = torch_backend.row_epilogue

    def syncing(logits, *args, **kwargs):
        logits.abs().max().item()
        return epilogue(logits, *args, **kwargs)
    monkeypatch.setattr(torch_backend, "row_epilogue", syncing)
    with count_syncs(monkeypatch) as hits:
        fused_sea(x, y, w, backend="torch", validate=False).backward()
    assert hits == ["item"]
    monkeypatch.setattr(torch_backend, "row_epilogue", epilogue)
    prep = torch_backend.row_prep

    def masking(logits, *args, **kwargs):
        _ = logits[logits > 0]
        return prep(logits, *args, **kwargs)
    monkeypatch.setattr(torch_backend, "row_prep", masking)
    with count_syncs(monkeypatch) as hits:
        fused_sea(x, y, w, backend="torch", validate=False)
    assert len(hits) == 1 and "index" in hits[0]


# --------------------------------------------------------------------------- the cases

def _untrusted(dtype):
    """Rows of very different norms: ‖ĝ_i‖² < τ·max_j K_jj for the short rows."""
    x, y, w = make_problem(10, 6, 4, seed=1, dtype=torch.float64)
    x[0] *= 300.0
    return x.to(dtype), y, w.to(dtype)


def _cancelling(dtype):
    """W's columns within 1e-6 of one column: W a'_i cancels on every row."""
    x, y, w = make_problem(10, 6, 4, seed=2, dtype=torch.float64)
    w = w[:, :1] + 1e-6 * w
    return x.to(dtype), y, w.to(dtype)


def _extreme(dtype):
    """Confident rows at a 1000λ margin, plus a row 300× longer: untrusted rows at extreme
    margins."""
    x, y, w = margin_problem(12, 8, 4, 1000.0, dtype=torch.float64)
    x[3] *= 300.0
    return x.to(dtype), y, w.to(dtype)


def _zero_rows(dtype):
    x, y, w = make_problem(10, 6, 4, seed=3, dtype=dtype)
    x[[2, 7]] = 0
    return x, y, w


CASES = {
    "plain": lambda dt: make_problem(11, 7, 5, dtype=dt),
    "zero_rows": _zero_rows,
    "untrusted": _untrusted,
    "cancelling": _cancelling,
    "extreme_margins": _extreme,
    "one_row": lambda dt: make_problem(1, 4, 3, dtype=dt),
}


def _masks(x, y, w, hyper):
    """(untrusted rows, cancelling rows) of the torch backend on this problem."""
    yy = reference.one_hot(y, w.shape[1], x.dtype)
    a = torch_backend.row_prep(x @ w, yy, hyper.lam, hyper.delta, False)
    cancel = torch_backend.grad_norms_and_rows(a, w)[1]
    rows = torch_backend._front(x, yy, w, hyper.alpha, hyper.eta, hyper.lam, hyper.delta, False,
                                hyper.group_size)[5]
    return rows, cancel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("group_size", [None, 4])
@pytest.mark.parametrize("with_bias", [False, True])
def test_torch_backend_step_has_no_host_sync(case, group_size, with_bias, dtype):
    x, y, w = CASES[case](dtype)
    b, c = x.shape[0], w.shape[1]
    bias = torch.linspace(-1, 1, c, dtype=dtype) if with_bias else None
    hyper = Hyper(0.01, 0.8, 0.1, 0.5, False, group_size if group_size and group_size < b
                  else None)
    rows, cancel = _masks(x, y, w, hyper)
    if case in ("untrusted", "extreme_margins"):     # the case does test the masked repair
        assert rows.any() and not rows.all()
    if case == "cancelling":
        assert cancel.any()
    scale = row_scale(b, "mean", dtype, x.device)
    for compute_grad in (False, True):
        with count_syncs() as hits:
            losses, dw, db = torch_backend.sea_forward(x, y, w, scale, hyper, compute_grad, bias)
        assert hits == [], (case, compute_grad, hits)
        assert torch.isfinite(losses).all()
    assert torch.isfinite(dw).all() and dw.shape == w.shape
    assert db.shape == ((c,) if with_bias else (0,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_unmoved_forward_has_no_host_sync(dtype, with_bias):
    """η = 0, with a zero row and rows whose squared norm under- or overflows (the rescaled path
    of `normalized_rows`), which is reference.unit's Π."""
    x, y, w = make_problem(8, 5, 3, dtype=dtype)
    fi = torch.finfo(dtype)
    x[1] = 0
    x[2] *= fi.tiny ** 0.5 / 16
    x[3] *= fi.max ** 0.5 * 4
    bias = torch.linspace(-1, 1, 3, dtype=dtype) if with_bias else None
    scale = row_scale(8, "sum", dtype, x.device)
    with count_syncs() as hits:
        losses, dw, db = torch_backend.unmoved_forward(x, y, w, scale, Hyper(eta=0.0), True, bias)
        x_unit = torch_backend.normalized_rows(x)
    assert hits == []
    assert torch.equal(x_unit, reference.unit(x))
    assert torch.isfinite(losses).all() and torch.isfinite(dw).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eta", [0.8, 0.0])
@pytest.mark.parametrize("group_size, with_bias", [(None, False), (4, True)])
def test_fused_sea_without_validation_has_no_host_sync(monkeypatch, reduction, eta, group_size,
                                                       with_bias):
    """fused_sea(..., validate=False) forward and backward through the custom op (the backward of
    reduction='none' runs the backend once more), torch backend, untrusted rows included."""
    x, y, w = _untrusted(torch.float32)
    w.requires_grad_(True)
    bias = torch.linspace(-1, 1, w.shape[1]).requires_grad_(True) if with_bias else None
    with count_syncs(monkeypatch) as hits:
        loss = fused_sea(x, y, w, eta=eta, reduction=reduction, group_size=group_size,
                         bias=bias, backend="torch", validate=False)
        (loss if reduction != "none" else (loss * torch.linspace(0, 1, x.shape[0]))).sum() \
            .backward()
    assert hits == []
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    if with_bias:
        assert bias.grad is not None and torch.isfinite(bias.grad).all()


def test_default_validation_syncs_only_to_raise(monkeypatch):
    """validate=True: one sync for the label range with a finite bias (before the work), one for
    a finite loss (after it) — both raise a Python error; the backward adds none."""
    x, y, w = _untrusted(torch.float32)
    w.requires_grad_(True)
    bias = torch.zeros(w.shape[1])
    with count_syncs(monkeypatch) as hits:
        loss = fused_sea(x, y, w, bias=bias, backend="torch")
    assert hits == ["__bool__", "__bool__"]
    with count_syncs(monkeypatch) as hits:
        loss.backward()
    assert hits == []
    with pytest.raises(ValueError, match="labels must lie in"):
        fused_sea(x, torch.full_like(y, 7), w, backend="torch")
    with pytest.raises(ValueError, match="bias contains NaN"):
        fused_sea(x, y, w, bias=torch.full((w.shape[1],), float("nan")), backend="torch")


def test_direction_op_has_no_host_sync():
    """op.linear.direction_op takes (α, λ, δ) as a tensor and passes it on without `.tolist()`."""
    x, y, w = make_problem(9, 5, 3, dtype=torch.float32)
    scalars = torch.tensor([0.01, 0.1, 0.5])
    with count_syncs() as hits:
        u = linear.direction_op(x, y, w, scalars, 4)
    assert hits == []
    want = torch_backend.sea_direction(x, y, w, Hyper(0.01, 0.0, 0.1, 0.5, False, 4), x.dtype)
    torch.testing.assert_close(u, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalized_rows_is_x_over_its_norm_to_the_bit(dtype):
    """The sync-free Π of the η = 0 path rescales every row by a power of two first; where no
    norm under- or overflows that is X/‖x_i‖ exactly, as before the rescale was unconditional."""
    g = torch.Generator().manual_seed(4)
    for scale in (1.0, 1e-3, 7.3e3):
        x = torch.randn(64, 33, generator=g, dtype=dtype) * scale
        x[5] = 0
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        assert torch.equal(torch_backend.normalized_rows(x), x / norm.masked_fill(norm == 0, 1))


def test_compiled_validation_asserts_on_the_device():
    """Under torch.compile the value checks are torch._assert_async (no sync, no graph break): a
    label out of range still stops the call."""
    x, y, w = make_problem(9, 5, 3, dtype=torch.float32)
    step = torch.compile(lambda x, y, w: fused_sea(x, y, w, backend="torch"), fullgraph=True,
                         backend="eager")
    assert torch.isfinite(step(x, y, w))
    with pytest.raises(RuntimeError, match="labels must lie in"):
        step(x, torch.full_like(y, 5), w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
def test_torch_backend_on_cuda_does_not_synchronize():
    """On a GPU, CUDA's own sync detector (torch.cuda.set_sync_debug_mode("error")) over the torch
    backend's step and fused_sea(validate=False) forward and backward, untrusted rows included."""
    x, y, w = (t.cuda() for t in _untrusted(torch.float32))
    w.requires_grad_(True)
    scale = row_scale(x.shape[0], "mean", torch.float32, x.device)
    torch_backend.sea_forward(x, y, w.detach(), scale, Hyper(group_size=4), True)   # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        torch_backend.sea_forward(x, y, w.detach(), scale, Hyper(group_size=4), True)
        torch_backend.unmoved_forward(x, y, w.detach(), scale, Hyper(eta=0.0), True)
        fused_sea(x, y, w, backend="torch", validate=False).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(w.grad).all()
