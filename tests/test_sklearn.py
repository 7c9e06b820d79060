"""SeAClassifier as a scikit-learn estimator: check_estimator (no expected failure), meta-estimators
(Pipeline, cross_val_score, GridSearchCV, CalibratedClassifierCV, OneVsRestClassifier), the X
kinds (arrays, tensors, DataFrame-likes, lists of rows vs lists of blocks), labels of any type,
the parameter and random_state contracts, and the fallback without scikit-learn."""
import importlib.util
import inspect
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch

from sea_kernels.data.features import prepare_features
from sea_kernels.train import estimator as estimator_module
from sea_kernels.train import sklearn_compat
from sea_kernels.train.estimator import NotFittedError, SeAClassifier
from sea_kernels.train.sklearn_compat import HAVE_SKLEARN

needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")
QUICK = dict(epochs=4, lr=0.4, batch_size=64, random_state=0)   # one step an epoch


def _toy(n=60, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)) * 2
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)                               # every class present
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


# ------------------------------------------------------------------------- check_estimator
if HAVE_SKLEARN:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    _strict = ({"xfail_strict": True}
               if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters else {})

    # check_estimator's own data (a few hundred rows); 2 epochs of one batch train it enough.
    @parametrize_with_checks([SeAClassifier(epochs=2, lr=1.0, batch_size=1024, random_state=0)],
                             **_strict)
    def test_check_estimator(estimator, check):
        check(estimator)


@pytest.mark.parametrize("y_of", [lambda y: np.array([0.3, 1.7, 2.25])[y],
                                   lambda y: (np.array([0.3, 1.7, 2.25])[y]).tolist(),
                                   lambda y: torch.tensor(np.array([0.5, 1.5, 2.0])[y])])
def test_a_continuous_target_is_refused_as_scikit_learn_does(y_of):
    """Floats with a fractional part are a regression target: ValueError naming it, before any
    training (scikit-learn's "Unknown label type: continuous")."""
    X, y = _toy()
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SeAClassifier(**QUICK).fit(X, y_of(y))
    whole = SeAClassifier(**QUICK).fit(X, y.astype(np.float64) + 1.0)   # whole floats: classes
    assert whole.classes_.tolist() == [1, 2, 3]


