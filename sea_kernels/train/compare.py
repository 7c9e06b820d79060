"""Honest comparisons: every method selected, refitted and tested once per seed, and the paired
difference to the baseline with a 95% interval over the seeds (issue #10).

    from sea_kernels.train.compare import compare
    res = compare(X, y, methods=("none", "sea", "mixup"), seeds=3, X_test=Xt, y_test=yt)
    print(res.table())                      # mean ± std, 95% CI, paired differences to "none"
    res.ci95("sea", paired=True)            # (lo, hi) of sea − none, test top-1
    res.to_json("compare.json"); res.plot("compare.png")

One seed per method is noise: on real features the SeA − baseline gap changes sign from seed to
seed. For every seed s and every method, in this order:

1. the validation split — (X_val, y_val) when given, else `stratified_split(y, val_fraction,
   random_state=s)` — and the training shuffles (`random_state=s`) are those of seed s, the same
   for every method of that seed;
2. the method's hyper-parameters are picked on validation (the selection `metric`; ties go to the
   first candidate, diverged candidates never): ``none`` and ``sea`` from one `sweep` pass of the
   sweep engine (docs/design.md §4; ``none`` is the best η = 0 row — a plain linear probe —,
   ``sea`` the best η > 0 row), every other augment from one `SeAClassifier` fit per candidate;
3. the winner is refitted on train + validation (`SeAClassifier`, the same seed) and scored on
   the test set: top-1 and mean per-class accuracy.

Per method: mean and sample standard deviation (ddof 1) over the seeds and a 95% Student-t
interval of the mean, mean ± t₀.₉₇₅,ₙ₋₁ · std/√n (`t_quantile`: `scipy.stats.t.ppf` when scipy
imports, else a built-in table for df ≤ 30 and the Cornish–Fisher expansion above it). The paired
difference method − baseline is taken seed by seed (the same split and shuffles) and summarised
the same way. With one seed there is no spread to estimate: std and interval are NaN and the
summary says so. The interval covers the variation over seeds (split and shuffles) on this one
test set, not the sampling error of the test set itself.

Candidates (`grid`): a dict of axes shared by all methods — lr, weight_decay (wd), alpha, lam,
delta, eta as in `sweep`, and me_ada_lr (ME-ADA's ascent step), isda_strength, me_ada_steps,
me_ada_gamma, me_ada_beta, me_ada_rounds — read per method:

| method | candidates |
| --- | --- |
| none | lr × wd × λ × δ with η = 0 (sweep) |
| sea | lr × wd × α × λ × δ × (η > 0) (sweep) |
| sea_neg | the same, one fit each |
| mixup, rand | lr × wd × λ × δ × (η > 0) |
| adv | lr × wd × λ × δ × η ∈ ADV_ETAS (the raw gradient is not normalised: its own scale) |
| isda | lr × wd × λ × δ (× isda_strength) |
| me_ada | lr × wd × λ × δ × me_ada_lr (default ME_ADA_ASCENT_STEPS) (× the other me_ada_*) |

Axes left out take `params.DEFAULTS` (as in `sweep`); ``grid=None`` is DEFAULT_GRID. An entry
keyed by a method name overrides for that method: a dict of axes (replacing those axes), a list
of candidate dicts, or a callable ``f(picked) -> list of candidate dicts`` where ``picked`` maps
the methods already selected for this seed (``none`` and ``sea`` come first) to their
hyper-parameters — candidates anchored on the baseline's pick, as python/demo.py does.
"""
from __future__ import annotations

import itertools
import math
import numbers
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..params import (
    AUGMENTS,
    BACKENDS,
    BATCH_SIZE,
    DEFAULTS,
    EPOCHS,
    GRID_PARAMS,
    ME_ADA_DEFAULTS,
    METRICS,
    VAL_FRACTION,
    ParameterError,
    canonical,
    check_choice,
    check_int,
    check_real,
    check_seed,
)

__all__ = ["compare", "CompareResult", "Stats", "Plan", "plan", "summarize", "t_quantile",
           "DEFAULT_GRID", "DEFAULT_METHODS", "ADV_ETAS", "ME_ADA_ASCENT_STEPS", "FORMAT"]

#: The tag in compare.json.
FORMAT = "sea_kernels.compare/1"
DEFAULT_METHODS = ("none", "sea", "mixup")
BASELINE = "none"
#: `grid=None`: what `compare` searches (per method as in the module docstring).
DEFAULT_GRID = {"lr": [0.25, 0.5, 1.0, 2.0, 4.0], "eta": [0.0, 0.2, 0.4, 0.8], "lam": [0.1, 1.0]}
#: η of `adv` (x + η g with the raw gradient g, whose norm grows with W: not SeA's scale).
ADV_ETAS = (0.2, 1.0)
#: ME-ADA's feature-space ascent step, searched next to the lr: the package default (0.003) and
#: two smaller ones (larger steps push the copies across the class boundaries; params.py).
ME_ADA_ASCENT_STEPS = (ME_ADA_DEFAULTS["lr"], 0.001, 0.0003)
#: Test metrics summarised (the paper's, Sec. 4).
TEST_METRICS = ("top1", "mean_per_class")
#: Methods selected by the sweep engine (one pass for both).
SWEEP_METHODS = ("none", "sea")
#: Axes beyond the sweep's, for the SeAClassifier-fitted augments: name → (integer?, methods).
EXTRA_AXES = {"isda_strength": (False, ("isda",)), "me_ada_lr": (False, ("me_ada",)),
              "me_ada_gamma": (False, ("me_ada",)), "me_ada_beta": (False, ("me_ada",)),
              "me_ada_steps": (True, ("me_ada",)), "me_ada_rounds": (True, ("me_ada",))}
