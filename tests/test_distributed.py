"""One model on N processes (`sea_kernels.train.distributed`, docs/design.md §5 "Processes").

Every multi-process test starts real processes on 127.0.0.1 (gloo, a free port), each bounded by
a subprocess timeout and killed on the way out: N processes give one process's result with the
same global batch and projection group (float64: ≤ 1e-12 relative; float32: ≤ 1e-5), bad
splits are refused before any work, and a failing or killed rank makes every rank exit non-zero
with the error printed once.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sea_kernels.train import distributed as dist
from sea_kernels.train.estimator import SeAClassifier

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 45          # seconds any group of processes may take, start-up included
PG_TIMEOUT = "15"     # SEA_DIST_TIMEOUT of the workers: a lost rank is noticed within it

WORKER = r"""
import json, sys, numpy as np
from sea_kernels.train.estimator import SeAClassifier
cfg = json.loads(sys.argv[1])
X = np.load(cfg["x"], mmap_mode="r")
y = np.load(cfg["y"])
if cfg.get("bad_rank") is not None and cfg["bad_rank"] == int(__import__("os").environ["RANK"]):
    X = np.array(X); X[3] = np.nan          # bad input on this rank only
if cfg.get("die_rank") is not None or cfg.get("raise_rank") is not None:
    import os
    from sea_kernels.train import augmentations
    loss = augmentations.FusedSeA.loss
    def dying(self, epoch, xb, yb, w, _n=[0]):
        _n[0] += 1
        if int(os.environ["RANK"]) == cfg.get("die_rank") and _n[0] == 3:
            os.kill(os.getpid(), 9)            # killed in the middle of training
        if int(os.environ["RANK"]) == cfg.get("raise_rank") and _n[0] == 3:
            raise MemoryError("simulated out of memory")
        return loss(self, epoch, xb, yb, w)
    augmentations.FusedSeA.loss = dying
