"""Sweeps on N processes (docs/design.md §5): world size 2 gives the one-process sweep — the same
ranking and winner, accuracies within float summation order — through the Python API (two
processes, gloo on 127.0.0.1) and through `torchrun … sea sweep`; a failing rank makes every
rank exit non-zero within a bounded time. Also: the cost model and the LPT shards, and the
group_size plumbing of train_many / sweep.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sea_kernels.params import ParameterError
from sea_kernels.sweeps.engine import train_many
from sea_kernels.sweeps.results import SweepResult
from sea_kernels.sweeps.search import sweep
from sea_kernels.sweeps.shards import assign_shards, config_costs

ROOT = Path(__file__).resolve().parents[1]
GRID = {"lr": [0.5, 2.0], "alpha": [0.01, 0.05], "eta": [0.0, 0.4, 0.8]}
KW = dict(epochs=3, batch_size=32, random_state=1)
LIMIT_S = 50                     # every subprocess run is bounded by this


def _data(n=300, d=32, c=4, seed=0):
    """Gaussian clusters, float32 (the engine's float32 path), plus a test split."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(c, d))
    y, yt = rng.integers(0, c, n), rng.integers(0, c, 100)
    x = (mu[y] + 1.5 * rng.normal(size=(n, d))).astype(np.float32)
    xt = (mu[yt] + 1.5 * rng.normal(size=(100, d))).astype(np.float32)
    return x, y, xt, yt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def _spawn(script: Path, args, world: int = 2, extra_env=None):
    """`world` processes of `script` forming one gloo group on 127.0.0.1 (a free port);
    returns [(returncode, stdout+stderr)] and the seconds it took (all killed at LIMIT_S)."""
    port = _free_port()
    procs = []
    t0 = time.monotonic()
    for r in range(world):
        env = _env(RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **(extra_env or {}))
        procs.append(subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=max(1.0, LIMIT_S - (time.monotonic() - t0)))
            out.append((p.returncode, text))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out, time.monotonic() - t0


WORKER = """
import json, os, sys
import numpy as np
import sea_kernels.sweeps.search as sw
z = np.load(sys.argv[1])
mode = sys.argv[3]
rank = int(os.environ["RANK"])
if mode == "die" and rank == 1:
    from sea_kernels.train import distributed
    distributed.setup()                          # joins the group,
    os._exit(7)                                  # then dies before the gather
if mode == "raise" and rank == 1:
    def boom(*a, **k):
        raise RuntimeError("injected failure on rank 1")
    sw.train_many = boom                         # a rank whose share raises
if mode == "ok":
    inner = sw.train_many
    def counting(x, y, cfgs, **kw):              # record the share this rank trains
        print("share", rank, len(cfgs), flush=True)
        return inner(x, y, cfgs, **kw)
    sw.train_many = counting
grid = json.loads(sys.argv[4])
r = sw.sweep(z["x"], z["y"], grid, X_test=z["xt"], y_test=z["yt"], epochs=3, batch_size=32,
             random_state=1, retrain=sys.argv[5] == "1")
if rank == 0:
    r.to_json(sys.argv[2])
print("done", rank, r.best_index)
"""


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "tiny.npz"
    x, y, xt, yt = _data()
    np.savez(path, x=x, y=y, xt=xt, yt=yt, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def _same_sweep(a: dict, b: dict, tol=1e-6):
    """Same ranking, winner and diverged set; accuracies / losses equal to float order."""
    assert a["best"] == b["best"] and a["best_index"] == b["best_index"]
    assert a["diverged"] == b["diverged"] and a["configs"] == b["configs"]
    for key in ("val_top1", "val_mean_per_class", "train_loss"):
        u = np.array([np.nan if v is None else v for v in a[key]])
        v = np.array([np.nan if v is None else v for v in b[key]])
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol, equal_nan=True, err_msg=key)
    ranks = [SweepResult(configs=d["configs"], val_top1=np.array(d["val_top1"], dtype=float),
                         val_mean_per_class=np.array(d["val_mean_per_class"], dtype=float),
                         diverged=np.array(d["diverged"]), best=d["best"],
                         best_index=d["best_index"], best_val=d["best_val"]).ranking()
             for d in (a, b)]
    assert np.array_equal(*ranks)
    for key in ("test_top1", "test_mean_per_class"):
        assert (a[key] is None) == (b[key] is None)
        if a[key] is not None:
            assert a[key] == pytest.approx(b[key], abs=1e-6)


# --------------------------------------------------------------------- cost model and shards

def test_costs_eta0_cheap_and_groups_cut_the_bxb_work():
    cfgs = [{"eta": 0.0}, {"eta": 0.4}]
    full = config_costs(cfgs, batch_size=256, n_rows=10_000, d=1280, c=10)
    grouped = config_costs(cfgs, batch_size=256, n_rows=10_000, d=1280, c=10, group_size=64)
    plain = 4.0 * 256 * 1280 * 10
    assert full[0] == grouped[0] == plain
    sea = 2 * 256 ** 3 + 6 * 256 ** 2 * 10 + 8 * 256 ** 2
    assert full[1] == pytest.approx(plain + sea)
    assert grouped[1] == pytest.approx(plain + 4 * (2 * 64 ** 3 + 6 * 64 ** 2 * 10 + 8 * 64 ** 2))
    # a shorter last group, and batch > n rows (one batch of n)
    odd = config_costs(cfgs, batch_size=100, n_rows=70, d=8, c=3, group_size=32)
    per = [(2 * g * g * min(g, 8) + 6 * g * g * 3 + 8 * g * g) for g in (32, 32, 6)]
    assert odd[1] - odd[0] == pytest.approx(sum(per)) and odd[0] == 4.0 * 70 * 8 * 3


@pytest.mark.parametrize("seed", range(6))
def test_lpt_shards_partition_and_balance(seed):
    """Every configuration on exactly one rank, each shard in grid order, and the LPT bound:
    makespan ≤ (4/3 − 1/(3m))·optimum (optimum by brute force over all assignments)."""
    rng = np.random.default_rng(seed)
    m = 2 + seed % 2
    costs = rng.choice([1.0, 9.0], size=9) * rng.uniform(0.5, 1.5, size=9)
    shards = assign_shards(costs, m)
    assert len(shards) == m
    assert sorted(np.concatenate(shards).tolist()) == list(range(9))
    assert all(np.array_equal(s, np.sort(s)) for s in shards)
    span = max(costs[s].sum() for s in shards)
    best = min(max(costs[np.array(a) == r].sum() for r in range(m))
               for a in itertools.product(range(m), repeat=9))
    assert span <= (4 / 3 - 1 / (3 * m)) * best + 1e-9
    # more ranks than configurations: the extra ranks get nothing
    few = assign_shards([3.0, 1.0], 4)
    assert [len(s) for s in few] == [1, 1, 0, 0]


# --------------------------------------------------------------------- world size 1 vs 2

@pytest.fixture(scope="module")
def one_process(npz):
    z = np.load(npz)
    out = {}
    for retrain in (False, True):
        r = sweep(z["x"], z["y"], GRID, X_test=z["xt"], y_test=z["yt"], retrain=retrain, **KW)
        out[retrain] = r.to_dict()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("retrain", [False, True])
def test_two_processes_python_api_equal_one(tmp_path, npz, one_process, retrain):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    res = tmp_path / "two.json"
    out, _ = _spawn(script, [npz, res, "ok", json.dumps(GRID), int(retrain)])
    assert [rc for rc, _ in out] == [0, 0], out
    two = json.loads(res.read_text())
    assert two["settings"]["world_size"] == 2
    _same_sweep(one_process[retrain], two)
    one_best = one_process[retrain]["best_index"]
    assert all(f"done {r} {one_best}" in text for r, (_, text) in enumerate(out))
    shares = [int(line.split()[2]) for _, text in out for line in text.splitlines()
              if line.startswith("share ")]
    assert len(shares) == 2 and sum(shares) == 12 and max(shares) < 12   # really sharded


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["raise", "die"])
def test_a_failing_rank_fails_every_rank_in_bounded_time(tmp_path, npz, mode):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    out, took = _spawn(script, [npz, tmp_path / "x.json", mode, json.dumps(GRID), 0],
                       extra_env={"SEA_DIST_TIMEOUT": "20"})
    assert all(rc != 0 for rc, _ in out), out
    assert took < LIMIT_S
    assert not (tmp_path / "x.json").exists()
    if mode == "raise":                # both ranks raise the failing rank's error
        assert all("injected failure on rank 1" in text for _, text in out)
        assert "rank 1: injected failure" in out[0][1]