AXES = GRID_PARAMS + tuple(EXTRA_AXES)
#: The sweep axes each method reads (η handled apart).
_BASE_AXES = {"none": ("lr", "weight_decay", "lam", "delta"),
              "sea": ("lr", "weight_decay", "alpha", "lam", "delta"),
              "sea_neg": ("lr", "weight_decay", "alpha", "lam", "delta"),
              "mixup": ("lr", "weight_decay", "lam", "delta"),
              "rand": ("lr", "weight_decay", "lam", "delta"),
              "adv": ("lr", "weight_decay", "lam", "delta"),
              "isda": ("lr", "weight_decay", "lam", "delta"),
              "me_ada": ("lr", "weight_decay", "lam", "delta")}
_POSITIVE_ETA = ("sea", "sea_neg", "mixup", "rand")

# Two-sided 95% Student-t quantiles t₀.₉₇₅,df (scipy.stats.t.ppf(0.975, df), 6 decimals).
_T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912,
         7: 2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139, 11: 2.200985, 12: 2.178813,
         13: 2.160369, 14: 2.144787, 15: 2.131450, 16: 2.119905, 17: 2.109816, 18: 2.100922,
         19: 2.093024, 20: 2.085963, 21: 2.079614, 22: 2.073873, 23: 2.068658, 24: 2.063899,
         25: 2.059539, 26: 2.055529, 27: 2.051831, 28: 2.048407, 29: 2.045230, 30: 2.042272}
_Z975 = 1.959963984540054


# ------------------------------------------------------------------------------- statistics

