"""`sweep()`: the hold-out split, the whole grid trained in one pass of the sweep engine, the pick
on validation, the retrained winner; `stratified_split` (docs/design.md §4).

    from sea_kernels import sweep
    result = sweep(X, y, X_test=X_test, y_test=y_test)     # the paper's 1,728 configurations
    print(result.table()); result.to_json("sweep.json"); result.to_csv("sweep.csv")

The paper (Sec. 4) picks lr ∈ {2⁻²…2³}, weight decay ∈ {0, 1e-6, 1e-5, 1e-4}, α ∈ {0.01, 0.02,
0.05}, λ ∈ {0.05, 0.1, 1}, δ ∈ {0, 1}, η ∈ {0, 0.2, 0.4, 0.8} on a validation set
(`params.PAPER_GRID`). The configurations come from `sweeps.grid`, the training from
`sweeps.engine.train_many`, the table from `sweeps.results.SweepResult`; under torchrun the
configurations are sharded across ranks by `sweeps.shards`.

A configuration that diverges (`train.divergence`) is frozen; its validation accuracy is NaN and
it is never picked.
"""
from __future__ import annotations

import time
import warnings
from typing import Mapping, Sequence

import numpy as np
import torch

from ..data.features import block_dims, check_block_dims
from ..data.labels import check_label_kind, encode_labels, label_array, sortable_labels
from ..params import BACKENDS, BATCH_SIZE, EPOCHS, VAL_FRACTION, check_choice, check_int, check_real
from .engine import (
    _as_tensor,
    _resolve_device,
    check_group_size,
    check_random_state,
    prepare,
    train_many,
)
from .grid import METRICS, expand_grid
from .results import SweepResult
from .shards import config_costs, train_sharded

__all__ = ["sweep", "stratified_split", "checked_settings"]


def stratified_split(y, val_fraction: float = VAL_FRACTION, random_state: int = 0):
    """(train_idx, val_idx), both sorted: val_fraction of every class (rounded, at least one row
    when the class has ≥ 2 rows, never all of them), chosen by a seeded shuffle per class.
    val_fraction in (0, 1) and random_state an int in [0, 2⁶⁴) (ValueError / ParameterError
    naming them otherwise)."""
    val_fraction = check_real("val_fraction", val_fraction)
    random_state = check_random_state(random_state)
    y = label_array(y, "y")
    rng = np.random.default_rng(random_state)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            continue
        n_val = min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
        val.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def _concat_rows(a, b):
    """Rows of b appended to a: arrays, tensors, or lists of feature blocks (blockwise)."""
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            raise ValueError("X and X_val must have the same feature blocks")
        return [_concat_rows(u, v) for u, v in zip(a, b)]
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ta, tb = _as_tensor(a), _as_tensor(b)
        return torch.cat([ta, tb.to(ta.device, ta.dtype)])
    return np.concatenate([np.asarray(a), np.asarray(b)])


def checked_settings(grid: Mapping[str, Sequence] | None = None, *,
                     val_fraction: float = VAL_FRACTION, epochs: int = EPOCHS,
                     batch_size: int = BATCH_SIZE, random_state: int = 0, backend: str = "auto",
                     chunk_size: int | None = None, max_chunk_bytes: int | None = None,
                     metric: str = "top1", group_size: int | None = None,
                     seed_name: str = "random_state") -> dict:
    """The arguments of `sweep` that are not data, checked (ValueError / ParameterError naming
    each; the seed named `seed_name`, e.g. "--seed"), as a dict of the checked values with the
    grid's configurations under "configs": the one check, which `sweep` runs and the command
    line runs before it reads any data."""
    check_choice("metric", metric, METRICS)
    check_choice("backend", backend, BACKENDS)
    return {"configs": expand_grid(grid), "metric": metric, "backend": backend,
            "epochs": check_int("epochs", epochs),
            "batch_size": check_int("batch_size", batch_size),
            "random_state": check_random_state(random_state, seed_name),
            "group_size": check_group_size(group_size),
            "val_fraction": check_real("val_fraction", val_fraction),
            "chunk_size": None if chunk_size is None else check_int("chunk_size", chunk_size),
            "max_chunk_bytes": (None if max_chunk_bytes is None
                                else check_int("max_chunk_bytes", max_chunk_bytes))}


