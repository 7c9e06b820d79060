"""The sweep engine: every configuration of the batched engine equals training it alone.

The reference for one configuration is the explicit loop a user writes (the trainer's
conventions): zero weights, `perm = torch.randperm(n, generator=g)` per epoch, consecutive slices
of `batch_size` (last partial batch kept), `fused_sea(..., reduction="mean")` and
`torch.optim.SGD(lr, momentum=0.9, weight_decay=wd)`.
"""
from __future__ import annotations

import csv
import importlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import sea_kernels
from sea_kernels import params
from sea_kernels.op import call
from sea_kernels.op.batched import Hyper, batched_sea_grad
from sea_kernels.op.torch_backend import sea_forward
from sea_kernels.sweeps.engine import prepare, train_many
from sea_kernels.sweeps.grid import DEFAULTS, PARAMS, expand_grid, normalize_config
from sea_kernels.sweeps.results import SweepResult
from sea_kernels.sweeps.search import stratified_split, sweep
from sea_kernels.train import divergence, metrics
from sea_kernels.train.estimator import SeAClassifier


def _data_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else Path("/work/shared/data")


FEATURES = _data_dir() / "cifar10-efficientnet-lite0" / "features.npz"


@pytest.fixture(scope="module")
def cifar():
    """600 shuffled training rows of the CIFAR-10 EfficientNet-Lite0 features (unit rows) and a
    300-row test slice; float64 numpy."""
    if not FEATURES.exists():
        pytest.skip(f"CIFAR-10 features not found at {FEATURES} (shared data set absent)")
    z = np.load(FEATURES)
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(z["y_train"]))[:600]
    te = rng.permutation(len(z["y_test"]))[:300]
    x = z["x_train"][tr].astype(np.float64)
    xt = z["x_test"][te].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xt /= np.linalg.norm(xt, axis=1, keepdims=True)
    return x, z["y_train"][tr].astype(np.int64), xt, z["y_test"][te].astype(np.int64)


SMALL_GRID = {"lr": [0.5, 4.0], "weight_decay": [0.0, 1e-4], "alpha": [0.01, 0.05],
              "lam": [0.1, 1.0], "delta": [0.0, 1.0], "eta": [0.0, 0.8]}


