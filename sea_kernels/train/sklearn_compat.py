"""What makes `SeAClassifier` a scikit-learn estimator, and its fallback without one.

    class SeAClassifier(EstimatorBase): ...   # ClassifierMixin + BaseEstimator when importable

* `EstimatorBase`: scikit-learn's `ClassifierMixin, BaseEstimator` (that order, as scikit-learn
  requires) when scikit-learn imports, else a plain stand-in giving the same parameter protocol
  (get_params / set_params / repr through the constructor's signature) and `score`.
  `HAVE_SKLEARN` says which. The tags (`__sklearn_tags__`) state what the head cannot do:
  no NaN, no sparse input, one label per example.
* Input (`feature_input`): X is either ONE matrix — a 2-D numpy array, torch tensor, anything
  with `to_numpy()` / `__array__` (a pandas DataFrame), a list of rows (lists or 1-D arrays) —
  or a list/tuple of 2-D blocks (Eq. 1: the same examples' features from several models,
  `data.features.prepare_features`). A list is blocks iff its first element is 2-D. Object
  arrays are converted to numbers (float32), complex and sparse input are refused, a 1-D X is a
  ValueError that says how to reshape it.
* Labels (`target_input`): y=None and 2-D y are refused with scikit-learn's wording, except an
  n×1 column, which is raveled with a DataConversionWarning; everything else goes through
  `data.labels.sortable_labels` (the one label path: a continuous target is refused there, as
  scikit-learn's classifiers refuse it).
* `check_estimator` passes with no expected failure: a continuous target is a ValueError
  ("Unknown label type: continuous"), and a zero row of X — of any dtype — stays a zero row
  (`data.features.prepare_features`), as `sklearn.preprocessing.normalize` keeps it.
* Seeds (`checked_seed`, `draw_seed`): random_state may be an int, None, or a
  np.random.RandomState / np.random.Generator, from which fit draws its seed (consuming it, as
  scikit-learn estimators do).
"""
from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings

import numpy as np

from ..params import SEED_LIMIT, check_seed

try:  # the optional extra `sea-kernels[sklearn]`
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import DataConversionWarning
    from sklearn.exceptions import NotFittedError as _SkNotFitted
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

__all__ = ["HAVE_SKLEARN", "EstimatorBase", "NotFittedError",
           "DataConversionWarning", "accuracy", "feature_input", "check_n_features",
           "readonly_ok", "feature_names", "target_input", "checked_seed", "draw_seed"]

if not HAVE_SKLEARN:
    class DataConversionWarning(UserWarning):
        """y was converted (an n×1 column raveled); scikit-learn's warning where installed."""

    class _SkNotFitted(ValueError, AttributeError):
        pass


class NotFittedError(_SkNotFitted):
    """predict/score/coef_/save before fit (ValueError and AttributeError, and scikit-learn's
    NotFittedError where installed)."""


class _ParamsProtocol:
    """get_params / set_params / repr from the constructor's signature (BaseEstimator's contract:
    the constructor stores every argument unchanged under its own name)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p for p in sig.parameters if p != "self")

    def get_params(self, deep: bool = True) -> dict:
        """All constructor arguments, as a dict (scikit-learn semantics)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments by name; unknown names are a ValueError. Returns self."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator "
                                 f"{type(self).__name__}. Valid parameters are: {valid}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        defaults = {k: p.default for k, p in sig.parameters.items() if k != "self"}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return a is b


def accuracy(y, pred, sample_weight=None) -> float:
    """(Weighted) fraction of pred == y — scikit-learn's accuracy_score, written out so that it
    takes every label kind SeAClassifier does (object arrays of mixed numbers included)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if y.shape[0] != pred.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels but X has {pred.shape[0]} rows")
    if sample_weight is None:
        return float(np.mean(y == pred))
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != y.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"sample_weight must be {y.shape[0]} finite weights ≥ 0 with a "
                         f"positive sum, got shape {w.shape}")
    return float(np.average(y == pred, weights=w))


if HAVE_SKLEARN:
    class EstimatorBase(ClassifierMixin, BaseEstimator):
        """scikit-learn's classifier bases, and the tags of a linear head on fixed features."""

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.allow_nan = False      # a NaN row cannot be normalised (Eq. 1)
            tags.input_tags.sparse = False         # dense features only
            tags.target_tags.multi_output = False
            tags.target_tags.single_output = True
            tags.classifier_tags.multi_label = False
            return tags
else:
    class EstimatorBase(_ParamsProtocol):
        """The stand-in without scikit-learn: the parameter protocol and `score`."""

        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None) -> float:
            """Mean accuracy of predict(X) against y (weighted by sample_weight)."""
            return accuracy(y, self.predict(X), sample_weight)


# ------------------------------------------------------------------------------ input

def _is_sparse(X) -> bool:
    return hasattr(X, "tocsr") and hasattr(X, "nnz")   # scipy.sparse matrices and arrays


def _is_torch(X) -> bool:
    return hasattr(X, "detach") and hasattr(X, "cpu") and hasattr(X, "dim")


