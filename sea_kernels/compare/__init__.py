"""Honest comparisons (docs/design.md §6): every method selected on validation, refitted and
tested once per seed; mean ± std, 95% intervals and paired differences to the baseline.

plan        what a comparison will run, checked before any training: methods, seeds, candidates
statistics  Student-t quantiles and the per-method summary (Stats, summarize)
result      CompareResult: the table, compare.json, the plot
run         compare(): the seeds × methods loop (sweep engine for none/sea, one fit per
            candidate otherwise); head="mlp": the MLP probe (train.mlp) with η = 0 and η > 0,
            and the linear SeA probe

    from sea_kernels.compare import compare
    res = compare(X, y, methods=("none", "sea", "mixup"), seeds=3, X_test=Xt, y_test=yt)

The names below are the package's public interface; none of these modules imports torch at
import time.
"""
from __future__ import annotations

from .plan import (
    ADV_ETAS,
    DEFAULT_GRID,
    DEFAULT_METHODS,
    FORMAT,
    LINEAR_SEA,
    ME_ADA_ASCENT_STEPS,
    MLP_METHODS,
    Plan,
    plan,
)
from .result import CompareResult, fmt_params
from .run import compare
from .statistics import Stats, summarize, t_quantile

__all__ = ["compare", "CompareResult", "Stats", "Plan", "plan", "summarize", "t_quantile",
           "fmt_params", "DEFAULT_GRID", "DEFAULT_METHODS", "ADV_ETAS", "ME_ADA_ASCENT_STEPS",
           "FORMAT", "MLP_METHODS", "LINEAR_SEA"]
