"""Hyper-parameter sweeps: the whole grid trained in one pass over the features.

    from sea_kernels.sweep import sweep
    result = sweep(X, y, X_test=X_test, y_test=y_test)     # the paper's 1,728 configurations
    print(result.table()); result.to_json("sweep.json"); result.to_csv("sweep.csv")

The paper (Sec. 4) picks lr ∈ {2⁻²…2³}, weight decay ∈ {0, 1e-6, 1e-5, 1e-4}, α ∈ {0.01, 0.02,
0.05}, λ ∈ {0.05, 0.1, 1}, δ ∈ {0, 1}, η ∈ {0, 0.2, 0.4, 0.8} on a validation set. Every
configuration sees the same shuffled batches, so the grid shares each batch: the weights are
stacked into one d × kC matrix (X W and Xᵀ R are single GEMMs), K = X Xᵀ is computed once per batch
and the b×b SeA work runs batched over configurations (`sea_kernels.batched_sea`). Each
configuration's result is the one `SeAClassifier` gets training it alone:

* weights start at zero (d × C, no bias); each epoch `perm = torch.randperm(n, generator=g)` with
  `g = torch.Generator().manual_seed(random_state)`; batches are consecutive slices of perm of
  `batch_size` rows, the last partial batch kept;
* step: loss = fused_sea(x_b, y_b, W, α, η, λ, δ, reduction="mean"), then torch.optim.SGD
  (lr, momentum 0.9, dampening 0, weight_decay): d_p = ∇ + wd·W; buf = d_p at the first step,
  else 0.9·buf + d_p; W −= lr·buf;
* evaluation: plain logits X W; top-1 and mean per-class accuracy.

A configuration whose weights or loss become non-finite is marked diverged at that step and frozen
(removed from the stacked matrices, so it costs nothing further and cannot touch the others); its
validation accuracy is NaN and it is never picked.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..data.writers import write_text
from ..op.batched import Hyper, Workspace, batched_sea_grad
from .divergence import COLLAPSE_FACTOR, DIVERGENCE_FACTOR, zero_classifier_loss
from .metrics import label_array

PARAMS = ("lr", "weight_decay", "alpha", "lam", "delta", "eta")
ALIASES = {"wd": "weight_decay", "learning_rate": "lr", "lambda": "lam", "lambda_": "lam",
           "tau": "weight_decay", "margin": "delta"}
# Values for parameters a grid leaves out (DESIGN.md §1 defaults; lr 1.6 at batch 256).
DEFAULTS = {"lr": 1.6, "weight_decay": 1e-6, "alpha": 0.01, "lam": 0.1, "delta": 0.0, "eta": 0.8}
PAPER_GRID = {
    "lr": [2.0 ** i for i in range(-2, 4)],
    "weight_decay": [0.0, 1e-6, 1e-5, 1e-4],
    "alpha": [0.01, 0.02, 0.05],
    "lam": [0.05, 0.1, 1.0],
    "delta": [0.0, 1.0],
    "eta": [0.0, 0.2, 0.4, 0.8],
}
METRICS = ("top1", "mean_per_class")
MOMENTUM = 0.9


# ----------------------------------------------------------------------------- configurations

def _check_value(name: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: {name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where}: {name} must be finite, got {v}")
    if name in ("lr", "alpha", "lam") and v <= 0:
        raise ValueError(f"{where}: {name} must be > 0, got {v}")
    if name in ("weight_decay", "eta") and v < 0:
        raise ValueError(f"{where}: {name} must be ≥ 0, got {v}")
    return v


def _canonical(key) -> str:
    name = ALIASES.get(key, key)
    if name not in PARAMS:
        raise ValueError(f"unknown hyper-parameter {key!r}; expected one of {PARAMS} "
                         f"(aliases {sorted(ALIASES)})")
    return name


def normalize_config(config: Mapping[str, Any], where: str = "config") -> dict:
    """A full, validated configuration dict (keys PARAMS, float values); missing keys → DEFAULTS."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{where} must be a dict of hyper-parameters, got {type(config).__name__}")
    out = dict(DEFAULTS)
    seen = set()
    for key, value in config.items():
        name = _canonical(key)
        if name in seen:
            raise ValueError(f"{where}: {name!r} given twice (as {key!r} and an alias)")
        seen.add(name)
        out[name] = _check_value(name, value, where)
    return {k: out[k] for k in PARAMS}


