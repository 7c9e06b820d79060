"""What `compare` will run, checked before any training: methods, seeds and each method's
candidate hyper-parameters (docs/design.md §7)."""
from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..params import (
    AUGMENTS,
    BACKENDS,
    BATCH_SIZE,
    COMPARE_GRID,
    COMPARE_METHODS,
    COMPARE_MLP_LRS,
    DEFAULTS,
    EPOCHS,
    GRID_PARAMS,
    HEADS,
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

#: The tag in compare.json.

FORMAT = "sea_kernels.compare/1"
DEFAULT_METHODS = COMPARE_METHODS
BASELINE = "none"
#: `grid=None`: what `compare` searches (per method as in the module docstring).
DEFAULT_GRID = COMPARE_GRID
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
#: head="mlp": the methods it compares and their rows in the result (`train.mlp.MLPProbe` with
#: η = 0 — cross-entropy — and with η > 0), the linear SeA probe's row (selected by the sweep
#: engine as `sea`), and the grid key of the MLP's lrs (its lr is Adam's, not the probe's SGD lr).
MLP_METHODS = {"none": "mlp_ce", "sea": "mlp_sea"}
LINEAR_SEA = "linear_sea"
MLP_LR = "mlp_lr"

# Two-sided 95% Student-t quantiles t₀.₉₇₅,df (scipy.stats.t.ppf(0.975, df), 6 decimals).



# ------------------------------------------------------------------------------- the plan

@dataclass
class Plan:
    """The checked arguments of a comparison: seeds, and per method (per row of the result) how
    it is selected — ("sweep", grid) for none/sea and the linear SeA row of head "mlp",
    ("fits", [candidate dicts]) or ("fits", callable) for SeAClassifier's other augments, ("mlp",
    [candidate dicts]) for the MLP rows. `pairs`: paired differences (method, reference) shown
    beside those to the baseline (head "mlp": mlp_sea − linear_sea)."""
    methods: tuple
    seeds: tuple
    baseline: str | None
    metric: str
    spaces: dict
    val_fraction: float = VAL_FRACTION
    group_size: int | None = None
    head: str = "linear"
    pairs: tuple = ()

    def n_candidates(self, method: str) -> int | None:
        """Candidates of `method` per seed (None for a callable: known only per seed)."""
        kind, space = self.spaces[method]
        if kind == "sweep":
            return math.prod(len(v) for v in space.values())
        return None if callable(space) else len(space)

    def merged_sweep(self) -> dict | None:
        """One sweep grid for none and sea when both are compared and their grids differ only in
        η (the η = 0 rows are the baseline): the sweep engine trains them in one pass."""
        if self.head != "linear" or not all(m in self.methods for m in SWEEP_METHODS):
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


def check_candidates(method, cands, *, epochs, batch_size, backend, device, where) -> list:
    """Candidate dicts checked as SeAClassifier would check them (before any training)."""
    from ..train.estimator import SeAClassifier
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
                          backend=backend, device=device, **cand).checked_params()
        except TypeError as e:
            if isinstance(e, ValueError):
                raise
            raise ValueError(f"{where}[{i}]: {e}") from None
        out.append(dict(cand))
    return out