def train_alone(x, y, cfg, *, epochs, batch_size, random_state, num_classes):
    """One configuration, the explicit fused_sea + torch.optim.SGD loop, with SeAClassifier's
    collapse rule written out: stop after an epoch whose mean batch loss is above
    divergence.COLLAPSE_FACTOR × the all-zero classifier's loss λ·log(1 + (C−1)e^{δ/λ}).
    Returns (W, stopped)."""
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.SGD([w], lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(random_state)
    zero = cfg["lam"] * math.log1p((num_classes - 1) * math.exp(cfg["delta"] / cfg["lam"]))
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        losses = []
        for lo in range(0, n, batch_size):
            idx = perm[lo:lo + batch_size]
            opt.zero_grad()
            loss = sea_kernels.fused_sea(x[idx], y[idx], w, alpha=cfg["alpha"], eta=cfg["eta"],
                                         lam=cfg["lam"], delta=cfg["delta"])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if sum(losses) / len(losses) > divergence.COLLAPSE_FACTOR * zero:
            return w.detach(), True
    return w.detach(), False


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def solo64(cifar):
    """Each SMALL_GRID configuration trained alone in float64 (2 epochs, batch 64 → 9 full
    batches and one of 24)."""
    x, y = torch.from_numpy(cifar[0]), torch.from_numpy(cifar[1])
    configs = expand_grid(SMALL_GRID)
    return configs, [train_alone(x, y, c, epochs=2, batch_size=64, random_state=3,
                                 num_classes=10) for c in configs]


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_batched_equals_alone_float64(cifar, solo64, chunk_size):
    configs, want = solo64
    res = train_many(cifar[0], cifar[1], configs, epochs=2, batch_size=64, random_state=3,
                        num_classes=10, chunk_size=chunk_size)
    assert res.weights.dtype == torch.float64 and res.weights.shape == (64, 1280, 10)
    stopped = np.array([s for _, s in want])
    assert 0 < stopped.sum() < len(configs)  # the grid exercises the collapse rule both ways
    np.testing.assert_array_equal(res.diverged, stopped)
    errs = [_rel(res.weights[i], want[i][0]) for i in range(len(configs))]
    assert max(errs) < 1e-10, max(errs)
    assert res.steps == 2 * 10


def test_batched_equals_alone_float32(cifar, solo64):
    configs, _ = solo64
    pick = [0, 9, 22, 37, 50, 63]  # a few configurations alone in float32 (both η groups)
    x32 = torch.from_numpy(cifar[0]).float()
    y = torch.from_numpy(cifar[1])
    res = train_many(x32, y, configs, epochs=2, batch_size=64, random_state=3, chunk_size=5)
    assert res.weights.dtype == torch.float32
    for i in pick:
        want, _ = train_alone(x32, y, configs[i], epochs=2, batch_size=64, random_state=3,
                              num_classes=10)
        assert _rel(res.weights[i], want) < 1e-4, (i, configs[i])


def test_equals_seaclassifier(cifar):
    """The trainer's conventions (features, labels, shuffling, SGD) are the engine's."""
    x, y = cifar[0][:300], cifar[1][:300] + 3  # labels remapped through classes_ by the trainer
    configs = [dict(lr=2.0, weight_decay=1e-4, alpha=0.02, lam=0.1, delta=1.0, eta=0.4),
               dict(lr=0.5, weight_decay=0.0, alpha=0.01, lam=1.0, delta=0.0, eta=0.0)]
    classes, y_idx = np.unique(y, return_inverse=True)
    res = train_many(prepare(x), y_idx, configs, epochs=2, batch_size=64, random_state=7)
    for i, cfg in enumerate(configs):
        clf = SeAClassifier(epochs=2, batch_size=64, random_state=7, **cfg).fit(x, y)
        assert _rel(res.weights[i], clf.W_) < 1e-10
        assert res.train_loss[-1, i] == pytest.approx(clf.history_[-1]["train_loss"], rel=1e-9)


def test_chunking_does_not_change_results(cifar):
    configs = expand_grid({"lr": [1.0], "alpha": [0.01, 0.02, 0.05], "eta": [0.0, 0.2, 0.8],
                              "delta": [0.0, 1.0]})
    x, y = torch.from_numpy(cifar[0][:200]), torch.from_numpy(cifar[1][:200])
    runs = [train_many(x, y, configs, epochs=1, batch_size=48, chunk_size=cs)
            for cs in (None, 1, 3, 7)]
    runs.append(train_many(x, y, configs, epochs=1, batch_size=48, max_chunk_bytes=1))
    for r in runs[1:]:
        assert _rel(r.weights, runs[0].weights) < 1e-12


def test_single_step_matches_torch_sea_corner_cases():
    """b = 1 (no other row), b = 2, C > 2b (the ‖A Wᵀ‖ path), d < b (ĝ = Q X instead of Q K),
    zero weights (p uniform)."""
    g = torch.Generator().manual_seed(0)
    cfgs = list(itertools.product([0.01, 0.05], [0.0, 0.4], [0.1, 1.0], [0.0, 1.0]))
    cfgs.sort(key=lambda t: t[1] > 0)
    nb = sum(t[1] == 0 for t in cfgs)
    hyper = Hyper(*(torch.tensor([t[j] for t in cfgs], dtype=torch.float64) for j in range(4)))
    for b, d, c, scale in ((1, 8, 3, 1.0), (2, 8, 3, 1.0), (7, 6, 30, 1.0), (40, 8, 3, 1.0),
                           (16, 20, 4, 0.0)):
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        x = torch.nn.functional.normalize(x, dim=1)
        y = torch.randint(0, c, (b,), generator=g)
        w = torch.randn(d, len(cfgs) * c, generator=g, dtype=torch.float64) * scale
        grad_t, loss = batched_sea_grad(x, y, w.T.contiguous(), hyper, c, n_baseline=nb,
                                        chunk_size=3)
        grad = grad_t.T
        for i, (a, e, lam, de) in enumerate(cfgs):
            want_l, want_g, _ = sea_forward(x, y, w[:, i * c:(i + 1) * c],
                                            torch.full((b,), 1.0 / b, dtype=torch.float64),
                                            call.Hyper(a, e, lam, de))
            assert torch.allclose(grad[:, i * c:(i + 1) * c], want_g, rtol=1e-12, atol=1e-14)
            assert torch.allclose(loss[i], want_l.mean(), rtol=1e-12, atol=1e-14)


def test_diverging_config_is_flagged_and_isolated(cifar):
    x = torch.from_numpy(cifar[0][:256]).float()
    y = torch.from_numpy(cifar[1][:256])
    configs = [dict(lr=1.0, eta=0.4), dict(lr=1e38, eta=0.4), dict(lr=2.0, eta=0.0),
               dict(lr=1e38, eta=0.0), dict(lr=0.5, eta=0.8, alpha=0.02)]
    res = train_many(x, y, configs, epochs=2, batch_size=64, eval_sets={"train": (x, y)})
    assert res.diverged.tolist() == [False, True, False, True, False]
    assert (res.diverged_step[[1, 3]] >= 0).all()
    assert np.isnan(res.history["train"]["top1"][-1][[1, 3]]).all()
    assert np.isfinite(res.history["train"]["top1"][-1][[0, 2, 4]]).all()
    assert np.isnan(res.train_loss[-1][[1, 3]]).all()
    for i in (0, 2, 4):
        want, stopped = train_alone(x, y, normalize_config(configs[i]), epochs=2,
                                    batch_size=64, random_state=0, num_classes=10)
        assert not stopped
        assert _rel(res.weights[i], want) < 1e-4


def test_eval_history_and_metrics(cifar):
    x, y, xt, yt = cifar
    configs = [dict(lr=1.0, eta=e) for e in (0.0, 0.4)]
    res = train_many(x[:300], y[:300], configs, epochs=3, batch_size=100, random_state=1,
                        eval_sets={"test": (xt, yt), "train": (x[:300], y[:300])}, eval_every=2,
                        num_classes=10)
    assert res.eval_epochs == [2, 3]
    assert res.history["test"]["top1"].shape == (2, 2)
    for i in range(2):
        pred = (torch.from_numpy(xt) @ res.weights[i]).argmax(1).numpy()
        assert res.history["test"]["top1"][-1, i] == pytest.approx(metrics.top1(pred, yt))
        assert res.history["test"]["mean_per_class"][-1, i] == pytest.approx(
            metrics.mean_per_class(pred, yt))
    assert res.history["train"]["top1"][-1].min() > 0.5  # it learns


def test_stratified_split_is_stratified_and_deterministic():
    y = np.repeat(np.arange(4), [50, 30, 20, 7])
    tr, va = stratified_split(y, 0.2, random_state=5)
    tr2, va2 = stratified_split(y, 0.2, random_state=5)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, stratified_split(y, 0.2, random_state=6)[1])
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert np.bincount(y[va]).tolist() == [10, 6, 4, 1]
    assert (np.diff(va) > 0).all()