@needs_sklearn
def test_the_continuous_rule_is_scikit_learns():
    from sklearn.utils.multiclass import type_of_target
    X, y = _toy()
    for labels in (np.array([0.3, 1.7, 2.25])[y], y.astype(np.float32), y, y.astype(str)):
        refused = type_of_target(labels) == "continuous"
        try:
            SeAClassifier(**{**QUICK, "epochs": 1}).fit(X, labels)
            fitted = True
        except ValueError as e:
            assert "continuous" in str(e)
            fitted = False
        assert fitted is not refused


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float32, np.float64])
def test_an_all_zero_row_stays_zero_and_fits(dtype):
    """A zero row of X is kept as a zero row (the op masks it), for integer and floating X."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, (40, 5)).astype(dtype)
    X[X.sum(1) == 0, 0] = 1
    X[[3, 17]] = 0
    y = np.arange(40) % 3
    clf = SeAClassifier(**QUICK).fit(X, y)
    assert clf.predict(X).shape == (40,) and np.isfinite(clf.decision_function(X)).all()
    x = prepare_features(X)
    assert torch.all(x[[3, 17]] == 0)
    norms = torch.linalg.vector_norm(x, dim=1)
    others = torch.ones(40, dtype=torch.bool)
    others[[3, 17]] = False
    torch.testing.assert_close(norms[others], torch.ones_like(norms[others]))
    blocks = prepare_features([X, X[:, :2]])           # zero in one block, or in both
    assert torch.all(blocks[[3, 17]] == 0)
    torch.testing.assert_close(torch.linalg.vector_norm(blocks[others], dim=1),
                               torch.ones(38, dtype=blocks.dtype))


# ------------------------------------------------------------------------- meta-estimators
@needs_sklearn
def test_is_a_classifier_with_the_right_bases():
    from sklearn.base import BaseEstimator, ClassifierMixin, is_classifier
    mro = SeAClassifier.__mro__
    assert mro.index(ClassifierMixin) < mro.index(BaseEstimator)
    assert is_classifier(SeAClassifier())
    # our own checker is not scikit-learn's `_validate_params` (which reads _parameter_constraints)
    assert SeAClassifier._validate_params is BaseEstimator._validate_params
    tags = SeAClassifier().__sklearn_tags__()
    assert tags.estimator_type == "classifier" and not tags.input_tags.allow_nan
    assert not tags.input_tags.sparse and not tags.classifier_tags.multi_label


@needs_sklearn
def test_pipeline_and_cross_val_score():
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    X, y = _toy()
    pipe = make_pipeline(FunctionTransformer(lambda a: 2.0 * a + 0.1), SeAClassifier(**QUICK))
    pipe.fit(X, y)
    direct = SeAClassifier(**QUICK).fit(2.0 * X + 0.1, y)
    np.testing.assert_array_equal(pipe.predict(X), direct.predict(2.0 * X + 0.1))
    assert pipe.score(X, y) == pytest.approx(direct.score(2.0 * X + 0.1, y))
    scores = cross_val_score(SeAClassifier(**QUICK), X, y, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and scores.mean() > 0.8


@needs_sklearn
def test_grid_search_over_eta_has_finite_scores():
    """Was: every score NaN (each fit raised inside GridSearchCV), yet a best_params_."""
    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    X, y = _toy()
    pipe = Pipeline([("id", FunctionTransformer()), ("sea", SeAClassifier(**QUICK))])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitFailedWarning)
        search = GridSearchCV(pipe, {"sea__eta": [0.0, 0.4]}, cv=3).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and search.best_params_["sea__eta"] in (0.0, 0.4)
    assert search.best_estimator_.named_steps["sea"].eta == search.best_params_["sea__eta"]
    assert search.score(X, y) > 0.8


@needs_sklearn
def test_calibrated_and_one_vs_rest():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.multiclass import OneVsRestClassifier
    X, y = _toy()
    cal = CalibratedClassifierCV(SeAClassifier(**QUICK), cv=3).fit(X, y)
    proba = cal.predict_proba(X)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(1), 1.0)
    assert cal.classes_.tolist() == [0, 1, 2]
    ovr = OneVsRestClassifier(SeAClassifier(**QUICK)).fit(X, y)
    assert len(ovr.estimators_) == 3 and set(ovr.predict(X)) <= {0, 1, 2}
    assert ovr.decision_function(X).shape == (60, 3) and ovr.score(X, y) > 0.8


def test_binary_decision_function_is_one_score():
    X, y = _toy(c=2)
    clf = SeAClassifier(**QUICK).fit(X, np.array(["no", "yes"])[y])
    dec = clf.decision_function(X)
    logits = clf._logits(X).numpy()
    assert dec.shape == (60,)
    np.testing.assert_allclose(dec, logits[:, 1] - logits[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(dec > 0).astype(int)])
    assert clf.predict_proba(X).shape == (60, 2)
    X3, y3 = _toy()
    assert SeAClassifier(**QUICK).fit(X3, y3).decision_function(X3).shape == (60, 3)


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "eel"]),
    np.array(["cat", "dog", "eel"], dtype=object),
    np.array([-5, 12, 300], dtype=np.int64),
    np.array([10, 20, 30], dtype=np.int16),
], ids=["str", "object", "int64", "int16"])
def test_labels_round_trip_in_their_own_dtype(labels):
    X, y = _toy()
    yl = labels[y]
    clf = SeAClassifier(**QUICK).fit(X, yl)
    assert clf.classes_.dtype == yl.dtype and clf.classes_.tolist() == sorted(set(yl.tolist()))
    pred = clf.predict(X)
    assert pred.dtype == yl.dtype and set(pred.tolist()) <= set(yl.tolist())
    assert clf.score(X, yl) == pytest.approx(np.mean(pred == yl)) and clf.score(X, yl) > 0.8


def test_bool_labels_and_weighted_score():
    X, y = _toy(c=2)
    yb = y.astype(bool)
    clf = SeAClassifier(**QUICK).fit(X, yb)
    pred = clf.predict(X)
    assert pred.dtype == np.bool_ and clf.classes_.tolist() == [False, True]
    right = pred == yb
    assert clf.score(X, yb, sample_weight=right.astype(float)) == 1.0
    w = np.linspace(0.1, 2.0, 60)
    assert clf.score(X, yb, sample_weight=w) == pytest.approx(np.average(right, weights=w))
    with pytest.raises(ValueError, match="sample_weight must be 60 finite weights"):
        clf.score(X, yb, sample_weight=w[:5])


def test_column_y_is_raveled_with_a_warning():
    X, y = _toy()
    with pytest.warns(sklearn_compat.DataConversionWarning, match="column-vector y"):
        col = SeAClassifier(**QUICK).fit(X, y[:, None])
    np.testing.assert_array_equal(col.predict(X), SeAClassifier(**QUICK).fit(X, y).predict(X))
    with pytest.raises(ValueError, match="requires y to be passed"):
        SeAClassifier(**QUICK).fit(X, None)


# ------------------------------------------------------------------------- X kinds
class _Frame:
    """A DataFrame stand-in: to_numpy() and columns, no pandas needed."""
    def __init__(self, arr):
        self._arr, self.columns, self.shape, self.ndim = arr, [f"f{i}" for i in
                                                              range(arr.shape[1])], arr.shape, 2

    def to_numpy(self):
        return self._arr.copy()


class _ArrayLike:
    """Anything with __array__ (scikit-learn's _NotAnArray, xarray, ...)."""
    def __init__(self, arr):
        self._arr = arr

    def __array__(self, dtype=None, copy=None):
        return self._arr if dtype is None else self._arr.astype(dtype)


def test_x_kinds_give_the_same_model():
    X, y = _toy()
    want = SeAClassifier(**QUICK).fit(X, y)
    for kind in (torch.from_numpy(X.copy()), _Frame(X), _ArrayLike(X),
                 list(X), [torch.from_numpy(r.copy()) for r in X], X.astype(object)):
        got = SeAClassifier(**QUICK).fit(kind, y)
        assert got.feature_dims_ == [8] and got.n_features_in_ == 8
        torch.testing.assert_close(got.W_, want.W_)
        np.testing.assert_array_equal(got.predict(kind), want.predict(X))
    rows = X.astype(np.float64).tolist()               # list of lists: float64, like numpy
    got = SeAClassifier(**QUICK).fit(rows, y)
    assert got.feature_dims_ == [8] and got.W_.dtype == torch.float64
    np.testing.assert_array_equal(got.predict(rows), got.predict(np.array(rows)))


def test_real_pandas_dataframe_records_column_names():
    pd = pytest.importorskip("pandas")
    X, y = _toy()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    clf = SeAClassifier(**QUICK).fit(df, y)
    assert list(clf.feature_names_in_) == list(df.columns)
    np.testing.assert_array_equal(clf.predict(df), SeAClassifier(**QUICK).fit(X, y).predict(X))


def test_list_of_rows_versus_list_of_blocks():
    X, y = _toy()
    blocks = SeAClassifier(**QUICK).fit([X[:, :3], X[:, 3:]], y)
    assert blocks.feature_dims_ == [3, 5] and blocks.n_features_in_ == 8
    for same in ([X[:, :3], X[:, 3:]], (X[:, :3].tolist(), X[:, 3:]),
                 [torch.from_numpy(X[:, :3].copy()), _Frame(X[:, 3:])]):
        np.testing.assert_array_equal(blocks.predict(same), blocks.predict([X[:, :3], X[:, 3:]]))
    one = SeAClassifier(**QUICK).fit(list(X), y)        # 1-D rows: one matrix
    assert one.feature_dims_ == [8]
    with pytest.raises(ValueError, match=r"widths \[8\].*\[3, 5\]"):
        blocks.predict(X)
    with pytest.raises(ValueError, match=r"X\[0\] is a 2-D block but X\[1\] is not"):
        SeAClassifier(**QUICK).fit([X[:, :3], X[0]], y)
    with pytest.raises(ValueError, match="not a rectangular matrix"):
        SeAClassifier(**QUICK).fit([X[0], X[1, :3]], y[:2])


def test_bad_x_messages():
    X, y = _toy()
    clf = SeAClassifier(**QUICK).fit(X, y)
    with pytest.raises(ValueError, match=r"got a 1-D array of shape \(8,\)\. Reshape your data: "
                                         r"X\.reshape\(1, -1\) for one example"):
        clf.predict(X[0])
    with pytest.raises(ValueError, match="Reshape your data"):
        clf.predict(list(X[0]))
    with pytest.raises(ValueError, match="X has 5 features, but SeAClassifier is expecting 8"):
        clf.predict_proba(X[:, :5])
    with pytest.raises(ValueError, match="Complex data not supported"):
        clf.predict(X.astype(np.complex64))
    with pytest.raises(TypeError, match="must hold numbers, got strings"):
        clf.predict(X.astype(str))
    with pytest.raises(TypeError, match="must be a numpy array, a torch.Tensor, a DataFrame"):
        clf.predict({"a": 1})
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(60, 0\)\)"):
        SeAClassifier(**QUICK).fit(X[:, :0], y)
    with pytest.raises(ValueError, match="X has 1 sample"):
        SeAClassifier(**QUICK).fit(X[:1], y[:1])
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match=r"sparse matrix.*toarray\(\)"):
        clf.predict(scipy_sparse.csr_matrix(X))


