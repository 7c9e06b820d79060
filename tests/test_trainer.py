"""SeAClassifier: accuracy on real features, the exact training step, checkpoint/resume,
persistence, the sklearn parameter protocol, every augment value, divergence and bad-input
messages."""
import math
import warnings

import numpy as np
import pytest
import torch
from data_fixtures import cifar_data  # noqa: F401  (session fixture)

from sea_kernels import fused_sea
from sea_kernels.data.features import prepare_features
from sea_kernels.op import cpp_backend as _ext
from sea_kernels.train import checkpoint as ck
from sea_kernels.train.estimator import AUGMENTS, NotFittedError, SeAClassifier, TrainingDiverged


@pytest.fixture(scope="module")
def small(cifar_data):  # noqa: F811
    """600 training rows (balanced enough: shuffled), for the many quick fits."""
    return cifar_data["xtr"][:600], cifar_data["ytr"][:600]


def _toy(n=60, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)) * 2
    y = rng.integers(0, c, n)
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


# ---------------------------------------------------------------- accuracy and backend parity
def test_sea_reaches_sensible_accuracy_and_cpp_matches_torch(cifar_data):  # noqa: F811
    d = cifar_data
    kw = dict(eta=0.4, lr=0.4, epochs=4, random_state=0)
    clf = SeAClassifier(backend="torch", **kw).fit(d["xtr"], d["ytr"],
                                                   eval_set=[(d["xte"], d["yte"])])
    acc = clf.score(d["xte"], d["yte"])
    assert acc >= 0.70, f"top-1 {acc:.3f} on the 2000/1000 CIFAR-10 slice"
    assert clf.history_[-1]["eval0_top1"] == pytest.approx(acc)
    assert 0.6 < clf.history_[-1]["eval0_mean_per_class"] <= 1
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]
    if not _ext.CPP_AVAILABLE:
        pytest.skip(f"C++ extension not built: {_ext.CPP_ERROR}")
    cpp = SeAClassifier(backend="cpp", **kw).fit(d["xtr"], d["ytr"])
    assert cpp.backend_ == "cpp"
    torch.testing.assert_close(cpp.W_, clf.W_, rtol=1e-3, atol=1e-4)
    same = np.mean(cpp.predict(d["xte"]) == clf.predict(d["xte"]))
    assert same >= 0.998 and abs(cpp.score(d["xte"], d["yte"]) - acc) <= 0.002


