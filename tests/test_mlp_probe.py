"""The MLP probe (sea_kernels.train.mlp) and `compare(head="mlp")` / `sea compare --head mlp`:
shapes, determinism under a seed, the hidden layer trained through SeA's input gradient, η = 0 as
a hand-written F.normalize → F.linear → cross_entropy MLP (value, gradients, one AdamW step), bad
input named, the plan and the command line, and a small end-to-end comparison."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import cifar_slice

from sea_kernels.compare import LINEAR_SEA, CompareResult, plan
from sea_kernels.params import COMPARE_MLP_LRS, MLP_DEFAULTS, ParameterError
from sea_kernels.train.divergence import TrainingDiverged
from sea_kernels.train.mlp import MLPHead, MLPProbe

ROOT = Path(__file__).resolve().parents[1]


def _blobs(n=96, d=12, c=4, seed=0, labels=None):
    """Unit rows around c random centres (a learnable toy problem) and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 2
    y = torch.arange(n) % c
    x = F.normalize(centres[y] + torch.randn(n, d, generator=g), dim=1)
    y = y.numpy()
    return x.numpy(), (y if labels is None else np.asarray(labels)[y])


def _init(seed, d, c, hidden, **kw):
    """The head MLPProbe.fit initialises for `seed` (its documented rule)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPHead(d, c, hidden, **kw)


# ------------------------------------------------------------------------------ the trainer

def test_shapes_and_labels():
    x, y = _blobs(labels=["b", "a", "d", "c"])
    clf = MLPProbe(hidden=16, eta=0.4, epochs=3, batch_size=32, random_state=1).fit(x, y)
    assert clf.model_.fc.weight.shape == (16, 12) and clf.model_.out.weight.shape == (4, 16)
    assert clf.decision_function(x[:7]).shape == (7, 4)
    assert list(clf.classes_) == ["a", "b", "c", "d"]
    assert set(clf.predict(x)) <= set(y) and clf.predict(x).shape == (96,)
    assert [h["epoch"] for h in clf.history_] == [0, 1, 2]
    assert clf.score(x, y) > 0.5                           # learnable toy problem
    head = MLPHead(12, 4, 16)
    assert head(torch.randn(5, 12)).shape == (5, 4)
    assert head(torch.randn(5, 12), torch.tensor([0, 1, 2, 3, 0])).shape == ()


def test_deterministic_under_a_seed():
    x, y = _blobs()
    kw = dict(hidden=16, eta=0.4, epochs=2, batch_size=20)
    a = MLPProbe(random_state=3, **kw).fit(x, y)
    b = MLPProbe(random_state=3, **kw).fit(x, y)
    c = MLPProbe(random_state=4, **kw).fit(x, y)
    for (n, p), q, r in zip(a.model_.named_parameters(), b.model_.parameters(),
                            c.model_.parameters()):
        assert torch.equal(p, q), n
        assert not torch.equal(p, r), n
    assert a.history_ == b.history_
    before = torch.get_rng_state()
    MLPProbe(random_state=3, **kw).fit(x, y)
    assert torch.equal(torch.get_rng_state(), before)     # the global RNG is left alone


def test_hidden_layer_gets_the_sea_gradient_and_changes():
    x, y = _blobs()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    grads = {}
    for eta in (0.0, 0.8):
        head = _init(0, 12, 4, 16, eta=eta)
        head(xt, yt).backward()
        g = head.fc.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
        grads[eta] = g
    assert not torch.allclose(grads[0.0], grads[0.8])      # η moves the rows: another gradient
    clf = MLPProbe(hidden=16, eta=0.8, epochs=2, batch_size=32, random_state=0).fit(x, y)
    init = _init(0, 12, 4, 16)
    assert not torch.allclose(clf.model_.fc.weight, init.fc.weight)
    assert not torch.allclose(clf.model_.fc.bias, init.fc.bias)


def test_eta0_is_a_hand_written_cross_entropy_mlp():
    """η = 0: F.cross_entropy(F.linear(F.normalize(GELU(Ax + a)), V, b), y) in value and every
    gradient (float64), and fit's first step is that model's AdamW step."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 12, dtype=torch.float64), torch.randint(0, 5, (40,))
    head = MLPHead(12, 5, 16, eta=0.0).double()
    params = [p.detach().clone().requires_grad_(True) for p in
              (head.fc.weight, head.fc.bias, head.out.weight, head.out.bias)]
    A, a, V, b = params
    ref = F.cross_entropy(F.linear(F.normalize(F.gelu(F.linear(x, A, a)), dim=1), V, b), y)
    ref.backward()
    loss = head(x, y)
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    for p, q in zip((head.fc.weight, head.fc.bias, head.out.weight, head.out.bias), params):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
    moved = MLPHead(12, 5, 16, eta=0.8).double()
    moved.load_state_dict(head.state_dict())
    assert not torch.allclose(moved(x, y), ref)          # η > 0 is not cross-entropy

    xs, ys = _blobs(n=48)
    clf = MLPProbe(hidden=16, eta=0.0, epochs=1, batch_size=48, random_state=5).fit(xs, ys)
    init = _init(5, 12, 4, 16)
    A, a, V, b = (p.detach().clone().requires_grad_(True) for p in
                  (init.fc.weight, init.fc.bias, init.out.weight, init.out.bias))
    opt = torch.optim.AdamW([A, a, V, b], lr=MLP_DEFAULTS["lr"],
                            weight_decay=MLP_DEFAULTS["weight_decay"])
    xt = torch.as_tensor(xs)
    loss = F.cross_entropy(F.linear(F.normalize(F.gelu(F.linear(xt, A, a)), dim=1), V, b),
                           torch.as_tensor(ys))
    loss.backward()
    opt.step()
    got = clf.model_
    for p, q in zip((got.fc.weight, got.fc.bias, got.out.weight, got.out.bias), (A, a, V, b)):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert clf.history_[0]["train_loss"] == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("kw, match", [
    ({"hidden": 0}, "hidden"), ({"eta": -0.1}, "eta"), ({"lr": 0.0}, "lr"),
    ({"alpha": 0}, "alpha"), ({"weight_decay": -1}, "weight_decay"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"), ({"group_size": 0}, "group_size"),
    ({"random_state": -1}, "random_state"), ({"backend": "cuda"}, "backend"),
    ({"eta": "0.4"}, "eta"), ({"device": "nonesuch"}, "device")])
def test_bad_parameters_named_before_training(kw, match):
    x, y = _blobs()
    with pytest.raises(ValueError, match=match):
        MLPProbe(**kw).fit(x, y)


def test_bad_data_named():
    x, y = _blobs()
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X"):
        MLPProbe(epochs=1).fit(bad, y)
    with pytest.raises(ValueError, match="y"):
        MLPProbe(epochs=1).fit(x, y[:-1])
    with pytest.raises(ValueError, match="y"):
        MLPProbe(epochs=1).fit(x, np.zeros(len(y), dtype=np.int64))
    with pytest.raises(ValueError, match="not fitted"):
        MLPProbe().predict(x)
    clf = MLPProbe(hidden=8, epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(x[:, :5])
    with pytest.raises(ParameterError):
        MLPProbe(hidden=2.5).checked_params()


def test_divergence_raises():
    x, y = _blobs()
    with pytest.raises(TrainingDiverged, match="lr="):
        MLPProbe(hidden=16, lr=1e4, optimizer="sgd", epochs=3, batch_size=16).fit(x, y)


# ------------------------------------------------------------------------------ compare

def test_plan_of_the_mlp_head():
    p = plan(("none", "sea"), 2, {"lr": [0.5], "eta": [0.0, 0.2, 0.4], "lam": [0.1],
                                  "mlp_lr": [0.001, 0.01]}, epochs=2, head="mlp")
    assert p.head == "mlp" and p.methods == ("mlp_ce", "mlp_sea", LINEAR_SEA)
    assert p.baseline == "mlp_ce" and p.pairs == (("mlp_sea", LINEAR_SEA),)
    assert p.spaces["mlp_ce"] == ("mlp", [{"lr": 0.001, "eta": 0.0}, {"lr": 0.01, "eta": 0.0}])
    assert [c["eta"] for c in p.spaces["mlp_sea"][1]] == [0.2, 0.4, 0.2, 0.4]
    assert p.spaces[LINEAR_SEA][0] == "sweep" and p.spaces[LINEAR_SEA][1]["eta"] == [0.2, 0.4]
    assert p.merged_sweep() is None
    only = plan(("none",), 1, None, head="mlp")
    assert only.methods == ("mlp_ce",) and only.pairs == ()
    assert [c["lr"] for c in only.spaces["mlp_ce"][1]] == COMPARE_MLP_LRS
    assert plan(("none", "sea"), 1, None).pairs == ()    # head "linear": as before


@pytest.mark.parametrize("args, match", [
    ({"methods": ("none", "mixup")}, "methods"), ({"methods": ("sea",)}, "baseline"),
    ({"head": "cnn"}, "head"), ({"grid": {"mlp_lr": [-1.0]}}, "lr"),
    ({"grid": {"mlp_lr": [0.01]}, "head": "linear"}, "mlp_lr"),
    ({"grid": {"eta": [0.0]}}, "η > 0"), ({"grid": {"sea": {"lr": [1.0]}}}, "per-method"),
    ({"seeds": 0}, "seeds")])
def test_bad_mlp_plans_rejected(args, match):
    kw = {"methods": ("none", "sea"), "seeds": 1, "grid": None, "head": "mlp", **args}
    with pytest.raises(ValueError, match=match):
        plan(kw.pop("methods"), kw.pop("seeds"), kw.pop("grid"), **kw)


def _harness():
    from sea_kernels.cli import compare as command
    from sea_kernels.cli.arguments import Parser
    p = Parser(prog="sea")
    command.add_parser(p.add_subparsers(dest="command", parser_class=Parser))
    return p


def test_cli_head_option():
    from sea_kernels.cli import compare as command
    from sea_kernels.cli.errors import UsageError
    args = _harness().parse_args(["compare", "x.npz"])
    assert args.head == "linear" and command.methods(args) == ["none", "sea", "mixup"]
    args = _harness().parse_args(["compare", "x.npz", "--head", "mlp", "--mlp-lr", "0.01",
                                  "0.03", "--eta", "0", "0.4"])
    assert command.methods(args) == ["none", "sea"]
    assert command.grid(args)["mlp_lr"] == [0.01, 0.03]
    p = command.check_args(args, "cpu")
    assert p.methods == ("mlp_ce", "mlp_sea", LINEAR_SEA) and p.n_candidates("mlp_sea") == 2
    with pytest.raises(UsageError, match="head"):
        _harness().parse_args(["compare", "x.npz", "--head", "cnn"])
    with pytest.raises(UsageError, match="--head mlp"):
        command.check_args(_harness().parse_args(["compare", "x.npz", "--mlp-lr", "0.01"]),
                           "cpu")
    with pytest.raises(ValueError, match="methods"):
        command.check_args(_harness().parse_args(["compare", "x.npz", "--head", "mlp",
                                                  "--methods", "none", "mixup"]), "cpu")


def test_sea_compare_head_mlp_end_to_end(tmp_path, capsys):
    """A small real slice: the rows, the pairs and head in compare.json; the mlp_ce run is its
    pick refitted by hand on the seed's train + validation rows."""
    from sea_kernels.data.features import prepare_features
    from sea_kernels.sweeps.search import stratified_split
    xtr, ytr, xte, yte = cifar_slice(240, 120, seed=5)
    path = tmp_path / "slice.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    out = tmp_path / "cmp"
    args = _harness().parse_args([str(a) for a in (
        "compare", path, "--head", "mlp", "--seeds", 2, "--lr", 1, "--lam", 0.1, "--eta", 0,
        0.4, "--mlp-lr", 0.003, 0.01, "--epochs", 2, "--batch-size", 64, "--device", "cpu",
        "--no-progress", "--no-plot", "--out", out)])
    assert args.func(args) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("compare: 3 methods (candidates per seed: mlp_ce 2, mlp_sea 2, "
                             "linear_sea 1) × 2 seeds")
    assert "mlp_sea − mlp_ce" in stdout and "mlp_sea − linear_sea" in stdout
    d = json.loads((out / "compare.json").read_text())
    assert d["methods"] == ["mlp_ce", "mlp_sea", "linear_sea"] and d["baseline"] == "mlp_ce"
    assert d["settings"]["head"] == "mlp" and d["settings"]["mlp"]["hidden"] == 512
    assert [(p["method"], p["reference"]) for p in d["pairs"]] == [("mlp_sea", "linear_sea")]
    r = CompareResult.from_json(out / "compare.json")
    assert r.pairs == (("mlp_sea", "linear_sea"),)
    diff = r.values("mlp_sea") - r.values("linear_sea")
    assert d["pairs"][0]["top1"]["mean"] == pytest.approx(diff.mean())
    assert r.stats("mlp_sea", paired=True, reference="linear_sea").mean == \
        pytest.approx(diff.mean())
    assert {r.run("mlp_sea", s)["params"]["eta"] for s in (0, 1)} == {0.4}
    run = r.run("mlp_ce", 1)
    x = prepare_features(xtr).numpy()
    tr, va = stratified_split(ytr, 0.2, random_state=1)
    fit = MLPProbe(epochs=2, batch_size=64, random_state=1, **run["params"]).fit(
        np.concatenate([x[tr], x[va]]), np.concatenate([ytr[tr], ytr[va]]))
    assert fit.score(prepare_features(xte), yte) == pytest.approx(run["test_top1"], abs=1e-12)


def test_slice_script_takes_the_fixture_rows():
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        from mlp_probe_data import make_slice
    finally:
        sys.path.remove(str(ROOT / "benches"))
    xtr, ytr, xte, yte = cifar_slice(300, 100, seed=0)
    from data_fixtures import _load_all
    s = make_slice(_load_all(), 300, 100, 0)
    assert np.array_equal(s["x_train"], xtr) and np.array_equal(s["y_test"], yte)
    assert np.array_equal(s["x_test"], xte) and np.array_equal(s["y_train"], ytr)
    assert len(set(s["train_rows"].tolist())) == 300
    with pytest.raises(ValueError, match="n_train"):
        make_slice(_load_all(), 0, 10, 0)
    assert math.isfinite(float(s["x_train"].astype(np.float32).sum()))


def test_default_methods_follow_the_head():
    assert plan(None, 1, None, head="mlp").methods == ("mlp_ce", "mlp_sea", LINEAR_SEA)
    assert plan(None, 1, None).methods == ("none", "sea", "mixup")