def t_quantile(df: int, *, use_scipy: bool | None = None) -> float:
    """t₀.₉₇₅ with df degrees of freedom (the half-width factor of a two-sided 95% interval).

    `scipy.stats.t.ppf` when scipy imports (use_scipy=None) or when asked (True); otherwise
    (False, or no scipy) the built-in table for df ≤ 30 (6 decimals) and above it the
    Cornish–Fisher expansion in 1/df to the fourth order (error < 1e-7 for df > 30)."""
    df = check_int("df", df, minimum=1)
    if use_scipy is not False:
        try:
            from scipy.stats import t
        except ImportError:
            if use_scipy:
                raise
        else:
            return float(t.ppf(0.975, df))
    if df in _T975:
        return _T975[df]
    z = _Z975
    g = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
         (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
         (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(gk / df ** (k + 1) for k, gk in enumerate(g))


@dataclass(frozen=True)
class Stats:
    """Summary of one quantity over the seeds. `values` per seed (NaN where the run failed);
    n, mean, std (ddof 1), the 95% Student-t interval ci95 = (lo, hi) of the mean and its
    halfwidth — computed on the finite values. std, ci95 and halfwidth are NaN when n < 2;
    `note` says why (or which seeds failed), else None."""
    values: tuple
    n: int
    mean: float
    std: float
    ci95: tuple
    halfwidth: float
    note: str | None = None

    def as_dict(self) -> dict:
        return {"values": list(self.values), "n": self.n, "mean": self.mean, "std": self.std,
                "ci95": list(self.ci95), "halfwidth": self.halfwidth, "note": self.note}


def summarize(values, *, use_scipy: bool | None = None) -> Stats:
    """`Stats` of per-seed values (NaN = a failed run, left out of n)."""
    vals = tuple(float(v) for v in values)
    arr = np.asarray(vals, dtype=np.float64)
    ok = arr[np.isfinite(arr)]
    n = int(ok.size)
    nan = math.nan
    notes = []
    if n < len(arr):
        notes.append(f"{len(arr) - n} of {len(arr)} seeds failed (diverged)")
    if n == 0:
        notes.append("no successful run: nothing to summarise")
        return Stats(vals, 0, nan, nan, (nan, nan), nan, "; ".join(notes))
    mean = float(ok.mean())
    if n == 1:
        notes.append("one seed: no spread over seeds to estimate, so no std and no interval")
        return Stats(vals, 1, mean, nan, (nan, nan), nan, "; ".join(notes))
    std = float(ok.std(ddof=1))
    if std == 0:
        notes.append(f"all {n} seeds gave the same value, so the interval has zero width (test "
                     "accuracy moves in steps of 1/n_test; more seeds show the spread)")
    half = t_quantile(n - 1, use_scipy=use_scipy) * std / math.sqrt(n)
    return Stats(vals, n, mean, std, (mean - half, mean + half), half,
                 "; ".join(notes) or None)


# ------------------------------------------------------------------------------- the plan

@dataclass
class Plan:
    """The checked arguments of a comparison: seeds, and per method how it is selected —
    ("sweep", grid) for none/sea, ("fits", [candidate dicts]) or ("fits", callable)."""
    methods: tuple
    seeds: tuple
    baseline: str | None
    metric: str
    spaces: dict

    def n_candidates(self, method: str) -> int | None:
        """Candidates of `method` per seed (None for a callable: known only per seed)."""
        kind, space = self.spaces[method]
        if kind == "sweep":
            return math.prod(len(v) for v in space.values())
        return None if callable(space) else len(space)

    def merged_sweep(self) -> dict | None:
        """One sweep grid for none and sea when both are compared and their grids differ only in
        η (the η = 0 rows are the baseline): the sweep engine trains them in one pass."""
        if not all(m in self.methods for m in SWEEP_METHODS):
            return None
        g_none, g_sea = self.spaces["none"][1], self.spaces["sea"][1]
        rest = [k for k in GRID_PARAMS if k not in ("eta", "alpha")]
        if any(g_none.get(k) != g_sea.get(k) for k in rest):
            return None
        return {**g_sea, "eta": [0.0] + [e for e in g_sea["eta"] if e != 0]}


def check_methods(methods, baseline: str | None = BASELINE) -> tuple:
    """The methods as a tuple (each one of params.AUGMENTS, no repeats, the baseline among
    them); ValueError naming `methods`."""
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise ValueError(f"methods must be a list of augment names from {AUGMENTS}, "
                         f"got {methods!r}")
    methods = tuple(methods)
    if not methods:
        raise ValueError("methods is empty; give at least the baseline and one method")
    for m in methods:
        if not isinstance(m, str) or m not in AUGMENTS:
            raise ValueError(f"methods: {m!r} is not one of {AUGMENTS}")
    dup = sorted({m for m in methods if methods.count(m) > 1})
    if dup:
        raise ValueError(f"methods: {dup} given more than once")
    if baseline is not None:
        check_choice("baseline", baseline, methods)
    return methods


def check_seeds(seeds) -> tuple:
    """Seeds: an int K ≥ 1 (seeds 0…K−1) or a list of distinct ints in [0, 2⁶⁴); ValueError /
    ParameterError naming `seeds`."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        k = check_int("seeds", seeds, minimum=1)
        return tuple(range(k))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise ParameterError(f"seeds must be a number of seeds or a list of seeds, got "
                             f"{type(seeds).__name__} {seeds!r}")
    out = []
    for s in seeds:
        if s is None:
            raise ParameterError("seeds must hold ints, got None")
        out.append(check_seed(s, "seeds"))
    out = tuple(out)
    if not out:
        raise ValueError("seeds is empty; give a number of seeds ≥ 1 or a list of seeds")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: {sorted({s for s in out if out.count(s) > 1})} given more than "
                         "once (a repeated seed repeats the same run)")
    return out


def _values(name: str, vals, where: str) -> list:
    """A checked, non-empty list of axis values (ints for the integer axes)."""
    if not isinstance(vals, (list, tuple, range, np.ndarray)):
        raise ValueError(f"{where} must be a list of values, got {vals!r}")
    vals = list(vals)
    if not vals:
        raise ValueError(f"{where} is empty; give at least one value")
    integer = EXTRA_AXES.get(name, (False,))[0]
    return [check_int(name, v, where) if integer else check_real(name, v, where) for v in vals]


def _axes(mapping: Mapping, where: str) -> dict:
    """{canonical axis: checked values} of a dict of axes."""
    out = {}
    for key, vals in mapping.items():
        name = key if key in EXTRA_AXES else _canonical(key, where)
        if name in out:
            raise ValueError(f"{where}: {name!r} given twice (as {key!r} and an alias)")
        out[name] = _values(name, vals, f"{where}[{key!r}]")
    return out


def _canonical(key, where: str) -> str:
    try:
        return canonical(key)
    except ValueError:
        raise ValueError(f"{where}: unknown axis {key!r}; expected one of {AXES}, or a method "
                         f"name from {AUGMENTS}") from None


def _method_axes(method: str, shared: dict, override: dict | None, where: str) -> dict:
    """The axes of one method: its base axes and η (module docstring), the override on top."""
    axes = {k: list(shared.get(k, [DEFAULTS[k]])) for k in _BASE_AXES[method]}
    if method == "none":
        axes["eta"] = [0.0]
    elif method == "adv":
        axes["eta"] = list(ADV_ETAS)
    elif method in _POSITIVE_ETA:
        etas = shared.get("eta", [DEFAULTS["eta"]])
        axes["eta"] = [e for e in etas if e > 0]
        if not axes["eta"] and not (override and "eta" in override):
            raise ValueError(f"{where}: {method!r} needs an η > 0 among grid['eta'] "
                             f"(got {etas})")
    for k, (_, users) in EXTRA_AXES.items():
        if method in users and k in shared:
            axes[k] = list(shared[k])
    if method == "me_ada" and "me_ada_lr" not in axes:
        axes["me_ada_lr"] = list(ME_ADA_ASCENT_STEPS)
    if override:
        allowed = [k for k in GRID_PARAMS if not (k == "eta" and method in ("isda", "me_ada"))]
        allowed += [k for k, (_, users) in EXTRA_AXES.items() if method in users]
        for k, v in override.items():
            if k not in allowed:
                raise ValueError(f"{where}[{method!r}]: {method} has no axis {k!r} "
                                 f"(its axes: {allowed})")
            axes[k] = list(v)
    if method == "none" and axes["eta"] != [0.0]:
        raise ValueError(f"{where}[{method!r}]: the baseline 'none' has η = 0 only, "
                         f"got {axes['eta']}")
    if method in _POSITIVE_ETA and not all(e > 0 for e in axes["eta"]):
        raise ValueError(f"{where}[{method!r}]: {method} needs η > 0, got {axes['eta']} "
                         "(η = 0 is the baseline 'none')")
    return axes


def _product(axes: Mapping) -> list:
    order = [k for k in AXES if k in axes]
    return [dict(zip(order, combo)) for combo in itertools.product(*(axes[k] for k in order))]


def _check_candidates(method, cands, *, epochs, batch_size, backend, device, where) -> list:
    """Candidate dicts checked as SeAClassifier would check them (before any training)."""
    from .estimator import SeAClassifier
    if isinstance(cands, Mapping) or not isinstance(cands, Sequence) or not cands:
        raise ValueError(f"{where} must be a non-empty list of hyper-parameter dicts, "
                         f"got {cands!r}")
    controlled = {"augment", "epochs", "batch_size", "random_state", "backend", "device",
                  "verbose"}
    out = []
    for i, cand in enumerate(cands):
        if not isinstance(cand, Mapping):
            raise ValueError(f"{where}[{i}] must be a dict of hyper-parameters, got {cand!r}")
        bad = controlled & set(cand)
        if bad:
            raise ValueError(f"{where}[{i}]: {sorted(bad)} are set by compare, not per candidate")
        cand = {(k if k in EXTRA_AXES or k == "momentum" else _canonical(k, f"{where}[{i}]")): v
                for k, v in cand.items()}
        if method in _POSITIVE_ETA and not cand.get("eta", DEFAULTS["eta"]) > 0:
            raise ValueError(f"{where}[{i}]: {method} needs η > 0, got {cand.get('eta')}")
        try:
            SeAClassifier(augment=method, epochs=epochs, batch_size=batch_size,
                          backend=backend, device=device, **cand)._validate_params()
        except TypeError as e:
            if isinstance(e, ValueError):
                raise
            raise ValueError(f"{where}[{i}]: {e}") from None
        out.append(dict(cand))
    return out


def plan(methods=DEFAULT_METHODS, seeds=3, grid=None, *, baseline: str | None = BASELINE,
         metric: str = "top1", epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
         backend: str = "auto", device: str = "cpu") -> Plan:
    """Check every argument of `compare` that is not data and resolve each method's candidates
    (module docstring); ValueError / ParameterError naming the argument. Nothing is trained."""
    methods = check_methods(methods, baseline)
    seeds = check_seeds(seeds)
    check_choice("metric", metric, METRICS)
    check_choice("backend", backend, BACKENDS)
    epochs, batch_size = check_int("epochs", epochs), check_int("batch_size", batch_size)
    if grid is None:
        grid = DEFAULT_GRID
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict of axes (and per-method entries), got "
                         f"{type(grid).__name__}")
    overrides = {k: v for k, v in grid.items() if k in AUGMENTS}
    for m in overrides:
        if m not in methods:
            raise ValueError(f"grid[{m!r}]: {m!r} is not among methods {methods}")
    shared = _axes({k: v for k, v in grid.items() if k not in AUGMENTS}, "grid")
    spaces = {}
    for m in methods:
        ov = overrides.get(m)
        where = f"grid[{m!r}]" if ov is not None else "grid"
        if m in SWEEP_METHODS:
            if ov is not None and not isinstance(ov, Mapping):
                raise ValueError(f"grid[{m!r}] must be a dict of sweep axes ({GRID_PARAMS}): "
                                 f"{m} is selected by the sweep engine")
            if ov is not None:
                ov = _axes(ov, f"grid[{m!r}]")
                extra = [k for k in ov if k not in GRID_PARAMS]
                if extra:
                    raise ValueError(f"grid[{m!r}]: {extra} are not sweep axes {GRID_PARAMS}")
            axes = _method_axes(m, shared, ov, "grid")
            from .grid import expand_grid
            expand_grid(axes)
            spaces[m] = ("sweep", axes)
        elif callable(ov):
            spaces[m] = ("fits", ov)
        elif ov is not None and not isinstance(ov, Mapping):
            spaces[m] = ("fits", _check_candidates(m, ov, epochs=epochs, batch_size=batch_size,
                                                   backend=backend, device=device, where=where))
        else:
            axes = _method_axes(m, shared, None if ov is None else _axes(ov, where), "grid")
            spaces[m] = ("fits", _check_candidates(m, _product(axes), epochs=epochs,
                                                   batch_size=batch_size, backend=backend,
                                                   device=device, where=where))
    return Plan(methods, seeds, baseline, metric, spaces)


# ------------------------------------------------------------------------------- the result

@dataclass
class CompareResult:
    """A finished comparison. `runs`: one dict per (seed, method) — seed, method, params (the
    selected hyper-parameters), val (their validation score), test_top1, test_mean_per_class
    (NaN when the run failed), candidates, diverged (candidates that diverged), select_s, fit_s,
    error (why the run failed, else None). `sweeps`: the SweepResults per seed (in memory only).
    """
    methods: tuple
    seeds: tuple
    baseline: str | None
    metric: str
    runs: list
    settings: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    sweeps: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- per-seed values
    def run(self, method: str, seed: int) -> dict:
        for r in self.runs:
            if r["method"] == method and r["seed"] == seed:
                return r
        raise KeyError(f"no run of {method!r} with seed {seed}")

    def values(self, method: str, metric: str = "top1") -> np.ndarray:
        """Test `metric` ("top1" or "mean_per_class") of `method`, one per seed, seed order."""
        check_choice("method", method, self.methods)
        check_choice("metric", metric, TEST_METRICS)
        return np.array([self.run(method, s)[f"test_{metric}"] for s in self.seeds],
                        dtype=np.float64)

    def differences(self, method: str, metric: str = "top1") -> np.ndarray:
        """Paired per-seed differences `method` − baseline (same seed: same split, shuffles)."""
        if self.baseline is None:
            raise ValueError("this comparison has no baseline")
        return self.values(method, metric) - self.values(self.baseline, metric)

    # ---------------------------------------------------------------- summaries
    def stats(self, method: str, metric: str = "top1", *, paired: bool = False) -> Stats:
        """`Stats` of the test metric of `method` over the seeds, or (paired=True) of its paired
        difference to the baseline."""
        return summarize(self.differences(method, metric) if paired
                         else self.values(method, metric))

    def mean(self, method: str, metric: str = "top1", *, paired: bool = False) -> float:
        return self.stats(method, metric, paired=paired).mean

    def std(self, method: str, metric: str = "top1", *, paired: bool = False) -> float:
        return self.stats(method, metric, paired=paired).std

    def ci95(self, method: str, metric: str = "top1", *, paired: bool = False) -> tuple:
        """(lo, hi): 95% Student-t interval of the mean over seeds; (NaN, NaN) for one seed."""
        return self.stats(method, metric, paired=paired).ci95

    def others(self) -> list:
        return [m for m in self.methods if m != self.baseline]

    # ---------------------------------------------------------------- text
    def table(self, *, params: bool = True) -> str:
        """Per-method test accuracy (per seed, mean ± std, 95% CI), the paired differences to
        the baseline, and (params) the hyper-parameters selected per seed."""
        seeds = ", ".join(map(str, self.seeds))
        n = len(self.seeds)
        lines = [f"test accuracy (%) over {n} seed{'s' * (n != 1)} ({seeds}): mean ± std, "
                 "95% Student-t interval of the mean"]
        lines += _stats_table(self, [(m, m) for m in self.methods], paired=False)
        notes = _notes(self, self.methods, paired=False)
        if self.baseline is not None and self.others():
            lines += ["", f"paired difference to {self.baseline} (points; per seed the same "
                          "split and shuffles)"]
            lines += _stats_table(self, [(m, f"{m} − {self.baseline}") for m in self.others()],
                                  paired=True)
            notes += _notes(self, self.others(), paired=True)
        for note in dict.fromkeys(notes):
            lines.append(f"note: {note}")
        if params:
            lines += ["", f"selected on validation ({self.metric}), per seed:"]
            width = max(len(m) for m in self.methods)
            for m in self.methods:
                for s in self.seeds:
                    r = self.run(m, s)
                    what = (fmt_params(r["params"], r.get("varied")) if r["params"] is not None
                            else f"failed: {r['error']}")
                    val = "" if r["val"] is None or not math.isfinite(r["val"]) else \
                        f"  (val {100 * r['val']:.2f}%)"
                    lines.append(f"  {m:{width}}  seed {s}: {what}{val}")
        lines.append(f"{len(self.runs)} runs, {self.wall_time_s:.1f} s")
        return "\n".join(lines)

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict:
        summary = {m: {k: self.stats(m, k).as_dict() for k in TEST_METRICS}
                   for m in self.methods}
        diffs = {} if self.baseline is None else {
            m: {k: self.stats(m, k, paired=True).as_dict() for k in TEST_METRICS}
            for m in self.others()}
        return {"format": FORMAT, "methods": list(self.methods), "seeds": list(self.seeds),
                "baseline": self.baseline, "metric": self.metric,
                "interval": "95% Student-t interval of the mean over seeds (df = n − 1)",
                "summary": summary, "differences": diffs, "runs": [dict(r) for r in self.runs],
                "settings": self.settings, "wall_time_s": self.wall_time_s}

    def to_json(self, path) -> Path:
        """compare.json (atomic, `data.writers.write_json`; NaN written as null): per-seed
        accuracies, selected parameters, mean, std and ci95 per method and per paired
        difference."""
        from ..data.writers import write_json
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping) -> "CompareResult":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a comparison ({FORMAT}): format {d.get('format')!r}")
        runs = []
        for r in d["runs"]:
            r = dict(r)
            for k in ("test_top1", "test_mean_per_class", "val"):
                r[k] = math.nan if r.get(k) is None else float(r[k])
            runs.append(r)
        return cls(methods=tuple(d["methods"]), seeds=tuple(d["seeds"]), baseline=d["baseline"],
                   metric=d["metric"], runs=runs, settings=dict(d.get("settings") or {}),
                   wall_time_s=float(d.get("wall_time_s") or 0.0))

    @classmethod
    def from_json(cls, path) -> "CompareResult":
        import json
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def plot(self, path, metric: str = "top1", title: str | None = None) -> Path:
        """compare.png: per method the test accuracy of every seed (dots) and the mean with its
        95% interval; beside it the paired differences to the baseline and zero. matplotlib's
        object API (Figure + FigureCanvasAgg), written atomically."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from ..data.writers import atomic_write
        check_choice("metric", metric, TEST_METRICS)
        name = {"top1": "top-1", "mean_per_class": "mean per-class"}[metric]
        panels = [(self.methods, False, f"test {name} accuracy (%)")]
        if self.baseline is not None and self.others():
            panels.append((self.others(), True, f"{name} − {self.baseline} (points, paired)"))
        fig = Figure(figsize=(4.2 + 3.2 * len(panels), 3.8))
        FigureCanvasAgg(fig)
        rng = np.random.default_rng(0)
        for j, (methods, paired, label) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), j + 1)
            for i, m in enumerate(methods):
                st = self.stats(m, metric, paired=paired)
                v = 100 * np.asarray(st.values)
                ok = np.isfinite(v)
                ax.scatter(i + rng.uniform(-0.12, 0.12, ok.sum()), v[ok], s=18, alpha=0.6,
                           color=f"C{self.methods.index(m) % 10}", zorder=2)
                if st.n:
                    err = None if not math.isfinite(st.halfwidth) else 100 * st.halfwidth
                    ax.errorbar(i + 0.28, 100 * st.mean, yerr=err, fmt="D", color="k",
                                capsize=4, ms=5, zorder=3)
            if paired:
                ax.axhline(0.0, color="0.5", lw=1, ls="--", zorder=1)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, rotation=30 if len(methods) > 4 else 0)
            ax.set_xlim(-0.6, len(methods) - 0.3)
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        n = len(self.seeds)
        fig.suptitle(title or f"{n} seed{'s' * (n != 1)}: dots per seed, ◆ mean ± 95% CI"
                     + ("" if n > 1 else " (one seed: no interval)"), fontsize=10)
        fig.tight_layout()
        path = Path(path)
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120,
                        bbox_inches="tight")
        return path