def _matrix(X, name: str):
    """One feature matrix: a torch tensor as it is, anything else as a numeric numpy array."""
    if _is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix; SeAClassifier trains on dense features: "
                        f"pass {name}.toarray()")
    if _is_torch(X):
        arr = X
    else:
        if not isinstance(X, np.ndarray):
            to_numpy = getattr(X, "to_numpy", None)   # pandas / polars DataFrames
            if callable(to_numpy):
                X = to_numpy()
            elif not (hasattr(X, "__array__") or isinstance(X, (list, tuple))):
                raise TypeError(f"{name} must be a numpy array, a torch.Tensor, a DataFrame, "
                                "a list of rows, or a list of 2-D feature blocks, got "
                                f"{type(X).__name__}")
        try:
            arr = np.asarray(X)
        except ValueError as e:   # ragged rows
            raise ValueError(f"{name} is not a rectangular matrix ({e})") from None
        if arr.dtype.kind == "c":
            raise ValueError(f"{name} holds complex numbers (Complex data not supported); "
                             "pass real features")
        if arr.dtype.kind in "OUSb":
            if arr.dtype.kind in "US":
                raise TypeError(f"{name} must hold numbers, got strings (dtype {arr.dtype})")
            arr = arr.astype(np.float32)   # numbers held as objects / bools; TypeError else
    if arr.ndim == 1:
        raise ValueError(f"{name} must be 2-D (examples × features), got a 1-D array of shape "
                         f"{tuple(arr.shape)}. Reshape your data: {name}.reshape(1, -1) for one "
                         f"example, {name}.reshape(-1, 1) for one feature")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (examples × features), got shape "
                         f"{tuple(arr.shape)}")
    for axis, what in ((0, "sample"), (1, "feature")):
        if arr.shape[axis] == 0:
            raise ValueError(f"{name} has 0 {what}(s) (shape={tuple(arr.shape)}) while a minimum "
                             "of 1 is required.")
    return arr


def feature_input(X, name: str = "X"):
    """X in a form `data.features.prepare_features` takes: one 2-D numpy array / tensor, or a list
    of them (blocks). A list/tuple whose first element is 2-D is a list of blocks (each converted
    as one matrix); any other list/tuple is one matrix given as rows."""
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{name} is empty; pass one feature matrix (n×d) or a list of "
                             "2-D feature blocks")
        if np.ndim(X[0]) == 2:   # np.ndim reads .ndim (tensors, DataFrames) before converting
            blocks = []
            for k, b in enumerate(X):
                if np.ndim(b) != 2:
                    raise ValueError(f"{name}[0] is a 2-D block but {name}[{k}] is not: pass "
                                     "either one matrix (a list of rows) or a list of 2-D "
                                     "feature blocks (Eq. 1)")
                blocks.append(_matrix(b, f"{name}[{k}]"))
            return blocks
        if all(_is_torch(r) for r in X):   # 1-D tensors as rows (on any device)
            import torch
            return _matrix(torch.stack([r.detach() for r in X]), name)
    return _matrix(X, name)


@contextlib.contextmanager
def readonly_ok():
    """Silence torch's warning about read-only numpy input (read-only memmaps, arrays
    scikit-learn hands over): prepare_features only reads its input."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        yield


def check_n_features(X, feature_dims, name: str = "X", owner: str = "SeAClassifier") -> None:
    """ValueError when the prepared input's feature layout differs from the fitted one, in
    scikit-learn's words for a single matrix ("X has 3 features, but ... is expecting 4")."""
    from ..data.features import block_dims, check_block_dims
    got = block_dims(X)
    if len(got) == 1 and len(feature_dims) == 1 and got[0] != feature_dims[0]:
        raise ValueError(f"{name} has {got[0]} features, but {owner} is expecting "
                         f"{feature_dims[0]} features as input")
    check_block_dims(X, feature_dims, name)


def feature_names(est, X, reset: bool) -> None:
    """Record (fit) or check (predict) the column names of a DataFrame, as scikit-learn does
    (feature_names_in_); nothing without scikit-learn or for plain arrays."""
    if not HAVE_SKLEARN or isinstance(X, (list, tuple, np.ndarray)) or _is_torch(X):
        if reset:
            est.__dict__.pop("feature_names_in_", None)
        return
    try:
        from sklearn.utils.validation import _check_feature_names
    except ImportError:   # a private helper; skip the names if a release moves it
        return
    _check_feature_names(est, X, reset=reset)


def target_input(y, n_rows: int | None = None):
    """y for `data.labels.sortable_labels`: None refused, an n×1 column raveled (with a
    DataConversionWarning), anything else passed on (1-D checked there). With `n_rows`, one
    sample is refused (two classes need two examples)."""
    import warnings
    if y is None:
        raise ValueError("SeAClassifier requires y to be passed, but the target y is None")
    if n_rows == 1:
        raise ValueError("X has 1 sample; a classifier needs examples of at least 2 classes")
    shape = getattr(y, "shape", None)
    if shape is None and isinstance(y, (list, tuple)):
        shape = np.shape(y)
    if shape is not None and len(shape) == 2 and shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change "
                      "the shape of y to (n_samples,), for example using ravel().",
                      DataConversionWarning, stacklevel=3)
        y = y.reshape(-1) if hasattr(y, "reshape") else np.ravel(y)
    elif shape is not None and len(shape) == 2:
        raise ValueError(f"y should be a 1d array (one label per example), got shape "
                         f"{tuple(shape)}; SeAClassifier is not a multi-output classifier")
    return y


# ------------------------------------------------------------------------------ seeds

def _is_rng(value) -> bool:
    return isinstance(value, (np.random.RandomState, np.random.Generator))


def checked_seed(value) -> int | None:
    """random_state checked without consuming anything: an int seed (`params.check_seed`), or
    None for None and for a numpy RandomState / Generator (fit draws from those)."""
    if _is_rng(value):
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return check_seed(int(value))
    return check_seed(value)


def draw_seed(random_state) -> int:
    """A fresh seed for a run without an int random_state: drawn from a numpy RandomState /
    Generator, else from torch.seed() without disturbing torch's global generator."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2 ** 63 - 1, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 63 - 1))
    import torch
    state = torch.get_rng_state()
    try:
        return int(torch.seed()) % SEED_LIMIT
    finally:
        torch.set_rng_state(state)
