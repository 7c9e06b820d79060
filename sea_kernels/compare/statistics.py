"""Statistics over seeds for `compare` (docs/design.md §7): mean, sample std and the Student-t
95% interval (scipy's t quantile when importable, a built-in table otherwise)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..params import (
    check_int,
)

# ------------------------------------------------------------------------------- statistics

# two-sided 95% Student-t quantiles t_{0.975, df} for df ≤ 30, and the normal one
_T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912,
         7: 2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139, 11: 2.200985, 12: 2.178813,
         13: 2.160369, 14: 2.144787, 15: 2.131450, 16: 2.119905, 17: 2.109816, 18: 2.100922,
         19: 2.093024, 20: 2.085963, 21: 2.079614, 22: 2.073873, 23: 2.068658, 24: 2.063899,
         25: 2.059539, 26: 2.055529, 27: 2.051831, 28: 2.048407, 29: 2.045230, 30: 2.042272}
_Z975 = 1.959963984540054

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
