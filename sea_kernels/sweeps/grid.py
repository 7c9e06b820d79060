"""Hyper-parameter grids of a sweep: configurations checked, completed and expanded in grid order
(docs/design.md §4).

    expand_grid({"lr": [0.5, 1.0], "eta": [0.0, 0.4]})   # 4 configurations, η fastest
    expand_grid(None)                                     # the paper's 1,728 (params.PAPER_GRID)

A configuration is a dict over PARAMS (= params.GRID_PARAMS: lr, weight_decay, alpha, lam, delta,
eta); names may be aliases (params.ALIASES: wd, lambda, margin, ...); a parameter left out takes
params.DEFAULTS. Values are checked by params.check_real.

The command line (`sea sweep`, `sea compare`) builds its grid by one rule, `command_line_grid`:
with no axis given, the command's documented grid; an axis given replaces its axis and every
other axis takes its ONE default value (`sea sweep --lr 0.5 1 --eta 0 0.4` is 4 configurations,
not 4 × the paper's 72 other combinations = 288) unless a base grid is named (``--grid paper``).
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from ..params import ALIASES, DEFAULTS, GRID_PARAMS, METRICS, PAPER_GRID, canonical, check_real

__all__ = ["PARAMS", "ALIASES", "DEFAULTS", "PAPER_GRID", "METRICS", "BASE_GRIDS",
           "normalize_config", "expand_grid", "command_line_grid", "describe_grid"]

PARAMS = GRID_PARAMS
#: The base grids a command line can name (``--grid NAME``): the paper's search (Sec. 4, 1,728
#: configurations) and one value per axis (params.DEFAULTS).
BASE_GRIDS = {"paper": PAPER_GRID, "defaults": {k: [DEFAULTS[k]] for k in PARAMS}}


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


def command_line_grid(given: Mapping[str, Sequence], named: str | None = None,
                      default: str = "paper",
                      bases: Mapping[str, Mapping[str, Sequence]] = BASE_GRIDS
                      ) -> tuple[str, dict]:
    """(base name, grid) of a command line whose axis options gave `given` (axis → values, only
    the axes given). The base is `named` when a base grid is named; else `default` (the
    command's documented grid) when no axis is given; else "defaults" (one value per axis). Each
    given axis replaces its axis of the base, its values in order, repeats dropped."""
    if named is not None and named not in bases:
        raise ValueError(f"unknown base grid {named!r}; expected one of {tuple(bases)}")
    name = named if named is not None else ("defaults" if given else default)
    out = {k: list(v) for k, v in bases[name].items()}
    for key, values in given.items():
        out[canonical(key)] = list(dict.fromkeys(values))
    return name, out


def describe_grid(grid: Mapping[str, Sequence]) -> str:
    """"N configurations (lr 3 × eta 2; fixed: weight_decay 1e-06, …)": the size of the grid over
    PARAMS (an axis left out counts at its default; keys that are no axis are ignored) and which
    axes vary."""
    axes = {name: [DEFAULTS[name]] for name in PARAMS}
    axes.update({ALIASES.get(k, k): list(v) for k, v in grid.items()
                 if ALIASES.get(k, k) in PARAMS})
    n = 1
    for v in axes.values():
        n *= len(v)
    parts = [" × ".join(f"{k} {len(v)}" for k, v in axes.items() if len(v) > 1),
             ", ".join(f"{k} {v[0]:g}" for k, v in axes.items() if len(v) == 1)]
    if parts[1]:
        parts[1] = "fixed: " + parts[1]
    return f"{n:,} configuration{'s' if n != 1 else ''} ({'; '.join(p for p in parts if p)})"
