"""Lazy features on N processes (issue #9, `data.features.LazyRows`): with N > 1 and one numpy X
(np.memmap included) each rank reads only its rows of every global batch from the file; the
whole file is still verified and fingerprinted, in chunks, exactly as the eager path does it.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from test_distributed import PARAMS, _data, _rel, _w, launch

from sea_kernels.data.features import LazyRows, prepare_features
from sea_kernels.train import checkpoint as ckpt
from sea_kernels.train import distributed as dist
from sea_kernels.train.estimator import SeAClassifier
from sea_kernels.train.sklearn_compat import readonly_ok


def _memmap(tmp_path, x):
    np.save(tmp_path / "x.npy", x)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def _eager(mm):
    with readonly_ok():   # as fit calls it on a read-only memmap
        return prepare_features(mm)


# ---------------------------------------------------------------------- in-process
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
@pytest.mark.parametrize("n,d,chunk", [(1, 1, None), (37, 5, 4), (203, 17, 64), (64, 3, 1)])
def test_lazy_rows_are_the_prepared_rows_bitwise(tmp_path, dtype, n, d, chunk):
    g = np.random.default_rng(n * d)
    x = g.normal(scale=3.0, size=(n, d))
    x[np.all(np.round(x) == 0, axis=1), 0] = 1.0          # no zero row after the int cast
    mm = _memmap(tmp_path, np.round(x).astype(dtype) if dtype == np.int32 else x.astype(dtype))
    eager = _eager(mm)
    lazy = LazyRows(mm, chunk_rows=chunk)
    assert lazy.shape == eager.shape and lazy.dtype == eager.dtype and len(lazy) == n
    assert lazy.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
    for idx in (torch.arange(n), torch.randperm(n, generator=torch.Generator().manual_seed(1)),
                torch.tensor([n - 1, 0, n - 1]), torch.arange(0)):
        assert torch.equal(lazy[idx], eager[idx])
    labels = torch.as_tensor(g.integers(0, 3, n))
    classes = np.arange(3)
    assert ckpt.fingerprint(lazy, labels, classes) == ckpt.fingerprint(eager, labels, classes)


def test_float32_overflow_rescales_every_row_as_the_eager_path(tmp_path):
    g = np.random.default_rng(0)
    x = g.normal(size=(50, 6)).astype(np.float32)
    x[41] *= 1e30                       # ‖x_41‖² overflows float32: eager rescales all rows
    mm = _memmap(tmp_path, x)
    eager, lazy = _eager(mm), LazyRows(mm, chunk_rows=8)
    assert torch.equal(lazy[torch.arange(50)], eager)
    labels, classes = torch.zeros(50, dtype=torch.long), np.arange(2)
    assert ckpt.fingerprint(lazy, labels, classes) == ckpt.fingerprint(eager, labels, classes)


def test_zero_rows_stay_zero_as_in_the_eager_path(tmp_path):
    x = np.random.default_rng(2).normal(size=(40, 4))
    x[[5, 22, 39]] = 0.0
    mm = _memmap(tmp_path, x)
    eager, lazy = _eager(mm), LazyRows(mm, chunk_rows=6)
    assert torch.equal(lazy[torch.arange(40)], eager) and torch.all(eager[[5, 22, 39]] == 0)
    labels, classes = torch.zeros(40, dtype=torch.long), np.arange(2)
    assert ckpt.fingerprint(lazy, labels, classes) == ckpt.fingerprint(eager, labels, classes)


@pytest.mark.parametrize("bad", ["nan", "inf", "both"])
def test_the_chunked_scan_raises_the_eager_error(tmp_path, bad):
    x = np.random.default_rng(2).normal(size=(40, 4))
    if bad in ("nan", "both"):
        x[[13, 30]] = np.nan
    if bad == "inf":
        x[27, 1] = np.inf
    if bad in ("zero", "both"):
        x[[5, 22, 39]] = 0.0
    mm = _memmap(tmp_path, x)
    with pytest.raises(ValueError) as eager:
        _eager(mm)
    with pytest.raises(ValueError) as lazy:
        LazyRows(mm, chunk_rows=6)
    assert str(lazy.value) == str(eager.value)


def test_shape_errors_before_any_read():
    with pytest.raises(ValueError, match="X has no rows"):
        LazyRows(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no feature columns"):
        LazyRows(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="2-D"):
        LazyRows(np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="numpy array"):
        LazyRows(torch.zeros(2, 2))


def test_lazy_only_for_one_array_row_wise_augments_and_several_processes():
    two = dist.World(2, 0)
    x = np.ones((4, 2))
    assert dist.lazy_features("sea", x, two) and dist.lazy_features("adv", x, two)
    assert not dist.lazy_features("sea", x, dist.SINGLE)
    assert not dist.lazy_features("me_ada", x, two)          # appends copies of every row
    assert not dist.lazy_features("sea", [x, x], two)        # blocks: the eager path
    assert not dist.lazy_features("sea", torch.ones(4, 2), two)


class Counting(LazyRows):
    """LazyRows that records every row __getitem__ fetches (after the verification scan)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.fetched = []

    def __getitem__(self, index):
        self.fetched.append(torch.as_tensor(index).reshape(-1).clone())
        return super().__getitem__(index)