def expand_grid(grid: Mapping[str, Sequence] | None = None) -> list[dict]:
    """The grid's configurations in grid order: the product over PARAMS in that order (the last,
    η, varies fastest), each parameter's values in the order given. None → the paper's grid."""
    grid = PAPER_GRID if grid is None else grid
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict mapping hyper-parameter names to lists of values, "
                         f"got {type(grid).__name__}")
    values = {}
    for key, vals in grid.items():
        name = _canonical(key)
        if name in values:
            raise ValueError(f"grid: {name!r} given twice (as {key!r} and an alias)")
        if not isinstance(vals, (list, tuple, range, np.ndarray)):
            raise ValueError(f"grid[{key!r}] must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value")
        values[name] = [_check_value(name, v, f"grid[{key!r}]") for v in vals]
    axes = [values.get(name, [DEFAULTS[name]]) for name in PARAMS]
    return [dict(zip(PARAMS, combo)) for combo in itertools.product(*axes)]


# ----------------------------------------------------------------------------- data helpers

def _as_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def _compute_dtype(x: torch.Tensor, dtype) -> torch.dtype:
    if dtype is not None:
        return dtype
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def prepare(X, device=None) -> torch.Tensor:
    """Features exactly as `SeAClassifier` prepares them: `features.prepare_features` (per-block
    L2 normalisation, concatenation, renormalisation; float32, float64 stays float64)."""
    from ..data.features import prepare_features
    return prepare_features(X, device=device)


def _labels(y) -> torch.Tensor:
    t = _as_tensor(y)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
        raise ValueError(f"labels must be a 1-D array of integer class indices, got dtype "
                         f"{t.dtype} and shape {tuple(t.shape)}")
    return t.long()


def stratified_split(y, val_fraction: float = 0.2, random_state: int = 0):
    """(train_idx, val_idx), both sorted: val_fraction of every class (rounded, at least one row
    when the class has ≥ 2 rows, never all of them), chosen by a seeded shuffle per class."""
    if not (0 < float(val_fraction) < 1):
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    y = np.asarray(_labels(y).cpu())
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


