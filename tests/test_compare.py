"""`sea_kernels.compare` and `sea compare`: several seeds per method, mean ± std, Student-t
intervals and paired differences, checked against numpy / scipy on the per-seed values of a small
real CIFAR-10 slice; the t-table fallback; bad arguments; the command end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from data_fixtures import cifar_slice
from scipy import stats as sstats

import sea_kernels.compare as cmp
from sea_kernels.compare import CompareResult, compare, summarize, t_quantile
from sea_kernels.compare import statistics as seed_stats

PNG = b"\x89PNG\r\n\x1a\n"
GRID = {"lr": [0.5, 1.0], "eta": [0.0, 0.4], "lam": [0.1]}


def _slice():
    return cifar_slice(300, 150, seed=5)


@pytest.fixture(scope="module")
def two_seeds():
    xtr, ytr, xte, yte = _slice()
    return compare(xtr, ytr, methods=("none", "sea"), seeds=[3, 8], grid=GRID, X_test=xte,
                   y_test=yte, epochs=2, device="cpu")


def _t_interval(v):
    v = np.asarray(v, dtype=float)
    return sstats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sstats.sem(v))


# ------------------------------------------------------------------------------ statistics

@pytest.mark.slow
def test_two_seeds_stats_match_numpy_and_scipy(two_seeds):
    r = two_seeds
    assert r.methods == ("none", "sea") and r.seeds == (3, 8) and len(r.runs) == 4
    for m in r.methods:
        for metric in ("top1", "mean_per_class"):
            v = np.array([r.run(m, s)[f"test_{metric}"] for s in r.seeds])
            assert np.all((v > 0.2) & (v <= 1))           # 10 classes: well above chance
            np.testing.assert_array_equal(r.values(m, metric), v)
            st = r.stats(m, metric)
            assert st.n == 2 and (st.note is None or "zero width" in st.note)
            assert st.mean == pytest.approx(np.mean(v), abs=1e-15)
            assert st.std == pytest.approx(np.std(v, ddof=1), abs=1e-15)
            assert st.ci95 == pytest.approx(_t_interval(v), abs=1e-12)
            assert r.mean(m, metric) == st.mean and r.ci95(m, metric) == st.ci95
    # the paired difference: seed by seed, the same seeds
    d = np.array([r.run("sea", s)["test_top1"] - r.run("none", s)["test_top1"]
                  for s in r.seeds])
    np.testing.assert_allclose(r.differences("sea"), d, atol=1e-15)
    st = r.stats("sea", paired=True)
    assert st.values == pytest.approx(tuple(d), abs=1e-15)
    assert st.mean == pytest.approx(d.mean(), abs=1e-15)
    assert st.std == pytest.approx(np.std(d, ddof=1), abs=1e-15)
    if np.std(d) > 0:
        assert st.ci95 == pytest.approx(_t_interval(d), abs=1e-12)
    # each run its own selection: none at η = 0, sea at η > 0, both from the sweep grid
    for s in r.seeds:
        assert r.run("none", s)["params"]["eta"] == 0 and r.run("sea", s)["params"]["eta"] > 0
        assert r.run("none", s)["params"]["lr"] in GRID["lr"]
    assert r.settings["merged_sweep"] is True
    assert len(r.sweeps[3]) == 1 and len(r.sweeps[3][0].configs) == 4


@pytest.mark.slow
def test_the_seed_drives_the_split_and_the_shuffles(two_seeds):
    """A run is reproduced by hand: the seed's stratified split, the winner refitted on
    train + validation with the same seed, scored on the test set."""
    from sea_kernels.data.features import prepare_features
    from sea_kernels.sweeps.search import stratified_split
    from sea_kernels.train.estimator import SeAClassifier
    xtr, ytr, xte, yte = _slice()
    seed = 8
    run = two_seeds.run("sea", seed)
    x = prepare_features(xtr)
    tr, va = stratified_split(ytr, 0.2, random_state=seed)
    x_fit = np.concatenate([x[tr].numpy(), x[va].numpy()])
    y_fit = np.concatenate([ytr[tr], ytr[va]])
    clf = SeAClassifier(augment="sea", epochs=2, random_state=seed, **run["params"])
    clf.fit(x_fit, y_fit)
    assert clf.score(prepare_features(xte), yte) == pytest.approx(run["test_top1"], abs=1e-12)
    assert not np.array_equal(stratified_split(ytr, 0.2, 3)[1], va)   # other seed, other split


@pytest.mark.slow
def test_json_round_trip_table_and_plot(two_seeds, tmp_path):
    r = two_seeds
    path = r.to_json(tmp_path / "compare.json")
    d = json.loads(path.read_text())
    assert d["format"] == cmp.FORMAT and d["seeds"] == [3, 8]
    for m in r.methods:
        s = d["summary"][m]["top1"]
        st = r.stats(m)
        assert s["values"] == list(st.values)
        assert (s["mean"], s["std"], s["ci95"]) == (st.mean, st.std, list(st.ci95))
    assert d["differences"]["sea"]["top1"]["mean"] == r.mean("sea", paired=True)
    assert [x["seed"] for x in d["runs"]] == [3, 3, 8, 8]
    assert d["pairs"] == [] and d["settings"]["head"] == "linear"
    back = CompareResult.from_json(path)
    assert back.methods == r.methods and back.seeds == r.seeds and back.pairs == ()
    for m in r.methods:
        for metric in ("top1", "mean_per_class"):
            assert back.stats(m, metric) == r.stats(m, metric)
            assert back.stats(m, metric, paired=True) == r.stats(m, metric, paired=True)
        assert [x["params"] for x in back.runs] == [x["params"] for x in r.runs]
    text = r.table()
    assert "paired difference to none" in text and "sea − none" in text and "95% CI" in text
    png = r.plot(tmp_path / "compare.png")
    assert png.read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="format"):
        CompareResult.from_dict({"format": "something else"})


@pytest.mark.slow
def test_one_seed_has_no_interval_and_says_so(tmp_path):
    xtr, ytr, xte, yte = _slice()
    r = compare(xtr, ytr, methods=["none", "sea"], seeds=[4], grid=GRID, X_test=xte, y_test=yte,
                epochs=1, device="cpu")
    for paired in (False, True):
        st = r.stats("sea", paired=paired)
        assert st.n == 1 and math.isfinite(st.mean)
        assert math.isnan(st.std) and all(math.isnan(v) for v in st.ci95)
        assert math.isnan(st.halfwidth) and "one seed" in st.note
    text = r.table()
    assert "n/a" in text and "note: one seed" in text
    d = json.loads(r.to_json(tmp_path / "c.json").read_text())
    assert d["summary"]["sea"]["top1"]["ci95"] == [None, None]
    assert "one seed" in d["summary"]["sea"]["top1"]["note"]
    assert r.plot(tmp_path / "c.png").read_bytes()[:8] == PNG


def test_summarize_edge_cases():
    one = summarize([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and "one seed" in one.note
    failed = summarize([0.5, float("nan"), 0.7])
    assert failed.n == 2 and failed.mean == pytest.approx(0.6) and "1 of 3 seeds" in failed.note
    assert failed.ci95 == pytest.approx(_t_interval([0.5, 0.7]))
    none = summarize([float("nan")])
    assert none.n == 0 and math.isnan(none.mean) and "no successful run" in none.note
    same = summarize([0.25, 0.25, 0.25])
    assert same.std == 0 and same.ci95 == (0.25, 0.25) and "zero width" in same.note


# ------------------------------------------------------------------------------ t quantiles

def test_t_table_fallback_agrees_with_scipy():
    for df in [*range(1, 31), 31, 35, 40, 60, 100, 120, 500, 10_000]:
        ref = sstats.t.ppf(0.975, df)
        assert t_quantile(df, use_scipy=False) == pytest.approx(ref, abs=1e-6), df
        assert t_quantile(df) == pytest.approx(ref, abs=1e-12), df
    v = [0.91, 0.93, 0.925, 0.94]
    assert summarize(v, use_scipy=False).ci95 == pytest.approx(summarize(v).ci95, abs=1e-7)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0)


def test_t_quantile_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.stats", None)      # import fails: the table is used
    assert t_quantile(4) == seed_stats._T975[4]
    with pytest.raises(ImportError):
        t_quantile(4, use_scipy=True)


# ------------------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("methods, match", [
    (("none", "nope"), "methods"), (("sea", "mixup"), "baseline"), ((), "methods"),
    (("none", "sea", "sea"), "methods"), ("sea", "methods"), ((1, "none"), "methods")])
def test_bad_methods_rejected(methods, match):
    xtr, ytr, xte, yte = _slice()
    with pytest.raises(ValueError, match=match):
        compare(xtr, ytr, methods=methods, seeds=2, X_test=xte, y_test=yte, epochs=1)


@pytest.mark.parametrize("seeds", [0, -1, [], [1, 1], [1.5], True, "3", [None], [2 ** 64], 2.0])
def test_bad_seeds_rejected(seeds):
    xtr, ytr, xte, yte = _slice()
    with pytest.raises(ValueError, match="seeds"):
        compare(xtr, ytr, methods=("none", "sea"), seeds=seeds, X_test=xte, y_test=yte,
                epochs=1)


@pytest.mark.parametrize("grid, match", [
    ({"eta": [0.0]}, "η > 0"), ({"foo": [1]}, "unknown axis"), ({"lr": []}, "empty"),
    ({"lr": [-1.0]}, "lr"), ({"mixup": {"eta": [0.0]}}, "η > 0"),
    ({"isda": [{"lr": 1.0}]}, "not among methods"), ({"none": {"eta": [0.4]}}, "η = 0"),
    ({"sea": [{"lr": 1.0}]}, "sweep"), ({"mixup": [{"lr": 1.0, "epochs": 3}]}, "set by compare"),
    ({"mixup": {"me_ada_lr": [0.1]}}, "no axis")])
def test_bad_grids_rejected_before_training(grid, match):
    xtr, ytr, xte, yte = _slice()
    with pytest.raises(ValueError, match=match):
        compare(xtr, ytr, methods=("none", "sea", "mixup"), seeds=2, grid=grid, X_test=xte,
                y_test=yte, epochs=1)


def test_test_set_required_and_checked():
    xtr, ytr, xte, yte = _slice()
    with pytest.raises(ValueError, match="test set"):
        compare(xtr, ytr, methods=("none", "sea"), seeds=1, grid=GRID, epochs=1)
    with pytest.raises(ValueError, match="y_test"):
        compare(xtr, ytr, methods=("none", "sea"), seeds=1, grid=GRID, X_test=xte,
                y_test=yte + 100, epochs=1)


def test_plan_resolves_the_candidates():
    p = cmp.plan(("none", "sea", "mixup", "adv", "me_ada", "isda"), 2,
                 {"lr": [0.5, 1.0], "eta": [0.0, 0.2, 0.4], "lam": [0.1, 1.0],
                  "adv": {"eta": [0.05]}}, epochs=3)
    assert p.seeds == (0, 1)
    assert p.spaces["none"] == ("sweep", {"lr": [0.5, 1.0], "weight_decay": [1e-6],
                                          "lam": [0.1, 1.0], "delta": [0.0], "eta": [0.0]})
    assert p.spaces["sea"][1]["eta"] == [0.2, 0.4]
    assert p.merged_sweep()["eta"] == [0.0, 0.2, 0.4]
    assert p.n_candidates("mixup") == 2 * 2 * 2
    assert {c["eta"] for c in p.spaces["adv"][1]} == {0.05}
    assert {c["me_ada_lr"] for c in p.spaces["me_ada"][1]} == set(cmp.ME_ADA_ASCENT_STEPS)
    assert all("eta" not in c for c in p.spaces["isda"][1])


@pytest.mark.slow
def test_anchored_candidates_see_the_seeds_picks():
    xtr, ytr, xte, yte = _slice()
    seen = []

    def mixup(picked):
        seen.append(dict(picked))
        return [dict(lr=picked["none"]["lr"], lam=picked["sea"]["lam"], eta=0.4)]

    r = compare(xtr, ytr, methods=("none", "mixup", "sea"), seeds=2, grid={**GRID, "mixup": mixup},
                X_test=xte, y_test=yte, epochs=1, device="cpu")
    assert r.methods == ("none", "mixup", "sea") and len(seen) == 2
    for s, picked in zip(r.seeds, seen):
        assert picked["none"] == r.run("none", s)["params"]
        assert r.run("mixup", s)["params"]["lr"] == picked["none"]["lr"]
        assert r.run("mixup", s)["candidates"] == 1
    assert "mixup − none" in r.table()


# ------------------------------------------------------------------------------ sea compare

def _harness():
    """A `sea`-like parser with only the compare command (main.py registers it for real)."""
    from sea_kernels.cli import compare as command
    from sea_kernels.cli.arguments import Parser
    p = Parser(prog="sea")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    command.add_parser(sub)
    return p


def _run(argv):
    args = _harness().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def slice_npz(tmp_path_factory):
    xtr, ytr, xte, yte = _slice()
    path = tmp_path_factory.mktemp("cmp") / "slice.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


@pytest.mark.slow
def test_sea_compare_end_to_end(slice_npz, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = _run(["compare", slice_npz, "--methods", "none", "sea", "--seeds", 2, "--lr", 0.5, 1,
                 "--eta", 0, 0.4, "--lam", 0.1, "--epochs", 2, "--device", "cpu",
                 "--no-progress", "--out", out])
    stdout = capsys.readouterr().out
    assert code == 0
    assert stdout.startswith("compare: 2 methods (candidates per seed: none 2, sea 2) × 2 seeds")
    assert "paired difference to none" in stdout and "sea − none" in stdout
    assert "seed 1 sea:" in stdout and "wrote" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.png"]
    d = json.loads((out / "compare.json").read_text())
    assert d["seeds"] == [0, 1] and d["settings"]["epochs"] == 2
    r = CompareResult.from_json(out / "compare.json")
    assert d["summary"]["sea"]["top1"]["mean"] == pytest.approx(np.mean(r.values("sea")))
    assert (out / "compare.png").read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".cmp.*"))            # the staging folder is gone


@pytest.mark.parametrize("argv, match", [
    (["--seeds", 0], "seeds"), (["--seeds", 1, 1], "seeds"), (["--methods", "sea", "mixup"],
                                                            "baseline"),
    (["--eta", 0], "η > 0"), (["--adv-eta", 0.1], "adv"), (["--epochs", 0], "epochs"),
    (["--lr", -1], "lr"), (["--group-size", 0], "group_size")])
def test_sea_compare_bad_options_before_any_data(tmp_path, argv, match):
    missing = tmp_path / "absent.npz"             # never read: the options fail first
    with pytest.raises(ValueError, match=match):
        _run(["compare", missing, "--out", tmp_path / "o", *argv])
    assert not (tmp_path / "o").exists()


def test_sea_compare_needs_a_test_set(tmp_path):
    from sea_kernels.cli.errors import UsageError
    xtr, ytr, _, _ = _slice()
    path = tmp_path / "train_only.npz"
    np.savez(path, x=xtr, y=ytr)
    with pytest.raises(UsageError, match="test set"):
        _run(["compare", path, "--seeds", 1, "--out", tmp_path / "o"])
    assert not (tmp_path / "o").exists()


def test_compare_parser_imports_no_torch_or_numpy():
    code = ("import sys\nfrom sea_kernels.cli import compare\nfrom sea_kernels.cli.arguments "
            "import "
            "Parser\np = Parser(prog='sea')\ncompare.add_parser(p.add_subparsers())\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_cli_defaults_are_the_package_defaults():
    from sea_kernels.cli import compare as command
    args = _harness().parse_args(["compare", "x.npz"])
    assert command.methods(args) == list(cmp.DEFAULT_METHODS)
    assert command.grid(args) == cmp.DEFAULT_GRID and command.seeds(args) == 3
    assert command._DEFAULTS_HELP["methods"] == " ".join(cmp.DEFAULT_METHODS)
    for k, v in cmp.DEFAULT_GRID.items():
        assert command._DEFAULTS_HELP[k] == " ".join(f"{x:g}" for x in v)


def _synthetic(seeds=(0, 1, 2)):
    """A CompareResult from made-up per-seed accuracies (no training)."""
    rng = np.random.default_rng(0)
    runs = [{"seed": s, "method": m, "params": {"lr": 1.0}, "varied": ["lr"], "val": 0.9,
             "test_top1": 0.9 + 0.01 * (m == "sea") + 0.005 * rng.standard_normal(),
             "test_mean_per_class": 0.9, "candidates": 1, "diverged": 0, "selection": "x",
             "select_s": 0.0, "fit_s": 0.0, "error": None}
            for s in seeds for m in ("none", "sea")]
    return CompareResult(methods=("none", "sea"), seeds=tuple(seeds), baseline="none",
                         metric="top1", runs=runs)


def test_plot_leaves_the_backend_alone_and_never_imports_pyplot(tmp_path):
    """Figure + FigureCanvasAgg: a user's matplotlib backend stays, pyplot is not imported."""
    path = tmp_path / "c.json"
    _synthetic().to_json(path)
    code = ("import sys, matplotlib\nmatplotlib.use('svg')\n"
            "from sea_kernels.compare import CompareResult\n"
            f"r = CompareResult.from_json({str(path)!r})\n"
            f"r.plot({str(tmp_path / 'c.png')!r})\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
            "assert 'matplotlib.pyplot' not in sys.modules\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.png"]