def sweep(X, y, grid: Mapping[str, Sequence] | None = None, *, X_val=None, y_val=None,
          val_fraction: float = VAL_FRACTION, X_test=None, y_test=None, epochs: int = EPOCHS,
          batch_size: int = BATCH_SIZE, random_state: int = 0, backend: str = "auto",
          chunk_size: int | None = None, max_chunk_bytes: int | None = None,
          metric: str = "top1", retrain: bool = True, progress: bool = False,
          device=None, group_size: int | None = None) -> SweepResult:
    """Train every configuration of `grid` at once, pick the best on validation, retrain it.

    X: features (n×d array/tensor, or a list of blocks as `SeAClassifier` takes), prepared like
    the trainer does (`features.prepare_features`); y: labels (any sortable values; classes are
    the sorted unique labels of y and y_val, as SeAClassifier's classes_).
    grid: {name: [values]} over lr, weight_decay (alias wd), alpha, lam, delta, eta; parameters
    left out take DEFAULTS; None → the paper's 1,728-configuration grid (PAPER_GRID).
    Validation: (X_val, y_val), or a stratified, seeded hold-out of val_fraction of (X, y).
    Picks the argmax of validation `metric` ("top1" or "mean_per_class"; ties → first in grid
    order; diverged configurations never). With retrain, the winner is refitted on train + val
    with `SeAClassifier(backend=backend)` and scored on (X_test, y_test) when given; without it,
    the test scores are those of the sweep's own (train-only) winner.
    device: where the grid trains (default: the device of X for a tensor, else CUDA when
    available, else CPU; a device this machine lacks is a ValueError), the retrained model too.
    group_size: rows per SeA group in every batch (None: the whole batch, the paper;
    docs/design.md §5), for the grid and the retrained winner.

    Under torchrun (WORLD_SIZE > 1, or an initialised process group) the configurations are
    sharded across the ranks by cost (`sweeps.shards`), each rank trains its share in one
    pass and every rank gets the gathered scores and the same pick as one process; rank 0
    retrains the winner (result.model and the test scores exist on rank 0 only) and alone shows
    progress.

    Every argument and every data set — the scalars (numpy scalars accepted), the grid, the
    device, X/y, X_val/y_val and X_test/y_test (feature widths as X's, one label per row, labels
    of the kind of y's, test labels among the classes) — is checked before any training.
    """
    t0 = time.perf_counter()
    s = checked_settings(grid, val_fraction=val_fraction, epochs=epochs, batch_size=batch_size,
                         random_state=random_state, backend=backend, chunk_size=chunk_size,
                         max_chunk_bytes=max_chunk_bytes, metric=metric, group_size=group_size)
    configs, epochs, batch_size = s["configs"], s["epochs"], s["batch_size"]
    random_state, group_size, val_fraction = s["random_state"], s["group_size"], s["val_fraction"]
    chunk_size, max_chunk_bytes = s["chunk_size"], s["max_chunk_bytes"]
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    device = _resolve_device(device, X[0] if isinstance(X, (list, tuple)) else X)
    dims = block_dims(X)
    for name, other in (("X_val", X_val), ("X_test", X_test)):
        if other is not None:
            check_block_dims(other, dims, name)
            if name == "X_val" and isinstance(X, (list, tuple)) != isinstance(other,
                                                                               (list, tuple)):
                raise ValueError(f"X and {name} must have the same feature blocks (both one "
                                 "array, or both a list of arrays)")
    x_all = prepare(X, device)
    y_raw = sortable_labels(y, "y", x_all.shape[0])
    n = len(y_raw)
    x_va = yv_raw = None
    if X_val is not None:
        x_va = prepare(X_val, device)
        yv_raw = sortable_labels(y_val, "y_val", x_va.shape[0], rows_of="X_val")
        check_label_kind(yv_raw, y_raw, "y_val")
    classes, idx = encode_labels(y_raw if yv_raw is None else np.concatenate([y_raw, yv_raw]),
                                 min_classes=2)            # the classes of y and y_val together
    xt = yt = None
    if X_test is not None:
        xt = prepare(X_test, device)
        yt = label_array(y_test, "y_test", xt.shape[0], rows_of="X_test")
        check_label_kind(yt, classes, "y_test")
        encode_labels(yt, classes, "y_test")               # every test label is a class
        if retrain:
            xt = None                      # the refitted model prepares X_test itself
    y_all = torch.from_numpy(idx[:n])
    if X_val is None:
        tr, va = stratified_split(y_all, val_fraction, random_state)
        if len(va) == 0:
            raise ValueError("the stratified split left no validation rows; pass X_val/y_val")
        x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    else:
        x_tr, y_tr = x_all, y_all
        y_va = torch.from_numpy(idx[n:])
    c = len(classes)
    from ..train import distributed
    world = distributed.setup(device)
    rank0 = world.main

    def train(cfgs):
        return train_many(x_tr, y_tr, cfgs, epochs=epochs, batch_size=batch_size,
                          random_state=random_state, eval_sets={"val": (x_va, y_va)},
                          eval_every=None, num_classes=c, chunk_size=chunk_size,
                          max_chunk_bytes=max_chunk_bytes, device=device,
                          progress=progress and rank0, group_size=group_size)

    if world.size == 1:
        many = train(configs)
        val_top1 = many.history["val"]["top1"][-1]
        val_mpc = many.history["val"]["mean_per_class"][-1]
        many_diverged, many_loss, many_wall = many.diverged, many.train_loss[-1], many.wall_time_s

        def weight_of(i):
            return many.weights[i]
    else:
        costs = config_costs(configs, batch_size=batch_size, n_rows=x_tr.shape[0],
                             d=x_tr.shape[1], c=c, group_size=group_size)
        from ..train.checkpoint import fingerprint
        got = train_sharded(train, configs, costs, world, metric=metric,
                            fingerprint=fingerprint(x_tr, y_tr, classes))
        val_top1, val_mpc = got.val_top1, got.val_mean_per_class
        many_diverged, many_loss, many_wall = got.diverged, got.train_loss, got.wall_time_s

        def weight_of(i):
            return got.best_weights[i]
    scores = val_top1 if metric == "top1" else val_mpc
    finite = np.isfinite(scores)
    settings = {"epochs": epochs, "batch_size": batch_size, "random_state": random_state,
                "n_train": int(x_tr.shape[0]), "n_val": int(x_va.shape[0]), "num_classes": c,
                "val_fraction": None if X_val is not None else val_fraction,
                "retrain": retrain, "backend": backend, "device": str(device),
                "dtype": str(x_all.dtype).replace("torch.", ""),
                "group_size": group_size, "world_size": world.size,
                "sweep_train_time_s": many_wall}
    result = SweepResult(configs=configs, val_top1=val_top1, val_mean_per_class=val_mpc,
                         diverged=many_diverged, best=None, best_index=None, best_val=None,
                         metric=metric, train_loss=many_loss, settings=settings)
    if not finite.any():
        if rank0:
            warnings.warn("every configuration diverged; nothing to pick (lower the learning "
                          "rates)", RuntimeWarning, stacklevel=2)
        result.wall_time_s = time.perf_counter() - t0
        return result
    best = int(np.argmax(np.where(finite, scores, -np.inf)))
    result.best, result.best_index, result.best_val = dict(configs[best]), best, float(scores[best])
    from ..train.metrics import mean_per_class, top1
    if not rank0:                          # rank 0 retrains, scores on test and writes
        result.wall_time_s = time.perf_counter() - t0
        return result
    if retrain:
        from ..train.estimator import SeAClassifier
        if X_val is None:
            x_fit, y_fit = X, y_raw
        else:
            x_fit, y_fit = _concat_rows(X, X_val), np.concatenate([y_raw, yv_raw])
        model = SeAClassifier(augment="sea", epochs=epochs, batch_size=batch_size,
                              random_state=random_state, backend=backend, device=str(device),
                              group_size=group_size, **configs[best])
        with distributed.single_process():     # rank 0 alone: the one-process retrain
            model.fit(x_fit, y_fit)
        result.model = model
        if X_test is not None:
            pred = model.predict(X_test)
    elif X_test is not None:
        w = weight_of(best).to(device, xt.dtype)
        pred = classes[(xt @ w).argmax(dim=1).cpu().numpy()]
    if X_test is not None:
        result.test_top1, result.test_mean_per_class = top1(pred, yt), mean_per_class(pred, yt)
    result.wall_time_s = time.perf_counter() - t0
    return result
