"""Class labels: the one way they are read, checked and encoded (docs/design.md §1).

    y = label_array(y, "y", n_rows=len(X))          # 1-D numpy from a list / array / tensor
    classes, idx = encode_labels(y)                  # sorted unique labels, indices 0..C−1
    y = sortable_labels(y, "y", n_rows=len(X))       # SeAClassifier's and sweep's rule
    check_label_kind(y_test, classes, "y_test")       # the same kind of labels as the classes
    y = integer_labels(y, "y", n_rows=len(X))        # integer labels only

Every caller converts labels through these functions: the estimator and the sweep (labels of any
sortable type — integers, whole-valued floats (as integers), strings, bools, objects — remapped
to 0..C−1 through the sorted unique labels `classes_`, predictions mapped back; a continuous
target (floats with a fractional part) is refused, as scikit-learn's classifiers refuse it; the
sweep takes the classes of y and y_val together), the sweep engine (class indices), the
metrics and the file readers (`data.files`: names in a text file mapped to their index in a class
list).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["label_array", "integer_values", "integer_labels", "sortable_labels", "label_kind",
           "check_label_kind", "encode_labels", "class_indices"]


def label_array(y, name: str = "y", n_rows: int | None = None, *,
                rows_of: str = "X") -> np.ndarray:
    """y as a 1-D numpy array (from a list, a numpy array or a torch tensor, on any device).

    ValueError naming `name` when y is not 1-D, or (with `n_rows`) when it does not hold one label
    per row of `rows_of`.
    """
    if hasattr(y, "detach") and hasattr(y, "cpu"):   # a torch.Tensor (torch is not imported)
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per example), got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} labels but {rows_of} has {n_rows} rows")
    return arr


def integer_values(arr: np.ndarray, *, allow_bool: bool = False) -> np.ndarray | None:
    """`arr` itself when it has an integer dtype (bool too with `allow_bool`), int64 when it is a
    float array of finite whole numbers, else None (strings, fractions, NaN/Inf, objects)."""
    kind = arr.dtype.kind
    if kind in "iu" or (allow_bool and kind == "b"):
        return arr
    if kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    return None


def integer_labels(y, name: str = "y", n_rows: int | None = None) -> np.ndarray:
    """`label_array` restricted to integer class labels (SeAClassifier's rule): an integer dtype is
    kept, floats with whole values become int64; anything else is a TypeError."""
    arr = label_array(y, name)
    out = integer_values(arr) if arr.size or arr.dtype.kind in "iu" else None
    if out is None:
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return label_array(out, name, n_rows)


def sortable_labels(y, name: str = "y", n_rows: int | None = None, *,
                    rows_of: str = "X") -> np.ndarray:
    """`label_array` restricted to labels a classifier can sort into classes (SeAClassifier's and
    sweep's rule): integers, bools, strings and bytes are kept as they are; floats with whole
    values become int64 (as `integer_values`); an object array is kept when its values sort
    against each other (strings, numbers, ...).

    ValueError for NaN/Inf labels (no class can hold them) and for a continuous target — a float
    array with a fractional value — in scikit-learn's words ("Unknown label type: continuous",
    what `sklearn.utils.multiclass.type_of_target` calls it and its classifiers refuse);
    TypeError for complex or structured labels and for objects that do not sort (e.g. strings
    mixed with numbers, None).
    """
    arr = label_array(y, name, n_rows, rows_of=rows_of)
    kind = arr.dtype.kind
    if kind == "f":
        if not np.all(np.isfinite(arr)):
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise ValueError(f"{name} contains {bad} NaN/Inf label(s); every label must be a "
                             "class")
        ints = integer_values(arr)
        if ints is None:
            raise ValueError(f"Unknown label type: continuous. {name} holds float values with a "
                             "fractional part (a regression target); a classifier expects "
                             "discrete classes: pass integer or string labels")
        return ints
    if kind in "iubUSmM":
        return arr
    if kind == "O":
        try:
            np.unique(arr)
        except TypeError as e:
            types = sorted({type(v).__name__ for v in arr.tolist()})
            raise TypeError(f"{name} must hold labels that sort against each other (integers, "
                            f"strings, ...), got values of types {', '.join(types)} "
                            f"({e})") from None
        return arr
    raise TypeError(f"{name} must hold sortable class labels (integers, strings, bools), "
                    f"got dtype {arr.dtype}")


def label_kind(arr) -> str:
    """What sort of labels an array holds: "number" (integers, floats), "bool", "string"
    (str or bytes), "time" (datetime/timedelta) or "object"."""
    kind = np.asarray(arr).dtype.kind
    if kind in "iuf":
        return "number"
    return {"b": "bool", "U": "string", "S": "string", "m": "time", "M": "time"}.get(kind,
                                                                                     "object")


def check_label_kind(y, classes, name: str = "y") -> None:
    """TypeError when the labels `y` are of another kind (`label_kind`) than `classes` — strings
    against integers, say — so that no label could ever equal a class. Object arrays are not
    checked (their values may be anything sortable)."""
    got, want = label_kind(y), label_kind(classes)
    if got != want and "object" not in (got, want) and np.asarray(y).size:
        raise TypeError(f"{name} holds {got} labels but the classes are {want}s "
                        f"({np.asarray(classes)[:3].tolist()}…); give labels of the same kind")


def encode_labels(y, classes: Sequence | np.ndarray | None = None, name: str = "y", *,
                  min_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(classes, indices): `classes` the sorted unique labels of y (or the given class list, in its
    order), `indices` (int64) the position of every label of y in it, so classes[indices] == y.

    ValueError for a label not in a given class list, and for fewer than `min_classes` classes.
    """
    arr = label_array(y, name)
    if classes is None:
        classes, idx = np.unique(arr, return_inverse=True)
        idx = idx.reshape(-1)
    else:
        classes = np.asarray(classes)
        order = np.argsort(classes, kind="stable")
        ordered = classes[order]
        pos = np.minimum(np.searchsorted(ordered, arr), max(len(classes) - 1, 0))
        known = ordered[pos] == arr if len(classes) else np.zeros(arr.shape, dtype=bool)
        if not np.all(known):
            unknown = sorted({str(v) for v in arr[~known]})
            raise ValueError(f"{name}: labels not in the class list: {', '.join(unknown[:5])}"
                             + (" …" if len(unknown) > 5 else ""))
        idx = order[pos]
    if len(classes) < min_classes:
        found = f"a single class ({classes[:1].tolist()[0]!r})" if len(classes) else "no labels"
        raise ValueError(f"{name} contains {found}; a classifier needs at least {min_classes} "
                         "classes")
    return classes, idx.astype(np.int64, copy=False)


def class_indices(y, name: str = "y", n_rows: int | None = None,
                  num_classes: int | None = None) -> np.ndarray:
    """Labels that already are class indices (the sweep engine's input): 1-D, an integer dtype,
    in [0, num_classes) (num_classes default: max + 1). Returns int64; ValueError otherwise."""
    arr = label_array(y, name, n_rows)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D array of integer class indices, got dtype "
                         f"{arr.dtype} and shape {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold class indices ≥ 0, found {int(arr.min())}")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), found {int(arr.max())}")
    return arr