# ---------------------------------------------------------------- the step, spelled out
def test_explicit_fused_sea_sgd_loop_gives_the_same_weights(small):
    X, y = small
    params = dict(alpha=0.02, eta=0.4, lam=0.1, delta=0.5, lr=0.4, momentum=0.9,
                  weight_decay=1e-4)
    clf = SeAClassifier(epochs=2, batch_size=128, random_state=7, backend="torch",
                        **params).fit(X, y)

    x = prepare_features(X)
    classes, labels = np.unique(y, return_inverse=True)
    labels = torch.as_tensor(labels, dtype=torch.long)
    W = torch.zeros(x.shape[1], len(classes), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([W], lr=0.4, momentum=0.9, dampening=0, nesterov=False,
                          weight_decay=1e-4)
    g = torch.Generator().manual_seed(7)
    for _ in range(2):
        perm = torch.randperm(x.shape[0], generator=g)
        for s in range(0, x.shape[0], 128):            # 600 = 4·128 + 88: last partial batch kept
            idx = perm[s:s + 128]
            loss = fused_sea(x[idx], labels[idx], W, alpha=0.02, eta=0.4, lam=0.1, delta=0.5,
                             reduction="mean", backend="torch")
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.equal(clf.W_, W.detach())
    np.testing.assert_array_equal(clf.coef_, W.detach().numpy().T)


def test_eta_zero_is_the_plain_baseline(small):
    X, y = small
    a = SeAClassifier(augment="sea", eta=0.0, epochs=2, lr=0.4, random_state=1,
                      backend="torch").fit(X, y)
    b = SeAClassifier(augment="none", eta=0.8, epochs=2, lr=0.4, random_state=1).fit(X, y)
    torch.testing.assert_close(a.W_, b.W_, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- checkpoints
def test_resume_from_checkpoint_equals_uninterrupted_run(small, tmp_path):
    X, y = small
    kw = dict(eta=0.4, lr=0.4, random_state=3, backend="torch")
    eval_set = [(X[:100], y[:100])]
    full = SeAClassifier(epochs=4, **kw).fit(X, y, eval_set=eval_set)
    ckpt = tmp_path / "run.pt"
    first = SeAClassifier(epochs=2, **kw).fit(X, y, eval_set=eval_set, checkpoint=ckpt)
    assert ckpt.exists() and len(first.history_) == 2
    resumed = SeAClassifier(epochs=4, **kw).fit(X, y, eval_set=eval_set, checkpoint=ckpt)
    assert torch.equal(resumed.W_, full.W_)
    assert resumed.history_ == full.history_
    assert ck.read_checkpoint(ckpt)["epoch"] == 4
    assert not list(tmp_path.glob(".tmp-*"))                 # atomic write left no temp file
    # a finished checkpoint is not retrained; more epochs than asked is an error
    again = SeAClassifier(epochs=4, **kw).fit(X, y, eval_set=eval_set, checkpoint=ckpt)
    assert torch.equal(again.W_, full.W_)
    with pytest.raises(ValueError, match="already holds 4 epochs"):
        SeAClassifier(epochs=3, **kw).fit(X, y, checkpoint=ckpt)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("augment,extra", [("isda", {}), ("me_ada", {"me_ada_rounds": 2}),
                                           ("rand", {"eta": 0.4})])
def test_interrupted_run_resumes_exactly(small, tmp_path, monkeypatch, augment, extra):
    """Kill a run after 2 of 4 epochs (checkpoint_every=1) and resume: the generator states, the
    ISDA estimator and the ME-ADA rows come back from the checkpoint."""
    X, y = small
    X, y = X[:300], y[:300]
    kw = dict(augment=augment, epochs=4, lr=0.4, random_state=5, **extra)
    full = SeAClassifier(**kw).fit(X, y)
    ckpt = tmp_path / "ck.pt"
    original = SeAClassifier._run_epoch
    calls = []

    def flaky(self, epoch, *a, **k):
        if epoch == 2:
            raise _Interrupt
        calls.append(epoch)
        return original(self, epoch, *a, **k)

    monkeypatch.setattr(SeAClassifier, "_run_epoch", flaky)
    with pytest.raises(_Interrupt):
        SeAClassifier(**kw).fit(X, y, checkpoint=ckpt)
    monkeypatch.setattr(SeAClassifier, "_run_epoch", original)
    assert calls == [0, 1]
    resumed = SeAClassifier(**kw).fit(X, y, checkpoint=ckpt)
    assert torch.equal(resumed.W_, full.W_)
    assert resumed.history_ == full.history_


def test_checkpoint_with_other_parameters_or_data_is_refused(small, tmp_path):
    X, y = small
    ckpt = tmp_path / "c.pt"
    SeAClassifier(epochs=1, lr=0.4, random_state=0, backend="torch").fit(X, y, checkpoint=ckpt)
    with pytest.raises(ValueError, match="lr=0.4, this run has lr=0.2"):
        SeAClassifier(epochs=2, lr=0.2, random_state=0).fit(X, y, checkpoint=ckpt)
    with pytest.raises(ValueError, match="different training data"):
        SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(X[:500], y[:500], checkpoint=ckpt)
    with pytest.raises(ValueError, match="different training data"):
        SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(X[::-1], y[::-1], checkpoint=ckpt)
    # random_state=None adopts the checkpoint's seed
    resumed = SeAClassifier(epochs=2, lr=0.4, backend="torch").fit(X, y, checkpoint=ckpt)
    assert resumed.seed_ == 0


# ---------------------------------------------------------------- persistence and the API
def test_save_load_round_trip(small, tmp_path):
    X, y = small
    y = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])[y]        # arbitrary integer labels
    clf = SeAClassifier(epochs=2, lr=0.4, eta=0.2, random_state=0).fit(X, y,
                                                                       eval_set=[(X, y)])
    path = tmp_path / "model.pt"
    clf.save(path)
    raw = torch.load(path, weights_only=True)                          # plain content only
    assert raw["format"] == ck.FORMAT_MODEL and len(raw["sha256"]) == 64
    assert set(ck.read_model(path)) >= {"params", "W", "classes", "feature_dims", "history"}
    back = SeAClassifier.load(path)
    assert back.get_params() == clf.get_params()
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.classes_.dtype == clf.classes_.dtype
    assert back.history_ == clf.history_ and back.n_features_in_ == 1280
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert set(np.unique(back.predict(X))) <= set(clf.classes_)


