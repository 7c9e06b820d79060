"""Evaluation metrics of the paper (Sec. 4): top-1 accuracy and mean per-class accuracy.

Both take predicted and true labels (numpy arrays, torch tensors or lists of the same length) and
return a Python float in [0, 1]. The paper reports mean per-class accuracy on Aircraft, Caltech101,
Flowers and Pets, top-1 elsewhere.
"""
from __future__ import annotations

import numpy as np

from ..data.labels import label_array

__all__ = ["top1", "mean_per_class"]


def _pair(pred, y):
    p, t = label_array(pred, "pred"), label_array(y, "y")
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"pred has {p.shape[0]} entries but y has {t.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("y is empty: accuracy of zero examples is undefined")
    return p, t


def top1(pred, y) -> float:
    """Fraction of examples with pred == y."""
    p, t = _pair(pred, y)
    return float(np.mean(p == t))


def mean_per_class(pred, y) -> float:
    """Mean over the classes present in y of the per-class recall (fraction of that class's
    examples predicted correctly). Classes only predicted, never true, do not count."""
    p, t = _pair(pred, y)
    classes, inverse = np.unique(t, return_inverse=True)
    correct = np.bincount(inverse, weights=(p == t).astype(np.float64), minlength=len(classes))
    counts = np.bincount(inverse, minlength=len(classes))
    return float(np.mean(correct / counts))