PARAM_SYMBOLS = {"lr": "lr", "eta": "η", "lam": "λ", "alpha": "α", "weight_decay": "wd",
                 "delta": "δ", "me_ada_lr": "ascent"}


def fmt_params(p: Mapping, keys=None) -> str:
    """`lr=1 η=0.4 λ=0.1` (paper symbols), the `keys` given (default: all)."""
    keys = list(p) if keys is None else [k for k in keys if k in p]
    return " ".join(f"{PARAM_SYMBOLS.get(k, k)}={p[k]:g}" for k in keys)


def _pct(v, sign=False) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}"


def _stats_table(res: CompareResult, rows, *, paired: bool) -> list:
    head = ["method", "top-1 per seed"]
    for k in TEST_METRICS:
        head += [f"{'top-1' if k == 'top1' else 'mean/class'} mean ± std", "95% CI"]
    table = []
    for m, label in rows:
        row = [label, " ".join(_pct(v, paired) for v in res.stats(m, "top1", paired=paired).values)]
        for k in TEST_METRICS:
            st = res.stats(m, k, paired=paired)
            row.append(f"{_pct(st.mean, paired)} ± {_pct(st.std)}" if st.n > 1
                       else _pct(st.mean, paired))
            row.append(f"[{_pct(st.ci95[0], paired)}, {_pct(st.ci95[1], paired)}]"
                       if math.isfinite(st.halfwidth) else "n/a")
        table.append(row)
    widths = [max(len(h), *(len(r[j]) for r in table)) for j, h in enumerate(head)]

    def fmt(r):
        return "  ".join(v.ljust(w) if j == 0 else v.rjust(w)
                         for j, (v, w) in enumerate(zip(r, widths))).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, table)]