def test_inference_api_and_label_remapping(small):
    X, y = small
    labels = np.array([-3, 5, 7, 11, 13, 17, 19, 23, 29, 31])[y]
    clf = SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, np.sort(np.unique(labels)))
    logits = clf.decision_function(X[:20])
    assert logits.shape == (20, 10)
    np.testing.assert_allclose(logits, prepare_features(X[:20]).numpy() @ clf.coef_.T,
                               rtol=1e-5, atol=1e-6)
    proba = clf.predict_proba(X[:20])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    want = torch.softmax(torch.from_numpy(logits).double() / clf.lam, dim=1).numpy()
    np.testing.assert_allclose(proba, want, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X[:20]), clf.classes_[logits.argmax(1)])
    assert clf.score(X, labels) == pytest.approx(np.mean(clf.predict(X) == labels))
    assert clf.coef_.shape == (10, 1280) and clf.n_features_in_ == 1280
    # torch tensors in
    np.testing.assert_array_equal(clf.predict(torch.from_numpy(X[:20].copy())), clf.predict(X[:20]))


def test_eval_set_dtype_and_dict_names():
    X, y = _toy()
    clf = SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(
        X, y, eval_set={"val": (X.astype(np.float64), y), "half": (X[:30], y[:30])})
    rec = clf.history_[-1]
    assert {"val_top1", "val_mean_per_class", "half_top1", "half_mean_per_class"} <= set(rec)
    assert rec["val_top1"] == pytest.approx(clf.score(X, y))
    assert rec["epoch"] == 2 and rec["lr"] == 0.4 and rec["n_train"] == 60


def test_feature_blocks_layout_is_remembered(small):
    X, y = small
    blocks = [X[:, :500], X[:, 500:]]
    clf = SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(blocks, y)
    assert clf.feature_dims_ == [500, 780] and clf.n_features_in_ == 1280
    assert clf.predict([X[:5, :500], X[:5, 500:]]).shape == (5,)
    with pytest.raises(ValueError, match=r"blocks of widths \[1280\].*\[500, 780\]"):
        clf.predict(X[:5])


def test_get_params_set_params(small):
    clf = SeAClassifier(eta=0.4, lr=0.5)
    params = clf.get_params()
    assert params["eta"] == 0.4 and params["lr"] == 0.5 and params["augment"] == "sea"
    assert set(params) == {"augment", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                           "alpha", "eta", "lam", "delta", "backend", "random_state", "device",
                           "isda_strength", "me_ada_steps", "me_ada_gamma", "me_ada_beta",
                           "me_ada_lr", "me_ada_rounds", "verbose", "group_size", "compile"}
    assert clf.set_params(eta=0.2, epochs=3) is clf
    assert clf.eta == 0.2 and clf.epochs == 3
    with pytest.raises(ValueError, match="Invalid parameter 'etaa'"):
        clf.set_params(etaa=1)
    twin = SeAClassifier(**clf.get_params())
    assert twin.get_params() == clf.get_params()
    assert "eta=0.2" in repr(clf)
    sklearn_base = pytest.importorskip("sklearn.base")
    cloned = sklearn_base.clone(clf)
    assert cloned.get_params() == clf.get_params() and cloned is not clf


def test_random_state_none_draws_a_seed_without_touching_the_global_rng():
    X, y = _toy()
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    clf = SeAClassifier(epochs=1, lr=0.4).fit(X, y)
    torch.testing.assert_close(torch.rand(3), want)
    assert isinstance(clf.seed_, int)
    same = SeAClassifier(epochs=1, lr=0.4, random_state=clf.seed_).fit(X, y)
    assert torch.equal(same.W_, clf.W_)


def test_progress_and_verbose_run(capsys):
    X, y = _toy()
    SeAClassifier(epochs=2, lr=0.4, random_state=0, verbose=True).fit(X, y, progress=True)
    out = capsys.readouterr()
    assert "epoch=1" in out.out and "epoch=2" in out.out


# ---------------------------------------------------------------- every augment value
@pytest.mark.parametrize("augment", AUGMENTS)
def test_every_augment_trains_to_finite_weights(small, augment):
    X, y = small
    eta = 0.02 if augment == "adv" else 0.4
    clf = SeAClassifier(augment=augment, eta=eta, epochs=3, lr=0.4, batch_size=128,
                        random_state=0, me_ada_rounds=1).fit(X, y, eval_set=[(X, y)])
    assert torch.isfinite(clf.W_).all() and clf.W_.abs().sum() > 0
    assert len(clf.history_) == 3
    assert all(math.isfinite(h["train_loss"]) for h in clf.history_)
    assert clf.history_[-1]["eval0_top1"] > 0.5