def _sweep_small(cifar, **kw):
    x, y, xt, yt = cifar
    grid = {"lr": [0.5, 2.0], "eta": [0.0, 0.4], "alpha": [0.02], "weight_decay": [1e-5]}
    return sweep(x[:400], y[:400], grid, X_test=xt, y_test=yt, epochs=2, batch_size=64,
                    random_state=2, **kw)


def test_sweep_picks_argmax_and_round_trips(cifar, tmp_path):
    res = _sweep_small(cifar, retrain=False)
    assert len(res.configs) == 4
    assert res.best_index == int(np.argmax(res.val_top1))
    assert res.best == res.configs[res.best_index]
    assert res.best_val == res.val_top1[res.best_index]
    assert 0.5 < res.test_top1 <= 1 and 0.5 < res.test_mean_per_class <= 1
    assert res.settings["n_val"] + res.settings["n_train"] == 400
    assert abs(res.settings["n_val"] - 80) <= 5  # 20% of each class, rounded per class
    assert "rank" in res.table() and str(res.best_index) in res.table(1)

    res.to_json(tmp_path / "out" / "s.json")
    back = SweepResult.from_json(tmp_path / "out" / "s.json")
    assert back.configs == res.configs and back.best == res.best
    np.testing.assert_array_equal(back.val_top1, res.val_top1)
    np.testing.assert_array_equal(back.val_mean_per_class, res.val_mean_per_class)
    np.testing.assert_array_equal(back.diverged, res.diverged)
    assert back.test_top1 == res.test_top1
    assert not list((tmp_path / "out").glob("*.tmp"))

    res.to_csv(tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 4
    for i, row in enumerate(rows):
        assert {p: float(row[p]) for p in PARAMS} == res.configs[i]
        assert float(row["val_top1"]) == res.val_top1[i]
        assert float(row["val_mean_per_class"]) == res.val_mean_per_class[i]
    assert int(rows[res.best_index]["rank"]) == 1


def test_sweep_ties_pick_first_and_diverged_never(cifar):
    res = SweepResult(configs=[{}] * 4, val_top1=np.array([0.5, 0.9, 0.9, np.nan]),
                         val_mean_per_class=np.zeros(4), diverged=np.array([0, 0, 0, 1], bool),
                         best=None, best_index=None, best_val=None)
    assert res.ranking().tolist() == [1, 2, 0, 3]
    x, y = cifar[0][:200].astype(np.float32), cifar[1][:200]
    out = sweep(x, y, {"lr": [1e38, 1.0], "eta": [0.4]}, epochs=1, batch_size=50,
                   retrain=False)
    assert out.diverged.tolist() == [True, False] and out.best_index == 1
    assert math.isnan(out.val_top1[0])


def test_sweep_with_explicit_val_and_retrain(cifar):
    x, y, xt, yt = cifar
    res = sweep(x[:300], y[:300], {"lr": [1.0], "eta": [0.0, 0.4]}, X_val=x[300:400],
                   y_val=y[300:400], X_test=xt, y_test=yt, epochs=1, batch_size=64,
                   metric="mean_per_class")
    assert res.model is not None
    assert res.best_index == int(np.argmax(res.val_mean_per_class))
    assert res.settings["n_val"] == 100
    assert 0 < res.test_top1 <= 1


@pytest.mark.parametrize("grid, match", [
    ({"lr": [1.0], "bogus": [1]}, "bogus"),
    ({"eta": []}, "eta"),
    ({"lr": [0.0]}, "lr"),
    ({"lr": [-1.0]}, "lr"),
    ({"alpha": [0.0]}, "alpha"),
    ({"lam": [float("nan")]}, "lam"),
    ({"weight_decay": [-1e-4]}, "weight_decay"),
    ({"wd": [1e-4], "weight_decay": [0.0]}, "weight_decay"),
    ({"eta": 0.4}, "eta"),
    ({"delta": ["x"]}, "delta"),
])
def test_bad_grid_raises(grid, match):
    with pytest.raises(ValueError, match=match):
        expand_grid(grid)


def test_grid_order_and_paper_grid():
    assert len(expand_grid(None)) == 1728
    cfgs = expand_grid({"eta": [0.0, 0.4], "wd": [0.0, 1e-4]})
    assert [(c["weight_decay"], c["eta"]) for c in cfgs] == [(0, 0), (0, 0.4), (1e-4, 0),
                                                             (1e-4, 0.4)]
    assert cfgs[0]["alpha"] == DEFAULTS["alpha"]


def test_defaults_are_the_trainers():
    got = SeAClassifier().get_params()
    assert {k: got[k] for k in PARAMS} == DEFAULTS == params.DEFAULTS
    assert got["epochs"] == params.EPOCHS and got["batch_size"] == params.BATCH_SIZE


def test_progress_bar_and_class_labels(cifar, capsys):
    x, y = cifar[0][:120], np.array(["cat", "dog", "eel"])[cifar[1][:120] % 3]
    res = sweep(x, y, {"lr": [1.0], "eta": [0.0, 0.4]}, epochs=1, batch_size=32,
                   retrain=False, progress=True, X_test=x[:30], y_test=y[:30])
    assert res.settings["num_classes"] == 3 and 0 <= res.test_top1 <= 1
    assert "sweep (2 configs)" in capsys.readouterr().err


def test_bad_arguments(cifar):
    x, y = cifar[0][:50], cifar[1][:50]
    with pytest.raises(ValueError, match="metric"):
        sweep(x, y, {"lr": [1.0]}, metric="top5")
    with pytest.raises(ValueError, match="epochs"):
        train_many(x, y, [{}], epochs=0)
    with pytest.raises(ValueError, match="configs"):
        train_many(x, y, [])
    with pytest.raises(ValueError, match="chunk_size"):
        train_many(x, y, [{}], chunk_size=0)
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        train_many(x, y, [{}], max_chunk_bytes=-5)
    with pytest.raises(ValueError, match="rows"):
        train_many(x, y[:10], [{}])
    with pytest.raises(ValueError, match="val_fraction"):
        sweep(x, y, {"lr": [1.0]}, val_fraction=1.5)


def test_label_and_value_errors_name_the_argument(cifar):
    x, y = cifar[0][:50], cifar[1][:50]
    with pytest.raises(ValueError, match="y must be a 1-D array of integer class indices"):
        train_many(x, y.astype(np.float64), [{}])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        train_many(x, y, [{}], num_classes=3)
    with pytest.raises(ValueError, match=r"eval_sets\['v'\] y must hold class indices ≥ 0"):
        train_many(x, y, [{}], eval_sets={"v": (x, -1 - y)})
    with pytest.raises(ValueError, match="y contains a single class"):
        sweep(x, np.zeros(50, dtype=int), {"lr": [1.0]})
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        sweep(x, y + 0.25, {"lr": [1.0]})           # the estimator's label rule
    with pytest.raises(ValueError, match="y_val has 4 labels but X_val has 5 rows"):
        sweep(x, y, {"lr": [1.0]}, X_val=x[:5], y_val=y[:4])
    with pytest.raises(ValueError, match=r"configs\[0\]: lr must be > 0"):
        train_many(x, y, [{"lr": 0}])
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        train_many(x, y, [{}], batch_size=2.0)       # ParameterError: a TypeError and ValueError
    with pytest.raises(ValueError, match="val_fraction must be < 1"):
        stratified_split(y, 1.0)


def test_public_names_come_from_the_sweep_module():
    """sea_kernels.sweep / train_many / SweepResult are looked up in sweeps.search, .engine and
    .results; the grid's names are params'."""
    grid = importlib.import_module("sea_kernels.sweeps.grid")
    assert sea_kernels.sweep is sweep
    assert sea_kernels.train_many is train_many
    assert sea_kernels.SweepResult is SweepResult
    assert grid.expand_grid is expand_grid and grid.PARAMS == params.GRID_PARAMS == PARAMS
    assert grid.PAPER_GRID is params.PAPER_GRID and grid.DEFAULTS is params.DEFAULTS
    assert normalize_config({"wd": 0, "lambda": 1}) == {**params.DEFAULTS, "weight_decay": 0.0,
                                                        "lam": 1.0}