def plan(methods=None, seeds=3, grid=None, *, baseline: str | None = BASELINE,
         metric: str = "top1", epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
         backend: str = "auto", device: str = "cpu", val_fraction: float = VAL_FRACTION,
         group_size: int | None = None, head: str = "linear") -> Plan:
    """Check every argument of `compare` that is not data and resolve each method's candidates
    (module docstring); ValueError / ParameterError naming the argument. Nothing is trained.
    The one check of these arguments: `compare` runs it, and so does `sea compare` before it
    reads any data. methods None: DEFAULT_METHODS, or ("none", "sea") with head="mlp"
    (`plan_mlp`)."""
    from ..sweeps.engine import check_group_size
    val_fraction = check_real("val_fraction", val_fraction)
    group_size = check_group_size(group_size)
    check_choice("head", head, HEADS)
    if methods is None:
        methods = tuple(MLP_METHODS) if head == "mlp" else DEFAULT_METHODS
    if head == "mlp":
        return plan_mlp(methods, seeds, grid, baseline=baseline, metric=metric, epochs=epochs,
                        batch_size=batch_size, backend=backend, device=device,
                        val_fraction=val_fraction, group_size=group_size)
    if isinstance(grid, Mapping) and MLP_LR in grid:
        raise ValueError(f"grid[{MLP_LR!r}]: the MLP's lrs are for head='mlp' (this is "
                         "head='linear')")
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
            from ..sweeps.grid import expand_grid
            expand_grid(axes)
            spaces[m] = ("sweep", axes)
        elif callable(ov):
            spaces[m] = ("fits", ov)
        elif ov is not None and not isinstance(ov, Mapping):
            spaces[m] = ("fits", check_candidates(m, ov, epochs=epochs, batch_size=batch_size,
                                                   backend=backend, device=device, where=where))
        else:
            axes = _method_axes(m, shared, None if ov is None else _axes(ov, where), "grid")
            spaces[m] = ("fits", check_candidates(m, _product(axes), epochs=epochs,
                                                   batch_size=batch_size, backend=backend,
                                                   device=device, where=where))
    return Plan(methods, seeds, baseline, metric, spaces, val_fraction, group_size)


def plan_mlp(methods, seeds, grid, *, baseline, metric, epochs, batch_size, backend, device,
             val_fraction, group_size) -> Plan:
    """The plan of head="mlp": methods ⊆ ("none", "sea") with "none" — rows mlp_ce (the MLP
    with η = 0: cross-entropy; candidates grid["mlp_lr"], default params.COMPARE_MLP_LRS),
    mlp_sea (the MLP with η > 0: mlp_lr × the η > 0 of grid["eta"]) and, with "sea",
    linear_sea (the linear SeA probe, the sweep of `sea` over the other axes of the grid, as
    head="linear" selects it). Baseline mlp_ce; pair mlp_sea − linear_sea."""
    from ..train.mlp import MLPProbe
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"methods must be a list from {tuple(MLP_METHODS)} with head='mlp', "
                         f"got {methods!r}")
    bad = [m for m in methods if m not in MLP_METHODS]
    if bad:
        raise ValueError(f"methods: {bad} with head='mlp'; the MLP head compares "
                         f"{tuple(MLP_METHODS)} (η = 0 and η > 0)")
    methods = check_methods(methods, baseline)
    if baseline is not None and baseline != BASELINE:
        raise ValueError(f"baseline must be {BASELINE!r} (the MLP with η = 0) with head='mlp'")
    grid = DEFAULT_GRID if grid is None else grid
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict of axes, got {type(grid).__name__}")
    other = [k for k in grid if k in AUGMENTS]
    if other:
        raise ValueError(f"grid: per-method entries {other} are not taken with head='mlp'")
    lrs = _values("lr", grid.get(MLP_LR, COMPARE_MLP_LRS), f"grid[{MLP_LR!r}]")
    p = plan(["sea"] if "sea" in methods else ["none"], seeds,
             {k: v for k, v in grid.items() if k != MLP_LR}, baseline=None, metric=metric,
             epochs=epochs, batch_size=batch_size, backend=backend, device=device,
             val_fraction=val_fraction, group_size=group_size)
    etas = _values("eta", grid.get("eta", [DEFAULTS["eta"]]), "grid['eta']")
    spaces = {MLP_METHODS["none"]: [{"lr": lr, "eta": 0.0} for lr in lrs]}
    if "sea" in methods:
        spaces[MLP_METHODS["sea"]] = [{"lr": lr, "eta": e} for lr in lrs for e in etas if e > 0]
    for m, cands in spaces.items():
        for c in cands:
            MLPProbe(epochs=epochs, batch_size=batch_size, group_size=group_size,
                     backend=backend, device=device, **c).checked_params()
    spaces = {m: ("mlp", c) for m, c in spaces.items()}
    pairs = ()
    if "sea" in methods:
        spaces[LINEAR_SEA] = p.spaces["sea"]
        pairs = ((MLP_METHODS["sea"], LINEAR_SEA),)
    return Plan(tuple(spaces), p.seeds, None if baseline is None else MLP_METHODS["none"],
                metric, spaces, val_fraction, group_size, head="mlp", pairs=pairs)