def test_me_ada_appends_one_copy_of_the_training_set_per_round(small):
    X, y = small
    n = 200
    clf = SeAClassifier(augment="me_ada", epochs=6, me_ada_rounds=2, lr=0.4,
                        random_state=0).fit(X[:n], y[:n])
    assert clf.n_train_rows_ == 3 * n
    # rounds before epochs ⌊6/3⌋ = 2 and ⌊12/3⌋ = 4 (0-based)
    assert [h["n_train"] for h in clf.history_] == [n, n, 2 * n, 2 * n, 3 * n, 3 * n]


def test_isda_ramp_and_full_covariance_on_small_dims():
    X, y = _toy(n=90, d=6, c=3)
    clf = SeAClassifier(augment="isda", epochs=3, lr=0.4, batch_size=32, random_state=0,
                        isda_strength=5.0).fit(X, y)
    plain = SeAClassifier(augment="none", epochs=3, lr=0.4, batch_size=32, random_state=0).fit(X, y)
    # epoch 0 has λ_0 = 0: identical to the plain loss; later epochs differ
    assert clf.history_[0]["train_loss"] == pytest.approx(plain.history_[0]["train_loss"], rel=1e-6)
    assert clf.history_[2]["train_loss"] > plain.history_[2]["train_loss"]


# ---------------------------------------------------------------- divergence
def test_divergence_names_the_learning_rate(small):
    X, y = small
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 .* with lr=1e\+06; "
                                               r"try lr=250000 or lower"):
        SeAClassifier(eta=0.8, lr=1e6, epochs=3, random_state=0).fit(X, y)


def test_collapse_stops_training(small):
    """A loss above 2× the all-zero classifier's (finite, but worse than predicting nothing)
    stops."""
    X, y = small
    clf = SeAClassifier(eta=0.8, lr=200.0, epochs=2, random_state=0, backend="torch")
    with pytest.raises(TrainingDiverged, match=r"with lr=200; try lr=50 or lower.*collapsed") as e:
        clf.fit(X, y)
    assert e.value.history == clf.history_  # the epochs completed before the stop


def test_nan_loss_mid_training_is_training_diverged(small, monkeypatch):
    X, y = small
    clf = SeAClassifier(epochs=2, lr=0.4, random_state=0, backend="torch")
    original = SeAClassifier._batch_loss

    def poisoned(self, epoch, xb, yb, W, *a):
        if epoch == 1:
            with torch.no_grad():
                W.fill_(float("nan"))
        return original(self, epoch, xb, yb, W, *a)

    monkeypatch.setattr(SeAClassifier, "_batch_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 2 .*lr=0.4; try lr=0.1"):
        clf.fit(X, y)
    assert len(clf.history_) == 1                # the epochs before the blow-up are kept


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("params,exc,match", [
    ({"augment": "cutmix"}, ValueError, "augment must be one of"),
    ({"epochs": 0}, ValueError, "epochs must be ≥ 1"),
    ({"epochs": 2.5}, TypeError, "epochs must be an integer"),
    ({"lr": 0}, ValueError, "lr must be > 0"),
    ({"lr": -1.0}, ValueError, "lr must be > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be finite"),
    ({"batch_size": 0}, ValueError, "batch_size must be ≥ 1"),
    ({"momentum": 1.0}, ValueError, "momentum must be < 1"),
    ({"weight_decay": -1e-3}, ValueError, "weight_decay must be ≥ 0"),
    ({"alpha": 0}, ValueError, "alpha must be > 0"),
    ({"eta": -0.1}, ValueError, "eta must be ≥ 0"),
    ({"lam": 0}, ValueError, "lam must be > 0"),
    ({"delta": "1"}, TypeError, "delta must be a real number"),
    ({"random_state": 1.5}, TypeError, "random_state must be an int"),
    ({"backend": "cuda"}, ValueError, "backend must be one of"),
    ({"device": "gpu0"}, ValueError, "device 'gpu0'"),
    ({"augment": "me_ada", "epochs": 2, "me_ada_rounds": 2}, ValueError,
     "me_ada_rounds=2 needs epochs ≥ 3"),
    ({"me_ada_steps": 0}, ValueError, "me_ada_steps must be ≥ 1"),
])
def test_bad_parameters_are_named(params, exc, match):
    X, y = _toy()
    with pytest.raises(exc, match=match):
        SeAClassifier(**params).fit(X, y)


