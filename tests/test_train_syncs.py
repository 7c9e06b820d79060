"""Host syncs of the trainer's and the sweep engine's own step loops: none per step, at most one
read per epoch.

A host sync is counted at the Python level (Tensor.item / tolist / numpy / __bool__ / __int__ /
__float__ / __index__) and below it (a TorchDispatchMode flagging aten._local_scalar_dense,
nonzero, unique, masked_select and boolean-mask indexing). A TorchDispatchMode sees a custom op as
one call, so the op's inside is not what is counted here: the fused op (whose backends are made
sync-free separately) is replaced by a sync-free stand-in of the same shapes, and what is left is
the loop code of `SeAClassifier._run_epoch` and `sweeps.engine.train_many`. The count may not grow
with the number of steps: syncs(E epochs × s steps) − syncs(setup) ≤ E.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sea_kernels.op import batched
from sea_kernels.op.reference import smoothed_hinge_loss
from sea_kernels.sweeps.engine import train_many
from sea_kernels.train import augmentations
from sea_kernels.train.estimator import SeAClassifier

_SYNC_OPS = {"_local_scalar_dense", "nonzero", "nonzero_static", "_unique", "_unique2",
             "unique_dim", "unique_consecutive", "masked_select", "item"}
_PY_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


class _SyncOps(TorchDispatchMode):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in _SYNC_OPS:
            self.counter.append(name)
        elif name == "index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                     for i in (args[1] if len(args) > 1 else ())):
            self.counter.append("bool-mask index")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_syncs():
    """Yields a list that collects one entry per host sync inside the block."""
    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in _PY_READS}

    def wrap(name, fn):
        def counted(self, *a, **k):
            seen.append(name)
            return fn(self, *a, **k)
        return counted

    try:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, wrap(name, fn))
        with _SyncOps(seen):
            yield seen
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def test_the_counter_sees_every_kind_of_sync():
    t = torch.tensor([1.0, 0.0, 2.0])
    for read in (lambda: t.sum().item(), lambda: t.tolist(), lambda: bool(t[0]),
                 lambda: int(t[0]), lambda: float(t[0]), lambda: t.nonzero(),
                 lambda: torch.unique(t), lambda: t[t > 0], lambda: t.numpy()):
        with count_syncs() as seen:
            read()
        assert seen, read
    with count_syncs() as seen:
        (t * 2 + 1).exp_().sum()
    assert seen == []


def _stand_in(call, diagnose=True):
    """The fused op's loss shape and gradient path, sync-free: ℓ(XW) of the plain batch."""
    h = call.hyper
    return smoothed_hinge_loss(call.x @ call.weight, call.labels, h.lam, h.delta)


_RUN_EPOCH = SeAClassifier._run_epoch


def _data(n=96, d=10, c=3, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, d)).astype(np.float32), g.integers(0, c, n)


def _fit_syncs(monkeypatch, epochs, n, **kw):
    monkeypatch.setattr(augmentations, "run", _stand_in)
    X, y = _data(n)
    clf = SeAClassifier(epochs=epochs, batch_size=8, lr=0.1, random_state=0, backend="torch",
                        **kw)
    runs = []

    def counted(self, *a, **k):
        with count_syncs() as seen:
            out = _RUN_EPOCH(self, *a, **k)
        runs.append(list(seen))
        return out

    monkeypatch.setattr(SeAClassifier, "_run_epoch", counted)
    clf.fit(X, y)
    return runs


def test_trainer_epoch_reads_the_device_once(monkeypatch):
    short = _fit_syncs(monkeypatch, epochs=2, n=32)          # 4 steps an epoch
    long = _fit_syncs(monkeypatch, epochs=2, n=160)          # 20 steps an epoch
    assert [len(r) for r in short] == [len(r) for r in long]
    assert all(r == ["numpy"] for r in long), long           # the one read: [Σℓ, W finite, ℓ_k]


def test_trainer_nonfinite_loss_still_diverges_at_the_epoch_end(monkeypatch):
    """The read is deferred, not dropped: a NaN batch loss stops the fit at its epoch's end with
    the op's diagnosis, and the epochs before are kept."""
    X, y = _data(64)
    clf = SeAClassifier(epochs=3, batch_size=8, lr=0.4, random_state=0, backend="torch")
    original = augmentations.FusedSeA.loss

    def poisoned(self, epoch, xb, yb, W):
        if epoch == 1:
            with torch.no_grad():
                W[0, 0] = float("inf")
        return original(self, epoch, xb, yb, W)

    monkeypatch.setattr(augmentations.FusedSeA, "loss", poisoned)
    with pytest.raises(Exception, match=r"diverged at epoch 2 \(loss nan\).*\[weight contains"):
        clf.fit(X, y)
    assert len(clf.history_) == 1


def _engine_syncs(monkeypatch, epochs, n, eta, zero_row, stand_in=True):
    def chunk(logits_t, weight_t, y_t, labels, k_gram, k_diag, row_scale, alpha, eta, lam, delta,
              x, ws=None, keep=None, budget=None, overflow=None):    # the η = 0 rows
        rows, losses = batched.sea_rows_baseline(logits_t, y_t, labels, k_diag, row_scale, lam,
                                                 delta)
        return rows, losses, []

    if stand_in:
        monkeypatch.setattr(batched, "sea_rows_chunk", chunk)
    X, y = _data(n)
    x = torch.nn.functional.normalize(torch.from_numpy(X), dim=1)
    if zero_row:
        x[5] = 0                                             # a zero row: known per fit
    configs = [dict(lr=lr, eta=eta) for lr in (0.01, 0.05, 1e30)]   # 1e30 diverges mid-epoch
    with count_syncs() as seen:
        res = train_many(x, y, configs, epochs=epochs, batch_size=8, eval_sets=None)
    return seen, res


@pytest.mark.parametrize("eta,zero_row,stand_in", [(0.0, False, True), (0.4, False, True),
                                                   (0.4, True, True), (0.4, True, False)])
def test_sweep_engine_reads_the_device_once_per_epoch(monkeypatch, eta, zero_row, stand_in):
    """One read per epoch; with a zero row in X also the epoch's permutation (drawn on the host
    by a CPU generator, as the trainer's) goes to numpy to find the batches that hold it. The
    η > 0 chunk (`op.batched.sea_rows_chunk`, its rare rows included) is also counted as it is:
    it is the engine's own code (stand_in=False)."""
    one, res = _engine_syncs(monkeypatch, epochs=1, n=48, eta=eta, zero_row=zero_row,
                             stand_in=stand_in)
    three, res3 = _engine_syncs(monkeypatch, epochs=3, n=96, eta=eta, zero_row=zero_row,
                                stand_in=stand_in)
    assert res3.diverged.tolist() == [False, False, True] and res3.diverged_step[2] >= 0, res3
    per_epoch = 2 if zero_row else 1                         # 3 epochs of 12 steps vs 1 of 6
    assert len(three) - len(one) <= 2 * per_epoch, "\n".join(map(str, (one, three)))