def _notes(res: CompareResult, methods, *, paired: bool) -> list:
    out = []
    for m in methods:
        note = res.stats(m, "top1", paired=paired).note
        if note:
            out.append(note if note.startswith("one seed") else
                       f"{m}{f' − {res.baseline}' if paired else ''}: {note}")
    return out


# ------------------------------------------------------------------------------- compare

def _take(x, idx):
    import torch
    return x[torch.as_tensor(idx, dtype=torch.long, device=x.device)]


def _cat(a, b):
    import torch
    return torch.cat([a, b.to(a.device, a.dtype)])


def _score(pred, y, metric: str) -> float:
    from .metrics import mean_per_class, top1
    return top1(pred, y) if metric == "top1" else mean_per_class(pred, y)


def _best(indices, scores) -> int | None:
    """The first index with the highest finite score (None when none is finite)."""
    best = None
    for i in indices:
        if math.isfinite(scores[i]) and (best is None or scores[i] > scores[best]):
            best = i
    return best


def _report(progress) -> Callable | None:
    if callable(progress):
        return progress
    if not progress:
        return None

    def line(r):
        what = (fmt_params(r["params"], r.get("varied")) if r["params"] is not None
                else f"failed ({r['error']})")
        print(f"seed {r['seed']} {r['method']}: {what}; test top-1 {_pct(r['test_top1'])}% "
              f"({r['select_s'] + r['fit_s']:.1f} s)", file=sys.stderr, flush=True)
    return line


