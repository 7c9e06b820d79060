"""Bad input is refused clearly and before any work: a device this machine lacks (one helper,
train.devices.check_device, for SeAClassifier, sweep, train_many, load and the CLI), every sweep
data set checked before the grid trains, seeds and fractions named, numpy scalars accepted; and
the sweep works end to end with string labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sea_kernels.params import ParameterError
from sea_kernels.sweeps.engine import train_many
from sea_kernels.sweeps.search import stratified_split, sweep
from sea_kernels.train import devices
from sea_kernels.train.estimator import SeAClassifier


def _toy(n=90, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = (rng.standard_normal((c, d))[y] * 2 + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


GRID = {"lr": [0.5], "eta": [0.0, 0.4]}
FAST = dict(epochs=1, batch_size=32)


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---------------------------------------------------------------- devices
def test_check_device(no_cuda):
    assert devices.check_device("cpu") == torch.device("cpu")
    assert devices.available_devices()[0] == "cpu"
    with pytest.raises(ValueError, match=r"device 'cuda' is not usable here: CUDA is not "
                                         r"available .*; available here: cpu"):
        devices.check_device("cuda")
    with pytest.raises(ValueError, match="device 'gpu0' is not a torch device"):
        devices.check_device("gpu0")
    with pytest.raises(ValueError, match="meta tensors hold no data"):
        devices.check_device("meta")
    with pytest.raises(ValueError, match="--device 'cuda:1' is not usable"):
        devices.check_device("cuda:1", "--device")


def test_cuda_index_beyond_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.check_device("cuda:0").index == 0
    with pytest.raises(ValueError, match=r"'cuda:3' is not usable here: there is only 1 CUDA "
                                         r"device.*available here: cpu, cuda:0"):
        devices.check_device("cuda:3")


def test_cuda_without_cuda_is_a_value_error_before_any_work(no_cuda, no_training):
    X, y = _toy()
    with pytest.raises(ValueError, match="device 'cuda' is not usable here"):
        SeAClassifier(device="cuda", epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="device 'cuda' is not usable here"):
        sweep(X, y, GRID, device="cuda", **FAST)
    with pytest.raises(ValueError, match="device 'cuda:0' is not usable here"):
        train_many(X, y, [{}], device="cuda:0", epochs=1)


def test_load_on_a_missing_device_is_refused(no_cuda, tmp_path):
    X, y = _toy()
    SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(X, y).save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="device 'cuda' is not usable here"):
        SeAClassifier.load(tmp_path / "m.pt", device="cuda")
    assert SeAClassifier.load(tmp_path / "m.pt", device="cpu").device == "cpu"


# ---------------------------------------------------------------- the sweep checks first
@pytest.mark.parametrize("kw, exc, match", [
    (lambda X, y: dict(X_test=X[:, :5], y_test=y), ValueError,
     r"X_test has feature blocks of widths \[5\]"),
    (lambda X, y: dict(X_test=X, y_test=y[:10]), ValueError,
     "y_test has 10 labels but X_test has 90 rows"),
    (lambda X, y: dict(X_test=X, y_test=np.array(["a", "b", "c"])[y]), TypeError,
     "y_test holds string labels but the classes are numbers"),
    (lambda X, y: dict(X_test=X, y_test=y + 7), ValueError,
     "y_test: labels not in the class list: 7, 8, 9"),
    (lambda X, y: dict(X_test=X), ValueError, "give both X_test and y_test"),
    (lambda X, y: dict(X_val=X[:, :3], y_val=y), ValueError,
     r"X_val has feature blocks of widths \[3\]"),
    (lambda X, y: dict(X_val=[X], y_val=y), ValueError, "X and X_val must have the same"),
    (lambda X, y: dict(X_val=X, y_val=y[:-1]), ValueError, "y_val has 89 labels but X_val"),
    (lambda X, y: dict(X_val=X, y_val=y.astype(str)), TypeError,
     "y_val holds string labels but the classes are numbers"),
    (lambda X, y: dict(X_test=np.where(np.arange(8) == 0, np.nan, X), y_test=y), ValueError,
     "contains NaN or Inf"),
    (lambda X, y: dict(backend="cuda"), ValueError, "backend must be one of"),
    (lambda X, y: dict(random_state=-1), ValueError, r"random_state must lie in \[0, 2\*\*64\)"),
    (lambda X, y: dict(random_state=2 ** 64), ValueError, "random_state must lie in"),
    (lambda X, y: dict(random_state="0"), ParameterError, "random_state must be an int"),
    (lambda X, y: dict(random_state=None), ParameterError, "random_state must be an int"),
    (lambda X, y: dict(val_fraction="0.2"), ParameterError, "val_fraction must be a real"),
    (lambda X, y: dict(val_fraction=0.0), ValueError, "val_fraction must be > 0"),
    (lambda X, y: dict(epochs=0), ValueError, "epochs must be ≥ 1"),
    (lambda X, y: dict(batch_size=1.5), ParameterError, "batch_size must be an integer"),
    (lambda X, y: dict(chunk_size=0), ValueError, "chunk_size must be ≥ 1"),
    (lambda X, y: dict(metric="top5"), ValueError, "metric must be one of"),
])
def test_sweep_checks_everything_before_training(no_training, kw, exc, match):
    X, y = _toy()
    args = {**FAST, **kw(X, y)}
    with pytest.raises(exc, match=match):
        sweep(X, y, GRID, **args)


def test_one_class_is_still_refused(no_training):
    X, _ = _toy()
    with pytest.raises(ValueError, match="single class"):
        sweep(X, np.zeros(90, dtype=int), GRID, **FAST)
    with pytest.raises(ValueError, match="single class"):
        SeAClassifier(epochs=1).fit(X, np.full(90, "a"))


# ---------------------------------------------------------------- seeds and fractions named
@pytest.mark.parametrize("value, exc, match", [
    (-1, ValueError, r"random_state must lie in \[0, 2\*\*64\), got -1"),
    (2 ** 64, ValueError, r"random_state must lie in \[0, 2\*\*64\), got 18446744073709551616"),
    ("3", ParameterError, "random_state must be an int"),
    (1.0, ParameterError, "random_state must be an int"),
])
def test_seeds_are_named_everywhere(no_training, value, exc, match):
    X, y = _toy()
    with pytest.raises(exc, match=match):
        SeAClassifier(random_state=value, epochs=1).fit(X, y)
    with pytest.raises(exc, match=match):
        sweep(X, y, GRID, random_state=value, **FAST)
    with pytest.raises(exc, match=match):
        stratified_split(y, 0.2, value)


@pytest.mark.parametrize("value, exc, match", [
    (-1, ValueError, r"random_state must lie in \[0, 2\*\*64\)"),
    (2 ** 64, ValueError, r"random_state must lie in"),
    ("0", ParameterError, "random_state must be an int"),
])
def test_train_many_names_its_seed(value, exc, match):
    X, y = _toy()
    with pytest.raises(exc, match=match):
        train_many(X, y, [{}], random_state=value, epochs=1)


def test_val_fraction_is_named(no_training):
    X, y = _toy()
    for bad, exc, match in (("0.2", ParameterError, "val_fraction must be a real number, got str"),
                            (1.0, ValueError, "val_fraction must be < 1"),
                            (float("nan"), ValueError, "val_fraction must be finite")):
        with pytest.raises(exc, match=match):
            sweep(X, y, GRID, val_fraction=bad, **FAST)
        with pytest.raises(exc, match=match):
            stratified_split(y, bad)


# ---------------------------------------------------------------- numpy scalars
def test_numpy_scalars_are_accepted_by_the_estimator(tmp_path):
    X, y = _toy()
    np_kw = dict(alpha=np.float32(0.01), lr=np.float64(0.4), eta=np.float32(0.4),
                 lam=np.float16(0.5), delta=np.int64(0), weight_decay=np.float32(1e-4),
                 epochs=np.int64(2), batch_size=np.int32(16), random_state=np.uint64(3),
                 momentum=np.float32(0.5), backend="torch")
    py_kw = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in np_kw.items()}
    got = SeAClassifier(**np_kw).fit(X, y, checkpoint=tmp_path / "c.pt",
                                     checkpoint_every=np.int64(1))
    want = SeAClassifier(**py_kw).fit(X, y)
    assert torch.equal(got.W_, want.W_) and got.history_ == want.history_
    assert got.seed_ == 3 and isinstance(got.history_[0]["lr"], float)
    got.save(tmp_path / "m.pt")
    back = SeAClassifier.load(tmp_path / "m.pt")
    assert all(back.get_params()[k] == v for k, v in py_kw.items())
    np.testing.assert_array_equal(back.predict(X), got.predict(X))
    # the checkpoint written with numpy scalars resumes with Python ones, and vice versa
    resumed = SeAClassifier(**{**py_kw, "epochs": 3}).fit(X, y, checkpoint=tmp_path / "c.pt")
    assert len(resumed.history_) == 3


def test_numpy_scalars_are_accepted_by_the_sweep():
    X, y = _toy()
    grid = {"lr": np.array([0.5, 1.0]), "alpha": [np.float32(0.01)], "eta": [np.float64(0.4)],
            "lam": (np.float32(0.1),)}
    res = sweep(X, y, grid, epochs=np.int64(1), batch_size=np.int32(32),
                random_state=np.int64(1), val_fraction=np.float32(0.25))
    assert len(res.configs) == 2 and all(type(v) is float for v in res.configs[0].values())
    assert res.model is not None and res.settings["epochs"] == 1
    many = train_many(X, y, [{"lr": np.float32(0.5)}], epochs=np.int64(1),
                      batch_size=np.int64(30), random_state=np.uint8(2))
    assert many.steps == 3


# ---------------------------------------------------------------- string labels end to end
def test_sweep_with_string_labels_end_to_end(tmp_path):
    X, y = _toy()
    names = np.array(["cat", "dog", "eel"])[y]
    res = sweep(X[:60], names[:60], GRID, X_val=X[60:75], y_val=names[60:75],
                X_test=X[75:], y_test=names[75:], **FAST)
    assert res.model is not None
    assert res.model.classes_.tolist() == ["cat", "dog", "eel"]
    pred = res.model.predict(X[75:])
    assert pred.dtype.kind == "U" and set(pred) <= {"cat", "dog", "eel"}
    assert res.test_top1 == pytest.approx(np.mean(pred == names[75:]))
    res.model.save(tmp_path / "m.pt")
    back = SeAClassifier.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(back.predict(X), res.model.predict(X))
    # the hold-out split and the sweep's own winner take them too
    held = sweep(X, names, GRID, retrain=False, X_test=X, y_test=names, **FAST)
    assert held.settings["num_classes"] == 3 and 0 <= held.test_top1 <= 1
    # object labels and bools
    obj = sweep(X, names.astype(object), GRID, **FAST)
    assert obj.model.classes_.dtype == object
    flags = sweep(X[y < 2], y[y < 2] == 1, GRID, **FAST)
    assert flags.model.classes_.tolist() == [False, True]