@pytest.mark.slow
def test_torchrun_sea_sweep_equals_one_process(tmp_path, npz, capsys):
    args = ["sweep", npz, "--test", npz, "--grid", "defaults", "--lr", "0.5", "2", "--alpha",
            "0.01", "0.05", "--eta", "0", "0.4", "0.8", "--epochs", "3", "--batch-size", "32",
            "--seed", "1", "--no-plot", "--no-progress"]
    from sea_kernels.cli import main as cli
    assert cli.main([*map(str, args), "--out", str(tmp_path / "one")]) == 0, capsys.readouterr()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          "-m", "sea_kernels.cli", *map(str, args), "--out", tmp_path / "two"],
                         env=_env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert two.returncode == 0, two.stdout + two.stderr
    a = json.loads((tmp_path / "one" / "sweep.json").read_text())
    b = json.loads((tmp_path / "two" / "sweep.json").read_text())
    _same_sweep(a, b)
    assert b["settings"]["world_size"] == 2 and a["settings"]["world_size"] == 1
    # only rank 0 prints: one announcement, one ranking, one "wrote" line
    assert sum(line.startswith("sweep: ") for line in two.stdout.splitlines()) == 1
    assert two.stdout.count("wrote ") == 1 and two.stdout.count("best on validation") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["model.pt", "sweep.csv",
                                                                    "sweep.json"]


# --------------------------------------------------------------------- group_size plumbing

