"""Helpers shared by the runnable scripts (demo.py, reproduce_cifar10.py): timed fits and scores,
and the selection of one method on a validation split. The multi-seed comparison itself (select,
refit, test per seed; mean ± std, 95% intervals, paired differences) is
`sea_kernels.compare.compare`."""
from __future__ import annotations

import time

# ME-ADA's feature-space ascent step, searched on validation next to the lr (the paper searched
# ME-ADA's parameters): the fixed default 0.003 (sea_kernels.train.baselines) turns copies
# adversarial enough to cost CIFAR-10 test accuracy once W has grown (100 epochs on all 50,000
# rows). One definition, `sea_kernels.compare.ME_ADA_ASCENT_STEPS`; the first step is
# sea_kernels.train.baselines' default (what --quick runs).
from sea_kernels.compare import ME_ADA_ASCENT_STEPS  # noqa: F401  (re-exported)

PARAM_NAMES = {"lr": "lr", "eta": "η", "lam": "λ", "alpha": "α", "weight_decay": "wd", "delta": "δ",
               "me_ada_lr": "ascent"}


def fmt_params(p, sep=" "):
    """Hyper-parameters as `lr=0.4 η=0.2 λ=0.1` (paper symbols)."""
    return sep.join(f"{PARAM_NAMES.get(k, k)}={v:g}" for k, v in p.items())


def fit(augment, params, X, y, *, epochs, seed=0, eval_set=None):
    """SeAClassifier(augment, **params) fitted on (X, y); returns (model, seconds)."""
    from sea_kernels.train.estimator import SeAClassifier
    clf = SeAClassifier(augment=augment, epochs=epochs, random_state=seed, **params)
    t0 = time.perf_counter()
    clf.fit(X, y, eval_set=eval_set)
    return clf, time.perf_counter() - t0


def scores(clf, X, y):
    """(top-1, mean per-class accuracy) of clf on (X, y)."""
    from sea_kernels.train.metrics import mean_per_class, top1
    pred = clf.predict(X)
    return top1(pred, y), mean_per_class(pred, y)


def select(augment, candidates, data, *, epochs, seed=0):
    """Pick params among candidates by validation top-1, data = (X_train, y_train, X_val, y_val);
    a candidate whose training diverges is skipped. Returns (best params or None, its val top-1,
    seconds spent fitting)."""
    from sea_kernels.train.estimator import TrainingDiverged
    x_tr, y_tr, x_va, y_va = data
    best, best_val, spent = None, -1.0, 0.0
    for params in candidates:
        try:
            clf, secs = fit(augment, params, x_tr, y_tr, epochs=epochs, seed=seed)
        except TrainingDiverged:
            continue
        spent += secs
        val = scores(clf, x_va, y_va)[0]
        if val > best_val:
            best, best_val = params, val
    return best, best_val, spent
