"""Hyper-parameter grids of a sweep: configurations checked, completed and expanded in grid order
(docs/design.md §4).

    expand_grid({"lr": [0.5, 1.0], "eta": [0.0, 0.4]})   # 4 configurations, η fastest
    expand_grid(None)                                     # the paper's 1,728 (params.PAPER_GRID)

A configuration is a dict over PARAMS (= params.GRID_PARAMS: lr, weight_decay, alpha, lam, delta,
eta); names may be aliases (params.ALIASES: wd, lambda, margin, ...); a parameter left out takes
params.DEFAULTS (the paper's, lr 1.6 at batch 256). Values are checked by params.check_real.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from ..params import ALIASES, DEFAULTS, GRID_PARAMS, METRICS, PAPER_GRID, canonical, check_real

__all__ = ["PARAMS", "ALIASES", "DEFAULTS", "PAPER_GRID", "METRICS", "normalize_config",
           "expand_grid"]

PARAMS = GRID_PARAMS


def normalize_config(config: Mapping[str, Any], where: str = "config") -> dict:
    """A full, validated configuration dict (keys PARAMS, float values); missing keys → DEFAULTS."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{where} must be a dict of hyper-parameters, got {type(config).__name__}")
    out = dict(DEFAULTS)
    seen = set()
    for key, value in config.items():
        name = canonical(key)
        if name in seen:
            raise ValueError(f"{where}: {name!r} given twice (as {key!r} and an alias)")
        seen.add(name)
        out[name] = check_real(name, value, where)
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
        name = canonical(key)
        if name in values:
            raise ValueError(f"grid: {name!r} given twice (as {key!r} and an alias)")
        if not isinstance(vals, (list, tuple, range, np.ndarray)):
            raise ValueError(f"grid[{key!r}] must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value")
        values[name] = [check_real(name, v, f"grid[{key!r}]") for v in vals]
    axes = [values.get(name, [DEFAULTS[name]]) for name in PARAMS]
    return [dict(zip(PARAMS, combo)) for combo in itertools.product(*axes)]