def test_group_size_reaches_the_sweep_and_every_fit():
    """compare(group_size=G): the sea run's refit is SeAClassifier(group_size=G) on the seed's
    train + validation rows (reproduced by hand), recorded in settings; bad values refused
    before any training."""
    from sea_kernels.data.features import prepare_features
    from sea_kernels.sweeps.search import stratified_split
    from sea_kernels.train.estimator import SeAClassifier
    xtr, ytr, xte, yte = cifar_slice(120, 60, seed=2)
    grid = {"lr": [1.0], "eta": [0.0, 0.4], "lam": [0.1]}
    r = compare(xtr, ytr, methods=("none", "sea"), seeds=[4], grid=grid, X_test=xte,
                y_test=yte, epochs=2, batch_size=32, device="cpu", group_size=8)
    assert r.settings["group_size"] == 8
    run = r.run("sea", 4)
    x = prepare_features(xtr)
    tr, va = stratified_split(ytr, 0.2, random_state=4)
    x_fit = np.concatenate([x[tr].numpy(), x[va].numpy()])
    y_fit = np.concatenate([ytr[tr], ytr[va]])
    kw = dict(augment="sea", epochs=2, batch_size=32, random_state=4, **run["params"])
    grouped = SeAClassifier(group_size=8, **kw).fit(x_fit, y_fit)
    assert grouped.score(prepare_features(xte), yte) == pytest.approx(run["test_top1"], abs=1e-12)
    whole = SeAClassifier(**kw).fit(x_fit, y_fit)
    assert not np.allclose(whole.W_.numpy(), grouped.W_.numpy())   # the groups did something
    for bad in (0, True, 2.5):
        with pytest.raises((ValueError, TypeError), match="group_size"):
            compare(xtr, ytr, methods=("none", "sea"), seeds=1, grid=grid, X_test=xte,
                    y_test=yte, epochs=1, device="cpu", group_size=bad)


