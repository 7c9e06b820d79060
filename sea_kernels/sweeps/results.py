"""`SweepResult`: a finished sweep — its configurations, validation scores, the pick — and its
files (JSON, CSV; written atomically through `sea_kernels.data.writers`). docs/design.md §4.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.writers import write_text
from .grid import PARAMS

__all__ = ["SweepResult"]


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

        def fmt(r):
            return "  ".join(v.rjust(w) for v, w in zip(r, widths))

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

        def fmt(v):
            return "" if v is None or not math.isfinite(v) else repr(float(v))

        for i, cfg in enumerate(self.configs):
            tl = None if self.train_loss is None else self.train_loss[i]
            w.writerow([i, *(repr(float(cfg[p])) for p in PARAMS), fmt(self.val_top1[i]),
                        fmt(self.val_mean_per_class[i]), fmt(tl), int(self.diverged[i]),
                        int(rank[i])])
        write_text(path, buf.getvalue())