# ------------------------------------------------------------------------- parameters, seeds
def test_constructor_stores_params_unchanged_and_round_trips():
    rs = np.random.RandomState(3)
    clf = SeAClassifier(eta=np.float32(0.25), epochs=np.int64(3), random_state=rs)
    p = clf.get_params()
    assert type(p["eta"]) is np.float32 and type(p["epochs"]) is np.int64
    assert p["random_state"] is rs
    twin = SeAClassifier(**p)
    assert twin.get_params() == p
    assert clf.set_params(lam=0.5, backend="torch") is clf and clf.lam == 0.5
    with pytest.raises(ValueError, match="Invalid parameter 'etaa'"):
        clf.set_params(etaa=1)
    assert "lam=0.5" in repr(clf) and "backend='torch'" in repr(clf)


@needs_sklearn
def test_clone_and_pickle():
    from sklearn.base import clone
    X, y = _toy()
    clf = SeAClassifier(**QUICK).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "W_")
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_random_state_kinds(tmp_path):
    X, y = _toy()
    a = SeAClassifier(**{**QUICK, "random_state": np.random.RandomState(7)}).fit(X, y)
    b = SeAClassifier(**{**QUICK, "random_state": np.random.RandomState(7)}).fit(X, y)
    assert a.seed_ == b.seed_
    torch.testing.assert_close(a.W_, b.W_)
    rng = np.random.default_rng(1)
    c = SeAClassifier(**{**QUICK, "random_state": rng})
    first = c.fit(X, y).seed_
    assert c.fit(X, y).seed_ != first                  # the generator is consumed, like sklearn
    again = SeAClassifier(**{**QUICK, "random_state": first}).fit(X, y)
    again_w = again.W_
    torch.testing.assert_close(SeAClassifier(**{**QUICK, "random_state": first}).fit(X, y).W_,
                               again_w)
    a.save(tmp_path / "m.pt")                          # an RNG is saved as the seed it gave
    back = SeAClassifier.load(tmp_path / "m.pt")
    assert back.random_state == a.seed_
    np.testing.assert_array_equal(back.predict(X), a.predict(X))
    with pytest.raises(ValueError, match="random_state must be an int or None"):
        SeAClassifier(**{**QUICK, "random_state": "seven"}).fit(X, y)