def _varied(cands) -> list:
    """The keys worth printing: lr, η, those whose value differs between candidates and those
    set to something other than the package default."""
    keys = list(dict.fromkeys(k for c in cands for k in c))
    return [k for k in keys if k in ("lr", "eta") or len({c.get(k) for c in cands}) > 1
            or any(c.get(k, DEFAULTS.get(k)) != DEFAULTS.get(k) for c in cands)]


def compare(X, y, *, methods=DEFAULT_METHODS, seeds=3, grid=None, X_val=None, y_val=None,
            val_fraction: float = VAL_FRACTION, X_test=None, y_test=None, epochs: int = EPOCHS,
            batch_size: int = BATCH_SIZE, metric: str = "top1", baseline: str | None = BASELINE,
            backend: str = "auto", device=None, progress=False) -> CompareResult:
    """Select, refit and test every method once per seed; summarise over the seeds.

    X, y: training features (n×d array/tensor or a list of blocks, prepared by Eq. 1 like
    `SeAClassifier`) and labels. Validation: (X_val, y_val), else a stratified hold-out of
    val_fraction of (X, y) drawn per seed. X_test, y_test: the test set (required).
    methods: augments of `SeAClassifier` (params.AUGMENTS), the `baseline` ("none", the η = 0
    linear probe) among them; seeds: an int K (seeds 0…K−1) or a list of distinct seeds.
    grid: candidates per method (module docstring; None → DEFAULT_GRID). metric: the validation
    selection metric ("top1" or "mean_per_class"). device: where everything trains (default
    CUDA when available, else CPU). progress: True → a line per run on stderr and the sweep's
    progress bar; a callable → called with each run's dict.

    Every argument is checked before any training (ValueError / ParameterError naming it); a
    run whose candidates all diverge, or whose refit diverges, is recorded with NaN accuracies
    and its reason, and left out of the summaries (the table says so).
    """
    import torch

    from ..data.features import block_dims, check_block_dims, prepare_features
    from ..data.labels import label_array
    from .devices import check_device
    from .divergence import TrainingDiverged
    from .estimator import SeAClassifier
    from .sweep import stratified_split, sweep

    t_start = time.perf_counter()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    check_device(device)
    p = plan(methods, seeds, grid, baseline=baseline, metric=metric, epochs=epochs,
             batch_size=batch_size, backend=backend, device=device)
    val_fraction = check_real("val_fraction", val_fraction)
    if X_test is None or y_test is None:
        raise ValueError("compare needs a test set: give X_test and y_test")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    dims = block_dims(X)
    for name, other in (("X_val", X_val), ("X_test", X_test)):
        if other is not None:
            check_block_dims(other, dims, name)
    x = prepare_features(X)                       # unit rows once (Eq. 1), on the CPU
    y_raw = label_array(y, "y", x.shape[0])
    x_te = prepare_features(X_test)
    y_te = label_array(y_test, "y_test", x_te.shape[0], rows_of="X_test")
    if X_val is not None:
        x_va_given = prepare_features(X_val)
        y_va_given = label_array(y_val, "y_val", x_va_given.shape[0], rows_of="X_val")
    unknown = sorted(set(np.unique(y_te).tolist()) - set(np.unique(y_raw).tolist()), key=str)
    if X_val is not None:
        unknown = [u for u in unknown if u not in set(np.unique(y_va_given).tolist())]
    if unknown:
        raise ValueError(f"y_test: labels {unknown[:5]} are not among the training classes")
    report = _report(progress)
    bars = progress is True
    merged = p.merged_sweep()
    runs, sweeps = [], {}
    failed = (math.nan, math.nan)

    def refit_and_test(augment, params, seed, x_fit, y_fit):
        """((test top-1, mean per-class), seconds) of the winner refitted on train + val."""
        clf = SeAClassifier(augment=augment, epochs=epochs, batch_size=batch_size,
                            random_state=seed, backend=backend, device=device, **params)
        t0 = time.perf_counter()
        clf.fit(x_fit, y_fit)
        pred = clf.predict(x_te)
        return ((_score(pred, y_te, "top1"), _score(pred, y_te, "mean_per_class")),
                time.perf_counter() - t0)

    def finish(done, picked, seed, method, *, params, val, n_cands, n_div, select_s,
               selection, varied, x_fit, y_fit, augment):
        """Refit the pick (if any) and test it; the run's record."""
        test, fit_s, error = failed, 0.0, None
        if params is None:
            error = "every candidate diverged"
        else:
            try:
                test, fit_s = refit_and_test(augment, params, seed, x_fit, y_fit)
                picked[method] = params
            except TrainingDiverged as e:
                error = f"refit on train + validation diverged: {e}"
        r = {"seed": seed, "method": method, "params": params, "varied": varied,
             "val": math.nan if val is None else float(val), "test_top1": float(test[0]),
             "test_mean_per_class": float(test[1]), "candidates": n_cands, "diverged": n_div,
             "selection": selection, "select_s": select_s, "fit_s": fit_s, "error": error}
        done[method] = r
        if report is not None:
            report(r)

    # the sweep-engine methods first: their picks may anchor the others' candidates
    order = ([m for m in p.methods if m in SWEEP_METHODS]
             + [m for m in p.methods if m not in SWEEP_METHODS])
    groups = [SWEEP_METHODS] if merged else [(m,) for m in order if m in SWEEP_METHODS]
    for seed in p.seeds:
        if X_val is None:
            tr, va = stratified_split(y_raw, val_fraction, random_state=seed)
            if len(va) == 0:
                raise ValueError("the stratified split left no validation rows; pass "
                                 "X_val/y_val or a larger val_fraction")
            x_tr, y_tr, x_va, y_va = _take(x, tr), y_raw[tr], _take(x, va), y_raw[va]
        else:
            x_tr, y_tr, x_va, y_va = x, y_raw, x_va_given, y_va_given
        fit_set = dict(x_fit=_cat(x_tr, x_va), y_fit=np.concatenate([y_tr, y_va]))
        picked, done = {}, {}
        sweeps[seed] = []
        for group in groups:
            g = merged if merged else p.spaces[group[0]][1]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="every configuration diverged")
                res = sweep(x_tr, y_tr, g, X_val=x_va, y_val=y_va, epochs=epochs,
                            batch_size=batch_size, random_state=seed, backend=backend,
                            metric=metric, retrain=False, progress=bars, device=device)
            sweeps[seed].append(res)
            scores = np.asarray(res.scores(), dtype=np.float64)
            for m in group:
                rows = [i for i, c in enumerate(res.configs) if (c["eta"] == 0) == (m == "none")]
                space = p.spaces[m][1]
                varied = [k for k in GRID_PARAMS if len(space.get(k, ())) > 1
                          or k in ("lr", "lam") or (k == "eta" and m != "none")]
                best = _best(rows, scores)
                finish(done, picked, seed, m,
                       params=None if best is None else dict(res.configs[best]),
                       val=None if best is None else scores[best], n_cands=len(rows),
                       n_div=int(np.asarray(res.diverged)[rows].sum()),
                       select_s=res.wall_time_s, varied=varied, augment="sea",
                       selection=("one sweep pass shared by none (η = 0 rows) and sea "
                                  "(η > 0 rows)" if merged else "sweep"), **fit_set)
        for m in order:
            if m in SWEEP_METHODS:
                continue
            space = p.spaces[m][1]
            if callable(space):
                try:
                    cands = space(dict(picked))
                except KeyError as e:
                    raise ValueError(f"grid[{m!r}]: its candidates need the pick of {e} (add "
                                     "that method, or it failed for this seed)") from None
                cands = _check_candidates(m, cands, epochs=epochs, batch_size=batch_size,
                                          backend=backend, device=device, where=f"grid[{m!r}]")
            else:
                cands = space
            t0 = time.perf_counter()
            vals, n_div = [], 0
            for cand in cands:
                clf = SeAClassifier(augment=m, epochs=epochs, batch_size=batch_size,
                                    random_state=seed, backend=backend, device=device, **cand)
                try:
                    clf.fit(x_tr, y_tr)
                except TrainingDiverged:
                    vals.append(math.nan)
                    n_div += 1
                    continue
                vals.append(_score(clf.predict(x_va), y_va, metric))
            best = _best(range(len(cands)), vals)
            finish(done, picked, seed, m, params=None if best is None else dict(cands[best]),
                   val=None if best is None else vals[best], n_cands=len(cands), n_div=n_div,
                   select_s=time.perf_counter() - t0, varied=_varied(cands), augment=m,
                   selection=f"{len(cands)} SeAClassifier fit{'s' * (len(cands) != 1)}",
                   **fit_set)
        runs += [done[m] for m in p.methods]
    settings = {"epochs": epochs, "batch_size": batch_size, "backend": backend, "device": device,
                "val_fraction": None if X_val is not None else val_fraction,
                "n_train": int(x.shape[0]), "n_test": int(x_te.shape[0]),
                "n_val_given": None if X_val is None else int(x_va_given.shape[0]),
                "candidates": {m: p.n_candidates(m) for m in p.methods},
                "merged_sweep": merged is not None}
    return CompareResult(methods=p.methods, seeds=p.seeds, baseline=p.baseline, metric=metric,
                         runs=runs, settings=settings, wall_time_s=time.perf_counter() - t_start,
                         sweeps=sweeps)