def test_bad_data_is_named():
    X, y = _toy()
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or Inf in 1 row"):
        SeAClassifier(epochs=1).fit(Xn, y)
    with pytest.raises(ValueError, match="y has 59 labels but X has 60 rows"):
        SeAClassifier(epochs=1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        SeAClassifier(epochs=1).fit(X, np.zeros(60, dtype=int))
    with pytest.raises(ValueError, match="y contains 1 NaN/Inf label"):
        SeAClassifier(epochs=1).fit(X, np.where(np.arange(60) == 7, np.nan, y + 0.5))
    with pytest.raises(TypeError, match="y must hold labels that sort against each other"):
        SeAClassifier(epochs=1).fit(X, np.array(["a", 1, None] * 20, dtype=object))
    with pytest.warns(UserWarning, match="column-vector y"):   # n×1 is raveled (scikit-learn)
        SeAClassifier(epochs=1, lr=0.4).fit(X, y[:, None])
    with pytest.raises(ValueError, match="1d array"):
        SeAClassifier(epochs=1).fit(X, np.stack([y, y], 1))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SeAClassifier(epochs=1).fit(X, y + 0.5)
    with pytest.raises(ValueError, match=r"eval_set 'eval0' X has 5 features, but SeAClassifier"):
        SeAClassifier(epochs=1).fit(X, y, eval_set=[(X[:, :5], y)])
    with pytest.raises(TypeError, match=r"\(X, y\) pair"):
        SeAClassifier(epochs=1).fit(X, y, eval_set=[X])
    with pytest.raises(ValueError, match="checkpoint_every must be ≥ 1"):
        SeAClassifier(epochs=1).fit(X, y, checkpoint_every=0)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SeAClassifier().predict(X)
    assert not hasattr(SeAClassifier(), "coef_")       # NotFittedError is an AttributeError


@pytest.mark.parametrize("make, kind", [
    (lambda y: np.array(["cat", "dog", "eel"])[y], "U"),
    (lambda y: np.array(["cat", "dog", "eel"], dtype=object)[y], "O"),
    (lambda y: np.array([b"a", b"b", b"c"])[y], "S"),
    (lambda y: np.array([3, 7, 200], dtype=np.uint8)[y], "u"),
    (lambda y: np.array([-1, 4, 9], dtype=np.int16)[y], "i"),
    (lambda y: y == 1, "b"),
    (lambda y: list(np.array(["x", "y", "z"])[y]), "U"),
])
def test_labels_of_any_sortable_type(tmp_path, make, kind):
    """classes_ are the sorted unique labels in their own dtype; predict returns them; score and
    eval_set take them; save/load keeps them (dtype included)."""
    X, y = _toy()
    labels = make(y)
    arr = np.asarray(labels)
    clf = SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(X, labels,
                                                              eval_set={"train": (X, labels)})
    assert clf.classes_.dtype.kind == kind and clf.classes_.dtype == arr.dtype
    np.testing.assert_array_equal(clf.classes_, np.unique(arr))
    pred = clf.predict(X)
    assert pred.dtype == arr.dtype and set(pred.tolist()) <= set(arr.tolist())
    assert clf.score(X, labels) == pytest.approx(np.mean(pred == arr))
    assert clf.history_[-1]["train_top1"] == pytest.approx(clf.score(X, labels))
    clf.save(tmp_path / "m.pt")
    back = SeAClassifier.load(tmp_path / "m.pt")
    assert back.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(back.predict(X), pred)


def test_labels_of_another_kind_than_the_classes_are_refused():
    X, y = _toy()
    clf = SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    with pytest.raises(TypeError, match="y holds number labels but the classes are strings"):
        clf.score(X, y)
    with pytest.raises(TypeError, match="eval_set 'eval0' y holds number labels"):
        SeAClassifier(epochs=1).fit(X, np.array(["a", "b", "c"])[y], eval_set=[(X, y)])


def test_float_labels_with_integer_values_are_accepted():
    X, y = _toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(X, y.astype(np.float64))
    assert clf.classes_.dtype == np.int64