def test_not_fitted_is_sklearns_error():
    X, _ = _toy()
    for method in ("predict", "predict_proba", "decision_function", "score"):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(SeAClassifier(), method)(*((X, np.zeros(60)) if method == "score" else (X,)))
    assert isinstance(NotFittedError("x"), (ValueError, AttributeError))
    if HAVE_SKLEARN:
        from sklearn.exceptions import NotFittedError as SkNotFitted
        assert issubclass(NotFittedError, SkNotFitted)


# ------------------------------------------------------------------------- without scikit-learn
def _load_without_sklearn(monkeypatch):
    """Fresh copies of sklearn_compat and the estimator module with `import sklearn` failing (the
    installed classes stay untouched)."""
    for name in ["sklearn", *(m for m in sys.modules if m.startswith("sklearn."))]:
        monkeypatch.setitem(sys.modules, name, None)   # import → ImportError
    mods = {}
    for short, mod in (("sklearn_compat", sklearn_compat), ("estimator", estimator_module)):
        name = "sea_kernels.train." + (short if short == "sklearn_compat" else "_estimator_nosk")
        spec = importlib.util.spec_from_file_location(name, mod.__file__)
        fresh = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, fresh)
        spec.loader.exec_module(fresh)
        mods[short] = fresh
    return mods["sklearn_compat"], mods["estimator"]


def test_fallback_without_sklearn(monkeypatch):
    compat, est = _load_without_sklearn(monkeypatch)
    with pytest.raises(ImportError):
        import sklearn.base  # noqa: F401
    assert compat.HAVE_SKLEARN is False
    Cls = est.SeAClassifier
    assert Cls.__mro__[1:] == (compat.EstimatorBase, compat._ParamsProtocol, object)
    assert not hasattr(Cls, "_validate_params") and not hasattr(Cls, "__sklearn_tags__")
    assert Cls._estimator_type == "classifier"
    X, y = _toy()
    clf = Cls(**QUICK)
    assert clf.get_params() == SeAClassifier(**QUICK).get_params()
    assert repr(clf).startswith("SeAClassifier(") and "lr=0.4" in repr(clf)
    assert clf.set_params(eta=0.2) is clf and clf.eta == 0.2
    with pytest.raises(ValueError, match="Invalid parameter 'etaa'"):
        clf.set_params(etaa=1)
    with pytest.raises(est.NotFittedError) as info:
        clf.predict(X)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    names = np.array(["a", "b", "c"])[y]
    with pytest.warns(compat.DataConversionWarning, match="column-vector y"):
        clf.fit(list(X), names[:, None])
    want = SeAClassifier(**{**QUICK, "eta": 0.2}).fit(X, names)
    np.testing.assert_array_equal(clf.predict(X), want.predict(X))
    assert clf.score(X, names) == pytest.approx(want.score(X, names))
    w = np.arange(60.0)
    assert clf.score(X, names, sample_weight=w) == pytest.approx(
        np.average(clf.predict(X) == names, weights=w))
    with pytest.raises(ValueError, match="Reshape your data"):
        clf.predict(X[0])
