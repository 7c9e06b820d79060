"""Helpers shared by the runnable scripts (demo.py, reproduce_cifar10.py): timed fits and scores."""
from __future__ import annotations

import time


def fit(augment, params, X, y, *, epochs, seed=0, eval_set=None):
    """SeAClassifier(augment, **params) fitted on (X, y); returns (model, seconds)."""
    from sea_kernels.trainer import SeAClassifier
    clf = SeAClassifier(augment=augment, epochs=epochs, random_state=seed, **params)
    t0 = time.perf_counter()
    clf.fit(X, y, eval_set=eval_set)
    return clf, time.perf_counter() - t0


def scores(clf, X, y):
    """(top-1, mean per-class accuracy) of clf on (X, y)."""
    from sea_kernels.metrics import mean_per_class, top1
    pred = clf.predict(X)
    return top1(pred, y), mean_per_class(pred, y)