clf = SeAClassifier(**cfg["params"]).fit(X, y, **cfg.get("fit", {}))
np.save(cfg["out"] + f".{__import__('os').environ.get('RANK', '0')}.npy", clf.W_.numpy())
print("history", json.dumps([r["train_loss"] for r in clf.history_]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(world: int, rank: int, port: int) -> dict:
    env = dict(os.environ, WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SEA_DIST_TIMEOUT=PG_TIMEOUT,
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    return env


def launch(argv_of_rank, world: int, timeout: float = TIMEOUT):
    """Start `world` processes (argv_of_rank(rank)), wait for all (bounded), kill leftovers.
    Returns [(returncode, stdout, stderr)] by rank; a group that overran fails the test."""
    port = free_port()
    procs = [subprocess.Popen(argv_of_rank(r), env=_env(world, r, port), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for r in range(world)]
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            try:
                o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"a rank did not finish within {timeout} s (hang)")
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
    return out


def fit_on(world: int, tmp_path: Path, params: dict, *, x, y, fit=None, **extra):
    """Fit SeAClassifier on `world` processes (the Python API, unchanged); per-rank results."""
    xp, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    if not xp.exists():
        np.save(xp, x)
        np.save(yp, y)
    cfg = dict(x=str(xp), y=str(yp), params=params, fit=fit or {},
               out=str(tmp_path / f"W{world}"), **extra)
    return launch(lambda r: [sys.executable, "-c", WORKER, json.dumps(cfg)], world)


def _data(n=44, d=12, c=3, dtype=np.float64, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(size=(c, d))
    y = g.integers(0, c, n)
    x = (centers[y] + 0.8 * g.normal(size=(n, d))).astype(dtype)
    return x, y


# ---------------------------------------------------------------------- in-process, no group
def test_rank_rows_cover_each_batch_once_in_whole_groups():
    for n_world in (1, 2, 3, 4):
        for m in (1, 5, 12, 24):
            for group in (1, 2, 3, 6):
                rows = [dist.rank_rows(m, group, dist.World(n_world, r)) for r in range(n_world)]
                assert rows[0][0] == 0 and rows[-1][1] == m
                for (a, b), (c, _) in zip(rows, rows[1:]):
                    assert b == c and a <= b
                if n_world > 1:   # slices start at group boundaries
                    assert all(a % group == 0 or a == m for a, _ in rows)


def test_full_batch_is_split_evenly():
    w = dist.World(4, 2)
    assert dist.rank_rows(32, 4, w) == (16, 24)
    assert dist.projection_group(None, 32, w) == 8
    assert dist.projection_group(4, 32, w) == 4
    assert dist.projection_group(None, 32, dist.SINGLE) is None


def test_bad_splits_are_refused_naming_the_numbers():
    w = dist.World(3, 0)
    with pytest.raises(ValueError, match=r"batch_size=16.*world size 3"):
        dist.local_batch_size(16, w)
    with pytest.raises(ValueError, match=r"group_size=3 must divide the per-rank batch.*= 8"):
        dist.projection_group(3, 16, dist.World(2, 1))
    with pytest.raises(ValueError, match="augment='isda' cannot train on 2 processes"):
        dist.check_augment("isda", dist.World(2, 0))
    dist.check_augment("isda", dist.SINGLE)


def test_one_process_is_unchanged_and_not_distributed(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    assert dist.setup("cpu") == dist.SINGLE
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK='5' is not a rank"):
        dist.setup("cpu")
    with dist.single_process():
        assert dist.setup("cpu") == dist.SINGLE
    monkeypatch.setenv("SEA_DIST_TIMEOUT", "-3")
    with pytest.raises(ValueError, match="SEA_DIST_TIMEOUT"):
        dist.timeout_s()


def test_group_size_parameter_is_checked():
    x, y = _data()
    with pytest.raises(ValueError, match="group_size"):
        SeAClassifier(group_size=0, epochs=1).fit(x, y)
    with pytest.raises(TypeError, match="group_size"):
        SeAClassifier(group_size=True, epochs=1).fit(x, y)


# ---------------------------------------------------------------------- N processes
PARAMS = dict(epochs=3, batch_size=8, lr=0.3, eta=0.4, random_state=3, backend="torch")


def _w(tmp_path, world, rank=0):
    return np.load(tmp_path / f"W{world}.{rank}.npy")


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.slow
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_two_processes_equal_one_with_the_same_batch_and_group(tmp_path, dtype, tol):
    # 44 rows, global batch 8: five full batches and a last one of 4 rows, kept on both sizes
    x, y = _data(dtype=dtype)
    params = dict(PARAMS, group_size=2)
    res2 = fit_on(2, tmp_path, params, x=x, y=y)
    assert [r[0] for r in res2] == [0, 0], res2
    one = SeAClassifier(**params).fit(x, y)
    w1 = one.W_.numpy()
    assert _rel(_w(tmp_path, 2, 0), w1) <= tol
    np.testing.assert_array_equal(_w(tmp_path, 2, 0), _w(tmp_path, 2, 1))  # identical weights
    losses = json.loads(res2[0][1].split("history", 1)[1])
    np.testing.assert_allclose(losses, [r["train_loss"] for r in one.history_], rtol=tol * 10)


@pytest.mark.slow
def test_without_group_size_each_rank_is_one_group_and_rank0_says_so(tmp_path):
    x, y = _data()
    res = fit_on(2, tmp_path, PARAMS, x=x, y=y)
    assert [r[0] for r in res] == [0, 0], res
    one = SeAClassifier(**dict(PARAMS, group_size=4)).fit(x, y)   # per-rank batch 8/2
    assert _rel(_w(tmp_path, 2, 0), one.W_.numpy()) <= 1e-12
    whole = SeAClassifier(**PARAMS).fit(x, y).W_.numpy()     # the whole batch projects: other
    assert _rel(_w(tmp_path, 2, 0), whole) > 1e-6
    assert "group_size not set" in res[0][2] and "group_size not set" not in res[1][2]


@pytest.mark.slow
def test_three_processes_refuse_an_uneven_batch_on_every_rank(tmp_path):
    x, y = _data()
    res = fit_on(3, tmp_path, PARAMS, x=x, y=y)
    for code, _, err in res:
        assert code != 0 and "batch_size=8 is the global batch" in err and "world size 3" in err


@pytest.mark.slow
def test_checkpoint_written_by_rank0_resumes_exactly_on_one_process(tmp_path):
    x, y = _data()
    ck = tmp_path / "ck.pt"
    params = dict(PARAMS, group_size=2)
    res = fit_on(2, tmp_path, dict(params, epochs=2), x=x, y=y, fit={"checkpoint": str(ck)})
    assert [r[0] for r in res] == [0, 0] and ck.exists(), [r[2][-2500:] for r in res]
    resumed = SeAClassifier(**params).fit(x, y, checkpoint=ck)       # checkpoints are N-free
    assert resumed.history_[0]["epoch"] == 1 and len(resumed.history_) == 3
    full = SeAClassifier(**params).fit(x, y).W_.numpy()
    assert _rel(resumed.W_.numpy(), full) <= 1e-12


@pytest.mark.slow
def test_checkpoint_is_resumed_by_every_rank_exactly(tmp_path):
    x, y = _data()
    ck = tmp_path / "ck.pt"
    params = dict(PARAMS, group_size=2)
    SeAClassifier(**dict(params, epochs=2)).fit(x, y, checkpoint=ck)
    res = fit_on(2, tmp_path, params, x=x, y=y, fit={"checkpoint": str(ck)})
    assert [r[0] for r in res] == [0, 0], res
    full = SeAClassifier(**params).fit(x, y).W_.numpy()
    for rank in (0, 1):
        assert _rel(_w(tmp_path, 2, rank), full) <= 1e-12


@pytest.mark.slow
def test_bad_input_on_one_rank_fails_every_rank_with_one_message(tmp_path):
    x, y = _data()
    t0 = time.monotonic()
    res = fit_on(2, tmp_path, PARAMS, x=x, y=y, bad_rank=1)
    assert time.monotonic() - t0 < TIMEOUT
    assert all(code != 0 for code, _, _ in res)
    assert "NaN" in res[1][2] and "rank 1: " in res[0][2]   # rank 0 raises rank 1's error


@pytest.mark.slow
def test_an_error_in_one_ranks_step_ends_every_rank_with_it(tmp_path):
    x, y = _data()
    res = fit_on(2, tmp_path, PARAMS, x=x, y=y, raise_rank=1)
    assert all(code != 0 for code, _, _ in res)
    assert "MemoryError: simulated out of memory" in res[1][2]
    assert "MemoryError: rank 1: simulated out of memory" in res[0][2]


@pytest.mark.slow
def test_a_killed_rank_makes_the_other_exit_nonzero_in_bounded_time(tmp_path):
    x, y = _data()
    t0 = time.monotonic()
    res = fit_on(2, tmp_path, PARAMS, x=x, y=y, die_rank=1)
    assert res[1][0] == -9 and res[0][0] != 0
    assert "RankLost" in res[0][2] and time.monotonic() - t0 < TIMEOUT


# ---------------------------------------------------------------------- the command line
def _torchrun():
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(exe).exists():
        pytest.skip("torchrun is not installed next to this Python")
    return exe


def _run_torchrun(args, tmp_path, nproc=2, timeout=TIMEOUT):
    cmd = [_torchrun(), "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "sea_kernels.cli.main", *args]
    env = dict(os.environ, SEA_DIST_TIMEOUT=PG_TIMEOUT, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    p = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s")
    return p.returncode, out, err


@pytest.mark.slow
def test_sea_train_under_torchrun_matches_one_process_and_writes_once(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "f.npz", x_train=x, y_train=y)
    args = ["train", "f.npz", "--epochs", "3", "--batch-size", "8", "--lr", "0.3", "--eta",
            "0.4", "--backend", "torch", "--seed", "3", "--group-size", "2", "--no-plot"]
    code, out, err = _run_torchrun(args + ["--out", "run2"], tmp_path)
    assert code == 0, err
    assert out.count("wrote ") == 1 and out.count("trained augment") == 1
    from sea_kernels.cli.main import main
    assert main(["train", str(tmp_path / "f.npz"), *args[2:], "--out",
                 str(tmp_path / "run1")]) == 0
    w2 = SeAClassifier.load(tmp_path / "run2" / "model.pt").W_.numpy()
    w1 = SeAClassifier.load(tmp_path / "run1" / "model.pt").W_.numpy()
    assert _rel(w2, w1) <= 1e-12
    m2 = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m2["params"]["group_size"] == 2


@pytest.mark.slow
def test_sea_train_under_torchrun_reports_an_error_once(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "f.npz", x_train=x, y_train=y)
    code, out, err = _run_torchrun(["train", "f.npz", "--epochs", "1", "--batch-size", "9",
                                    "--no-plot"], tmp_path)
    assert code != 0
    assert err.count("sea: error: batch_size=9 is the global batch") == 1, err


def test_torch_distributed_float64_step_matches_manual(tmp_path):
    """A one-rank gloo group in this process: train_step's all-reduced dW is the mean gradient."""
    import torch.distributed as tdist
    if tdist.is_initialized():
        pytest.skip("a process group is already initialised")
    store = tdist.HashStore()
    tdist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        w = dist.setup("cpu")
        assert w.size == 1
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 4, dtype=torch.float64, generator=g)
        y = torch.tensor([0, 1, 2, 0, 1, 2])
        W = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([W], lr=0.5)
        fn = lambda a, b: torch.nn.functional.cross_entropy(a @ W, b)   # noqa: E731
        loss = dist.train_step(dist.World(1, 0), torch.arange(6), x, y, W, opt, fn, None)
        W0 = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(x @ W0, y)
        ref.backward()
        assert torch.allclose(loss, ref) and torch.allclose(W.detach(), -0.5 * W0.grad)
    finally:
        tdist.destroy_process_group()