def test_extra_pairs_paired_against_their_reference(tmp_path):
    """`pairs` (head "mlp": mlp_sea − linear_sea): the per-seed differences to that reference,
    summarised as scipy does, in the table, compare.json (round trip) and the plot."""
    rng = np.random.default_rng(1)
    methods = ("mlp_ce", "mlp_sea", "linear_sea")
    runs = [{"seed": s, "method": m, "params": {"lr": 1.0}, "varied": ["lr"], "val": 0.9,
             "test_top1": 0.8 + 0.01 * rng.standard_normal(), "test_mean_per_class": 0.8,
             "candidates": 1, "diverged": 0, "selection": "x", "select_s": 0.0, "fit_s": 0.0,
             "error": None} for s in (0, 1, 2) for m in methods]
    r = CompareResult(methods=methods, seeds=(0, 1, 2), baseline="mlp_ce", metric="top1",
                      runs=runs, pairs=(("mlp_sea", "linear_sea"),))
    diff = r.values("mlp_sea") - r.values("linear_sea")
    st = r.stats("mlp_sea", paired=True, reference="linear_sea")
    assert st.values == tuple(diff) and st.mean == pytest.approx(diff.mean())
    assert st.ci95 == pytest.approx(_t_interval(diff))
    assert r.ci95("mlp_sea", paired=True) == pytest.approx(
        _t_interval(r.values("mlp_sea") - r.values("mlp_ce")))
    text = r.table()
    assert "paired difference mlp_sea − linear_sea" in text and "linear_sea − mlp_ce" in text
    d = json.loads(r.to_json(tmp_path / "c.json").read_text())
    assert d["pairs"][0]["method"] == "mlp_sea" and d["pairs"][0]["reference"] == "linear_sea"
    assert d["pairs"][0]["top1"]["mean"] == st.mean
    back = CompareResult.from_json(tmp_path / "c.json")
    assert back.pairs == r.pairs and back.table() == r.table()
    assert r.plot(tmp_path / "c.png").read_bytes()[:8] == PNG