def test_group_size_checked_before_training():
    x, y, _, _ = _data(n=40)
    for bad, exc in ((True, ParameterError), (1.5, ParameterError), (0, ValueError),
                     (-2, ValueError)):
        with pytest.raises(exc, match="group_size"):
            train_many(x, y, [{"eta": 0.4}], epochs=1, group_size=bad)
        with pytest.raises(exc, match="group_size"):
            sweep(x, y, {"eta": [0.4]}, epochs=1, group_size=bad)


def _fused_has_groups() -> bool:
    import inspect

    import sea_kernels
    return "group_size" in inspect.signature(sea_kernels.fused_sea).parameters


def _alone(x, y, cfg, *, epochs, batch_size, random_state, num_classes, group_size):
    """One configuration by the explicit loop: fused_sea(group_size=G) + torch.optim.SGD."""
    import sea_kernels
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.SGD([w], lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(random_state)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for lo in range(0, x.shape[0], batch_size):
            idx = perm[lo:lo + batch_size]
            opt.zero_grad()
            sea_kernels.fused_sea(x[idx], y[idx], w, alpha=cfg["alpha"], eta=cfg["eta"],
                                  lam=cfg["lam"], delta=cfg["delta"], group_size=group_size,
                                  backend="torch").backward()
            opt.step()
    return w.detach()


@pytest.mark.skipif(not _fused_has_groups(), reason="fused_sea has no group_size yet")
@pytest.mark.parametrize("group_size", [1, 7, 16, 64])
def test_grouped_train_many_equals_grouped_training_alone(group_size):
    """float64, 90 rows, batch 32 (last batch 26): groups of 7 leave a shorter last group, 16
    divides the batch, 64 ≥ b is the whole batch, 1 makes x̃ = Π(x)."""
    x, y, _, _ = _data(n=90, d=12, c=3, seed=3)
    x = torch.from_numpy(x).double()
    x = x / x.norm(dim=1, keepdim=True)
    y = torch.from_numpy(y)
    cfgs = [{"lr": 0.5, "eta": 0.0}, {"lr": 0.5, "eta": 0.8, "alpha": 0.05},
            {"lr": 1.0, "eta": 0.4, "delta": 1.0, "lam": 1.0}]
    many = train_many(x, y, cfgs, epochs=2, batch_size=32, random_state=5, num_classes=3,
                      group_size=group_size)
    for k, cfg in enumerate(many.configs):
        w = _alone(x, y, cfg, epochs=2, batch_size=32, random_state=5, num_classes=3,
                   group_size=group_size)
        torch.testing.assert_close(many.weights[k], w, rtol=1e-9, atol=1e-11)
    if group_size < 26:   # the groups change the η > 0 result (not silently ignored)
        whole = train_many(x, y, cfgs, epochs=2, batch_size=32, random_state=5, num_classes=3)
        assert not torch.allclose(whole.weights[1], many.weights[1], atol=1e-8)
        torch.testing.assert_close(whole.weights[0], many.weights[0], rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not _fused_has_groups(), reason="fused_sea has no group_size yet")
def test_grouped_sweep_scores_grouped_training(npz):
    """sweep(group_size=G) trains the grid grouped: each configuration's validation accuracy is
    that of the grouped single-configuration loop on the same hold-out; the setting is kept."""
    from sea_kernels.sweeps.engine import prepare
    from sea_kernels.sweeps.search import stratified_split
    z = np.load(npz)
    x64 = z["x"].astype(np.float64)
    grid = {"lr": [0.25, 0.5], "eta": [0.0, 0.8]}
    r = sweep(x64, z["y"], grid, retrain=False, group_size=8, epochs=2, batch_size=32,
              random_state=2)
    assert r.settings["group_size"] == 8 and not r.diverged.any()
    xp, y = prepare(x64), torch.from_numpy(z["y"])
    tr, va = stratified_split(y, 0.2, 2)
    for k, cfg in enumerate(r.configs):
        w = _alone(xp[tr], y[tr], cfg, epochs=2, batch_size=32, random_state=2, num_classes=4,
                   group_size=8)
        acc = ((xp[va] @ w).argmax(dim=1) == y[va]).double().mean().item()
        assert r.val_top1[k] == pytest.approx(acc, abs=1e-12)


def test_grouped_sweep_retrains_with_the_group_size(npz):
    """The retrained winner is SeAClassifier(group_size=G) with the winner's parameters."""
    from sea_kernels.train.estimator import SeAClassifier
    z = np.load(npz)
    x, y = z["x"][:120].astype(np.float64), z["y"][:120]
    r = sweep(x, y, {"lr": [0.25], "eta": [0.0, 0.8]}, group_size=8, epochs=2, batch_size=32,
              random_state=2, backend="torch")
    assert r.model.get_params()["group_size"] == 8
    ref = SeAClassifier(augment="sea", epochs=2, batch_size=32, random_state=2, backend="torch",
                        group_size=8, **r.best).fit(x, y)
    np.testing.assert_allclose(r.model.coef_, ref.coef_, rtol=1e-12, atol=1e-14)