@torch.no_grad()
def evaluate_many(x: torch.Tensor, labels: torch.Tensor, weight_all: torch.Tensor, num_classes: int,
                  *, max_block_elems: int = 2 ** 23):
    """Top-1 and mean per-class accuracy (numpy (k,) each) of k stacked classifiers
    weight_all (d × kC) on features x (n × d), by plain logits x W_k (argmax, first on ties)."""
    n = x.shape[0]
    kc = weight_all.shape[1]
    k = kc // num_classes
    labels = labels.to(x.device)
    correct_by_class = torch.zeros(num_classes, k, dtype=torch.float64, device=x.device)
    block = max(1, max_block_elems // max(1, kc))
    for lo in range(0, n, block):
        xb = x[lo:lo + block].to(weight_all.dtype)
        yb = labels[lo:lo + block]
        pred = (xb @ weight_all).view(-1, k, num_classes).argmax(dim=2)
        correct = (pred == yb[:, None]).to(torch.float64)
        correct_by_class.index_add_(0, yb, correct)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    present = counts > 0
    top1 = correct_by_class.sum(dim=0) / max(1, n)
    mpc = (correct_by_class[present] / counts[present, None]).mean(dim=0)
    return top1.cpu().numpy(), mpc.cpu().numpy()


# ----------------------------------------------------------------------------- the engine

@dataclass
class ManyResult:
    """What `train_many` returns.

    weights: (k, d, C) float tensor on the CPU, in the order of `configs` (a diverged
      configuration keeps the non-finite weights it had when it was caught);
    diverged: (k,) bool — a non-finite loss or weight, or (checked after every epoch, as
      SeAClassifier does) a mean train loss above 2× the all-zero classifier's or 1000× the
      first epoch's; diverged_step: (k,) global step index at which it was caught (−1);
    train_loss: (epochs, k) mean of each epoch's batch losses (NaN once diverged);
    history: {eval set name: {"top1": (E, k), "mean_per_class": (E, k)}} at `eval_epochs`
      (1-based epoch numbers; NaN for diverged configurations).
    """
    configs: list
    weights: torch.Tensor
    diverged: np.ndarray
    diverged_step: np.ndarray
    train_loss: np.ndarray
    history: dict
    eval_epochs: list
    wall_time_s: float
    steps: int


class _Engine:
    """The stacked state of the still-active configurations and one SGD step for all of them.

    Configurations are kept in `order` (η = 0 first, so they form one cheap block)."""

    def __init__(self, configs, d, num_classes, dtype, device, chunk_size, max_chunk_bytes):
        self.c = num_classes
        self.d = d
        self.dtype = dtype
        self.device = device
        eta = np.array([cfg["eta"] for cfg in configs])
        self.order = np.concatenate([np.flatnonzero(eta == 0), np.flatnonzero(eta != 0)])
        self.active = self.order.copy()                     # original indices, engine order
        self.active_t = torch.as_tensor(self.active, device=device)
        vec = lambda key: torch.tensor([configs[i][key] for i in self.active], dtype=dtype,
                                       device=device)
        self.hyper = Hyper(vec("alpha"), vec("eta"), vec("lam"), vec("delta"))
        self.lr = vec("lr")
        self.wd = vec("weight_decay")
        self.n_baseline = int((eta == 0).sum())
        k = len(configs)
        self.weight_t = torch.zeros(k * num_classes, d, dtype=dtype, device=device)  # W_allᵀ
        self.buf = None
        self._rows()
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        self.workspace = Workspace()

    def _rows(self):
        c = self.c
        self.neg_lr_rows = (-self.lr).repeat_interleave(c)[:, None]
        self.wd_rows = self.wd.repeat_interleave(c)[:, None]
        self.any_wd = bool((self.wd != 0).any())

    @property
    def k(self) -> int:
        return len(self.active)

    def drop(self, bad: np.ndarray):
        """Freeze the configurations at positions `bad` (engine order); returns their original
        indices and weights (k_bad, d, C) on the CPU."""
        keep = np.flatnonzero(~bad)
        gone = np.flatnonzero(bad)
        c, d = self.c, self.d
        w3 = self.weight_t.view(self.k, c, d)
        frozen = w3[torch.as_tensor(gone, device=self.device)].transpose(1, 2).cpu().clone()
        keep_t = torch.as_tensor(keep, device=self.device)
        self.weight_t = w3[keep_t].reshape(len(keep) * c, d)
        if self.buf is not None:
            self.buf = self.buf.view(self.k, c, d)[keep_t].reshape(len(keep) * c, d)
        self.hyper = self.hyper.take(keep_t)
        self.lr, self.wd = self.lr[keep_t], self.wd[keep_t]
        self.n_baseline = int((keep < self.n_baseline).sum())
        orig = self.active[gone]
        self.active = self.active[keep]
        self.active_t = torch.as_tensor(self.active, device=self.device)
        self._rows()
        return orig, frozen

    def step(self, xb, yb):
        """One SGD step of every active configuration on batch (xb, yb). Returns (losses (k,),
        bad (k,) bool numpy: configurations whose loss was non-finite — their update is skipped
        and they should be dropped). Non-finite weights always make the loss non-finite (NaN/Inf
        logits reach it through the softmax) by the next step, so checking k numbers suffices."""
        grad, losses = batched_sea_grad(xb, yb, self.weight_t, self.hyper, self.c,
                                        n_baseline=self.n_baseline, chunk_size=self.chunk_size,
                                        max_chunk_bytes=self.max_chunk_bytes,
                                        workspace=self.workspace)
        bad = ~torch.isfinite(losses)
        bad_np = bad.cpu().numpy()  # one host sync per step
        if bad_np.any():  # rare: skip their update, keep everyone else's exact
            grad = grad.view(self.k, -1).masked_fill(bad[:, None], 0).view_as(grad)
        if self.any_wd:
            grad.addcmul_(self.weight_t, self.wd_rows)
        if self.buf is None:
            self.buf = grad.clone()  # grad lives in the workspace
        else:
            self.buf.mul_(MOMENTUM).add_(grad)
        self.weight_t.addcmul_(self.buf, self.neg_lr_rows)
        return losses, bad_np

    def nonfinite_weights(self) -> np.ndarray:
        return (~torch.isfinite(self.weight_t.view(self.k, -1)).all(dim=1)).cpu().numpy()

    def weights_dc(self) -> torch.Tensor:
        """W_all (d × kC) — the layout for evaluation GEMMs (a transposed view, no copy)."""
        return self.weight_t.T

    def full_weight(self, k_total: int, frozen: dict) -> torch.Tensor:
        """All configurations' weights (k_total × d × C) in the original order, on the CPU."""
        out = torch.empty(k_total, self.d, self.c, dtype=self.dtype)
        if self.k:
            out[torch.as_tensor(self.active)] = self.weight_t.view(self.k, self.c, self.d
                                                                   ).transpose(1, 2).cpu()
        for i, w in frozen.items():
            out[i] = w
        return out


def _resolve_device(device, x):
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_many(X, y, configs: Sequence[Mapping[str, Any]], *, epochs: int = 100,
               batch_size: int = 256, random_state: int = 0, eval_sets: Mapping | None = None,
               eval_every: int | None = 1, num_classes: int | None = None,
               chunk_size: int | None = None, max_chunk_bytes: int | None = None, device=None,
               dtype: torch.dtype | None = None, progress: bool = False) -> ManyResult:
    """Train every configuration at once on (X, y); features are used as given (prepare them
    first: `prepare`), float64 inputs train in float64, anything else in float32.

    configs: list of dicts (keys lr, weight_decay, alpha, lam, delta, eta; missing → DEFAULTS).
    eval_sets: {name: (X_e, y_e)} evaluated after every `eval_every` epochs and after the last
    (eval_every=None: only after the last). chunk_size: η > 0 configurations per batched b×b
    chunk (None: sized from max_chunk_bytes, default 16 MiB on CPU, 1 GiB on GPU); results do
    not depend on it beyond float rounding. Returns a ManyResult.
    """
    t0 = time.perf_counter()
    configs = [normalize_config(cfg, f"configs[{i}]") for i, cfg in enumerate(configs)]
    if not configs:
        raise ValueError("configs is empty; give at least one configuration")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if max_chunk_bytes is not None and (not isinstance(max_chunk_bytes, (int, np.integer))
                                        or max_chunk_bytes < 1):
        raise ValueError(f"max_chunk_bytes must be a positive integer or None, got "
                         f"{max_chunk_bytes!r}")
    device = _resolve_device(device, X)
    x = _as_tensor(X)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (samples × features), got shape "
                         f"{tuple(x.shape)}")
    dtype = _compute_dtype(x, dtype)
    x = x.to(device=device, dtype=dtype)
    labels = _labels(y).to(device)
    n, d = x.shape
    if labels.shape[0] != n:
        raise ValueError(f"y has {labels.shape[0]} labels but X has {n} rows")
    if labels.min() < 0:
        raise ValueError("labels must be class indices ≥ 0")
    c = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    if int(labels.max()) >= c:
        raise ValueError(f"labels must lie in [0, {c}), found {int(labels.max())}")
    evals = {}
    for name, (xe, ye) in (eval_sets or {}).items():
        xe = _as_tensor(xe).to(device=device, dtype=dtype)
        ye = _labels(ye).to(device)
        if xe.dim() != 2 or xe.shape[1] != d or ye.shape[0] != xe.shape[0]:
            raise ValueError(f"eval_sets[{name!r}] must be (X (m × {d}), y (m,)), got shapes "
                             f"{tuple(xe.shape)} and {tuple(ye.shape)}")
        evals[name] = (xe, ye)

    k = len(configs)
    engine = _Engine(configs, d, c, dtype, device, chunk_size, max_chunk_bytes)
    frozen: dict[int, torch.Tensor] = {}
    diverged = np.zeros(k, dtype=bool)
    diverged_step = np.full(k, -1, dtype=np.int64)
    train_loss = np.full((epochs, k), np.nan)
    history = {name: {"top1": [], "mean_per_class": []} for name in evals}
    eval_epochs = []
    gen = torch.Generator().manual_seed(int(random_state))
    steps_per_epoch = -(-n // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * steps_per_epoch, desc=f"sweep ({k} configs)", unit="step")

    def freeze(bad_positions, step):
        orig, weights = engine.drop(bad_positions)
        for i, w in zip(orig, weights):
            frozen[int(i)] = w
            diverged[i] = True
            diverged_step[i] = step

    zero_loss = np.array([zero_classifier_loss(cfg["lam"], cfg["delta"], c) for cfg in configs])
    step = 0
    with torch.no_grad():
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
            batches = 0
            for lo in range(0, n, batch_size):
                if engine.k == 0:
                    break
                idx = perm[lo:lo + batch_size]
                losses, bad = engine.step(x[idx], labels[idx])
                loss_sum.index_add_(0, engine.active_t, losses.to(torch.float64))
                if bad.any():
                    freeze(bad, step)
                step += 1
                batches += 1
                if bar is not None:
                    bar.update(1)
                    if bad.any() or batches == steps_per_epoch:
                        bar.set_postfix(active=engine.k, diverged=int(diverged.sum()))
            train_loss[epoch] = loss_sum.cpu().numpy() / max(1, batches)
            train_loss[epoch, diverged] = np.nan
            if engine.k:  # the trainer's criteria: W non-finite, or the loss exploded
                act = engine.active
                ep_loss = train_loss[epoch, act]
                first = train_loss[0, act]
                bad = (engine.nonfinite_weights() | ~np.isfinite(ep_loss)
                       | (ep_loss > COLLAPSE_FACTOR * zero_loss[act])
                       | (ep_loss > DIVERGENCE_FACTOR * np.maximum(first, 1e-12)))
                if bad.any():
                    freeze(bad, step)
                    train_loss[epoch, diverged] = np.nan
            last = epoch == epochs - 1
            if evals and (last or (eval_every and (epoch + 1) % eval_every == 0)):
                eval_epochs.append(epoch + 1)
                for name, (xe, ye) in evals.items():
                    t1 = np.full(k, np.nan)
                    mpc = np.full(k, np.nan)
                    if engine.k:
                        a, b_ = evaluate_many(xe, ye, engine.weights_dc(), c)
                        t1[engine.active], mpc[engine.active] = a, b_
                    history[name]["top1"].append(t1)
                    history[name]["mean_per_class"].append(mpc)
    if bar is not None:
        bar.close()
    for name in history:
        for m in history[name]:
            history[name][m] = np.array(history[name][m]).reshape(len(eval_epochs), k)
    weights = engine.full_weight(k, frozen)
    return ManyResult(configs=configs, weights=weights, diverged=diverged,
                      diverged_step=diverged_step, train_loss=train_loss, history=history,
                      eval_epochs=eval_epochs, wall_time_s=time.perf_counter() - t0, steps=step)


# ----------------------------------------------------------------------------- results

def _num(v):
    """JSON-safe float (NaN/inf → None)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _arr(a):
    return np.array([np.nan if v is None else v for v in a], dtype=float)


@dataclass
class SweepResult:
    """A finished sweep. Arrays are indexed like `configs` (grid order)."""
    configs: list
    val_top1: np.ndarray
    val_mean_per_class: np.ndarray
    diverged: np.ndarray
    best: dict | None
    best_index: int | None
    best_val: float | None
    metric: str = "top1"
    test_top1: float | None = None
    test_mean_per_class: float | None = None
    wall_time_s: float = 0.0
    train_loss: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    model: Any = None

    def scores(self) -> np.ndarray:
        return self.val_top1 if self.metric == "top1" else self.val_mean_per_class

    def ranking(self) -> np.ndarray:
        """Configuration indices, best first (diverged last; ties in grid order)."""
        s = np.where(np.isfinite(self.scores()), self.scores(), -np.inf)
        return np.lexsort((np.arange(len(s)), -s))

    def table(self, n: int = 10) -> str:
        """The top-n configurations as an aligned text table."""
        head = ["rank", "#", *PARAMS, "val_top1", "val_mpc"]
        rows = []
        for rank, i in enumerate(self.ranking()[:n], 1):
            cfg = self.configs[i]
            rows.append([str(rank), str(i), *(f"{cfg[p]:g}" for p in PARAMS),
                         "diverged" if self.diverged[i] else f"{100 * self.val_top1[i]:.2f}",
                         "" if self.diverged[i] else f"{100 * self.val_mean_per_class[i]:.2f}"])
        widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h)
                  for j, h in enumerate(head)]
        fmt = lambda r: "  ".join(v.rjust(w) for v, w in zip(r, widths))
        lines = [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)]
        lines.append(f"{len(self.configs)} configurations, {int(self.diverged.sum())} diverged; "
                     f"picked by validation {self.metric}; {self.wall_time_s:.1f} s")
        if self.test_top1 is not None:
            lines.append(f"test: top-1 {100 * self.test_top1:.2f}%, mean per-class "
                         f"{100 * self.test_mean_per_class:.2f}%")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "best": self.best, "best_index": self.best_index, "best_val": _num(self.best_val),
            "test_top1": _num(self.test_top1),
            "test_mean_per_class": _num(self.test_mean_per_class),
            "wall_time_s": self.wall_time_s,
            "settings": self.settings,
            "configs": [dict(c) for c in self.configs],
            "val_top1": [_num(v) for v in self.val_top1],
            "val_mean_per_class": [_num(v) for v in self.val_mean_per_class],
            "diverged": [bool(v) for v in self.diverged],
            "train_loss": None if self.train_loss is None else [_num(v) for v in self.train_loss],
        }

    def to_json(self, path):
        """Everything but the model, as JSON (NaN → null); written atomically."""
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_json(cls, path) -> "SweepResult":
        d = json.loads(Path(path).read_text())
        return cls(configs=d["configs"], val_top1=_arr(d["val_top1"]),
                   val_mean_per_class=_arr(d["val_mean_per_class"]),
                   diverged=np.array(d["diverged"], dtype=bool), best=d["best"],
                   best_index=d["best_index"], best_val=d["best_val"], metric=d["metric"],
                   test_top1=d["test_top1"], test_mean_per_class=d["test_mean_per_class"],
                   wall_time_s=d["wall_time_s"],
                   train_loss=None if d.get("train_loss") is None else _arr(d["train_loss"]),
                   settings=d.get("settings", {}))

    def to_csv(self, path):
        """One row per configuration (grid order): index, hyper-parameters, validation metrics
        (empty when diverged), diverged, rank; written atomically."""
        rank = np.empty(len(self.configs), dtype=int)
        rank[self.ranking()] = np.arange(1, len(self.configs) + 1)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["index", *PARAMS, "val_top1", "val_mean_per_class", "train_loss", "diverged",
                    "rank"])
        for i, cfg in enumerate(self.configs):
            fmt = lambda v: "" if v is None or not math.isfinite(v) else repr(float(v))
            tl = None if self.train_loss is None else self.train_loss[i]
            w.writerow([i, *(repr(float(cfg[p])) for p in PARAMS), fmt(self.val_top1[i]),
                        fmt(self.val_mean_per_class[i]), fmt(tl), int(self.diverged[i]),
                        int(rank[i])])
        write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- sweep()

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


def sweep(X, y, grid: Mapping[str, Sequence] | None = None, *, X_val=None, y_val=None,
          val_fraction: float = 0.2, X_test=None, y_test=None, epochs: int = 100,
          batch_size: int = 256, random_state: int = 0, backend: str = "auto",
          chunk_size: int | None = None, max_chunk_bytes: int | None = None,
          metric: str = "top1", retrain: bool = True, progress: bool = False,
          device=None) -> SweepResult:
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
    available, else CPU); the retrained model uses it too.
    """
    t0 = time.perf_counter()
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    configs = expand_grid(grid)
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    device = _resolve_device(device, X[0] if isinstance(X, (list, tuple)) else X)
    x_all = prepare(X, device)
    y_raw = label_array(y, "y")
    if x_all.shape[0] != y_raw.shape[0]:
        raise ValueError(f"y has {y_raw.shape[0]} labels but X has {x_all.shape[0]} rows")
    yv_raw = None if y_val is None else label_array(y_val, "y_val")
    classes = np.unique(y_raw if yv_raw is None else np.concatenate([y_raw, yv_raw]))
    if len(classes) < 2:
        raise ValueError(f"y contains a single class ({classes[0]!r}); need at least 2")
    y_all = torch.from_numpy(np.searchsorted(classes, y_raw).astype(np.int64))
    if X_val is None:
        tr, va = stratified_split(y_all, val_fraction, random_state)
        if len(va) == 0:
            raise ValueError("the stratified split left no validation rows; pass X_val/y_val")
        x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    else:
        x_tr, y_tr = x_all, y_all
        x_va = prepare(X_val, device)
        y_va = torch.from_numpy(np.searchsorted(classes, yv_raw).astype(np.int64))
        if x_va.shape[0] != y_va.shape[0]:
            raise ValueError(f"y_val has {y_va.shape[0]} labels but X_val has {x_va.shape[0]} rows")
    c = len(classes)
    many = train_many(x_tr, y_tr, configs, epochs=epochs, batch_size=batch_size,
                      random_state=random_state, eval_sets={"val": (x_va, y_va)},
                      eval_every=None, num_classes=c, chunk_size=chunk_size,
                      max_chunk_bytes=max_chunk_bytes, device=device, progress=progress)
    val_top1 = many.history["val"]["top1"][-1]
    val_mpc = many.history["val"]["mean_per_class"][-1]
    scores = val_top1 if metric == "top1" else val_mpc
    finite = np.isfinite(scores)
    settings = {"epochs": epochs, "batch_size": batch_size, "random_state": random_state,
                "n_train": int(x_tr.shape[0]), "n_val": int(x_va.shape[0]), "num_classes": c,
                "val_fraction": None if X_val is not None else val_fraction,
                "retrain": retrain, "backend": backend, "device": str(device),
                "dtype": str(x_all.dtype).replace("torch.", ""),
                "sweep_train_time_s": many.wall_time_s}
    result = SweepResult(configs=configs, val_top1=val_top1, val_mean_per_class=val_mpc,
                         diverged=many.diverged, best=None, best_index=None, best_val=None,
                         metric=metric, train_loss=many.train_loss[-1], settings=settings)
    if not finite.any():
        warnings.warn("every configuration diverged; nothing to pick (lower the learning rates)",
                      RuntimeWarning, stacklevel=2)
        result.wall_time_s = time.perf_counter() - t0
        return result
    best = int(np.argmax(np.where(finite, scores, -np.inf)))
    result.best, result.best_index, result.best_val = dict(configs[best]), best, float(scores[best])
    from .metrics import mean_per_class, top1
    if retrain:
        from .estimator import SeAClassifier
        if X_val is None:
            x_fit, y_fit = X, y_raw
        else:
            x_fit, y_fit = _concat_rows(X, X_val), np.concatenate([y_raw, yv_raw])
        model = SeAClassifier(augment="sea", epochs=epochs, batch_size=batch_size,
                              random_state=random_state, backend=backend, device=str(device),
                              **configs[best])
        model.fit(x_fit, y_fit)
        result.model = model
        if X_test is not None:
            pred = model.predict(X_test)
    elif X_test is not None:
        xt = prepare(X_test, device)
        w = many.weights[best].to(device, xt.dtype)
        pred = classes[(xt @ w).argmax(dim=1).cpu().numpy()]
    if X_test is not None:
        yt = label_array(y_test, "y_test")
        result.test_top1, result.test_mean_per_class = top1(pred, yt), mean_per_class(pred, yt)
    result.wall_time_s = time.perf_counter() - t0
    return result