def test_train_step_fetches_only_this_ranks_rows(tmp_path):
    """A one-rank gloo group, train_step told it is rank r of 2: x[...] sees rank_rows only."""
    import torch.distributed as tdist
    if tdist.is_initialized():
        pytest.skip("a process group is already initialised")
    x, y = _data(n=30)
    mm = _memmap(tmp_path, x)
    tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1)
    try:
        for rank in (0, 1):
            world = dist.World(2, rank)
            lazy = Counting(mm)
            W = torch.zeros(12, 3, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.SGD([W], lr=0.1)
            fn = lambda a, b: torch.nn.functional.cross_entropy(a @ W, b)   # noqa: E731
            perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
            yt = torch.as_tensor(y)
            for s in range(0, 30, 8):                 # 3 batches of 8, one of 6 (groups of 2)
                dist.train_step(world, perm[s:s + 8], lazy, yt, W, opt, fn, 2)
            want = []
            for s in range(0, 30, 8):
                idx = perm[s:s + 8]
                a, b = dist.rank_rows(idx.numel(), 2, world)
                want.append(idx[a:b])
            assert [t.tolist() for t in lazy.fetched] == [t.tolist() for t in want]
            assert sum(t.numel() for t in lazy.fetched) == (14 if rank == 0 else 16)
    finally:
        tdist.destroy_process_group()


# ---------------------------------------------------------------------- 2 processes
COUNTING_WORKER = r"""
import json, os, sys, numpy as np, torch
from sea_kernels.data import features
from sea_kernels.train import estimator
cfg = json.loads(sys.argv[1])
fetched, scanned = [], [0]
get, load = features.LazyRows.__getitem__, features.LazyRows._load
def counting_get(self, index):
    fetched.append(torch.as_tensor(index).reshape(-1).tolist())
    return get(self, index)
def counting_load(self, rows):
    if isinstance(rows, slice):
        scanned[0] += len(range(*rows.indices(self.shape[0])))
    return load(self, rows)
features.LazyRows.__getitem__ = counting_get
features.LazyRows._load = counting_load
estimator.LazyRows = features.LazyRows
X = np.load(cfg["x"], mmap_mode="r")
clf = estimator.SeAClassifier(**cfg["params"]).fit(X, np.load(cfg["y"]))
rank = os.environ["RANK"]
np.save(cfg["out"] + f".{rank}.npy", clf.W_.numpy())
json.dump({"fetched": fetched, "scanned": scanned[0]}, open(cfg["out"] + f".{rank}.json", "w"))
"""


@pytest.mark.slow
def test_each_rank_reads_only_its_rows_and_matches_one_process(tmp_path):
    x, y = _data(n=44)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    params = dict(PARAMS, group_size=2)
    cfg = dict(x=str(tmp_path / "x.npy"), y=str(tmp_path / "y.npy"), params=params,
               out=str(tmp_path / "W2"))
    res = launch(lambda r: [sys.executable, "-c", COUNTING_WORKER, json.dumps(cfg)], 2)
    assert [r[0] for r in res] == [0, 0], [r[2][-2500:] for r in res]
    gen = torch.Generator().manual_seed(params["random_state"])
    want = {0: [], 1: []}
    for _ in range(params["epochs"]):
        perm = torch.randperm(44, generator=gen)
        for s in range(0, 44, 8):
            idx = perm[s:s + 8]
            for r in (0, 1):
                a, b = dist.rank_rows(idx.numel(), 2, dist.World(2, r))
                if b > a:
                    want[r].append(idx[a:b].tolist())
    for r in (0, 1):
        got = json.loads((tmp_path / f"W2.{r}.json").read_text())
        assert got["scanned"] == 44                      # the one verification pass
        assert got["fetched"] == want[r]                 # then exactly its slices, in order
        assert sum(len(t) for t in got["fetched"]) == 3 * 22
    one = SeAClassifier(**params).fit(x, y).W_.numpy()
    assert _rel(_w(tmp_path, 2, 0), one) <= 1e-12
    np.testing.assert_array_equal(_w(tmp_path, 2, 0), _w(tmp_path, 2, 1))
