"""`CompareResult`: per-seed accuracies and picks of `compare`, their summaries (mean, std, 95%
intervals, paired differences to the baseline), the text table, compare.json and the plot."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..params import (
    check_choice,
)
from .plan import FORMAT, TEST_METRICS
from .statistics import Stats, summarize

# ------------------------------------------------------------------------------- the result

@dataclass
class CompareResult:
    """A finished comparison. `runs`: one dict per (seed, method) — seed, method, params (the
    selected hyper-parameters), val (their validation score), test_top1, test_mean_per_class
    (NaN when the run failed), candidates, diverged (candidates that diverged), select_s, fit_s,
    error (why the run failed, else None). `sweeps`: the SweepResults per seed (in memory only).
    `pairs`: paired differences (method, reference) reported beside those to the baseline.
    """
    methods: tuple
    seeds: tuple
    baseline: str | None
    metric: str
    runs: list
    settings: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    sweeps: dict = field(default_factory=dict, repr=False)
    pairs: tuple = ()

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

    def differences(self, method: str, metric: str = "top1", *,
                    reference: str | None = None) -> np.ndarray:
        """Paired per-seed differences `method` − `reference` (default: the baseline; same seed:
        same split, shuffles)."""
        if reference is None:
            if self.baseline is None:
                raise ValueError("this comparison has no baseline")
            reference = self.baseline
        return self.values(method, metric) - self.values(reference, metric)

    # ---------------------------------------------------------------- summaries
    def stats(self, method: str, metric: str = "top1", *, paired: bool = False,
              reference: str | None = None) -> Stats:
        """`Stats` of the test metric of `method` over the seeds, or (paired=True) of its paired
        difference to `reference` (default: the baseline)."""
        return summarize(self.differences(method, metric, reference=reference) if paired
                         else self.values(method, metric))

    def mean(self, method: str, metric: str = "top1", *, paired: bool = False,
             reference: str | None = None) -> float:
        return self.stats(method, metric, paired=paired, reference=reference).mean

    def std(self, method: str, metric: str = "top1", *, paired: bool = False,
            reference: str | None = None) -> float:
        return self.stats(method, metric, paired=paired, reference=reference).std

    def ci95(self, method: str, metric: str = "top1", *, paired: bool = False,
             reference: str | None = None) -> tuple:
        """(lo, hi): 95% Student-t interval of the mean over seeds; (NaN, NaN) for one seed."""
        return self.stats(method, metric, paired=paired, reference=reference).ci95

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
        lines += _stats_table(self, [(m, None) for m in self.methods])
        notes = _notes(self, [(m, None) for m in self.methods])
        if self.baseline is not None and self.others():
            lines += ["", f"paired difference to {self.baseline} (points; per seed the same "
                          "split and shuffles)"]
            rows = [(m, self.baseline) for m in self.others()]
            lines += _stats_table(self, rows)
            notes += _notes(self, rows)
        for m, ref in self.pairs:
            lines += ["", f"paired difference {m} − {ref} (points; per seed the same split)"]
            lines += _stats_table(self, [(m, ref)])
            notes += _notes(self, [(m, ref)])
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
        pairs = [{"method": m, "reference": ref,
                  **{k: self.stats(m, k, paired=True, reference=ref).as_dict()
                     for k in TEST_METRICS}} for m, ref in self.pairs]
        return {"format": FORMAT, "methods": list(self.methods), "seeds": list(self.seeds),
                "baseline": self.baseline, "metric": self.metric,
                "interval": "95% Student-t interval of the mean over seeds (df = n − 1)",
                "summary": summary, "differences": diffs, "pairs": pairs,
                "runs": [dict(r) for r in self.runs],
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
                   wall_time_s=float(d.get("wall_time_s") or 0.0),
                   pairs=tuple((p["method"], p["reference"]) for p in d.get("pairs") or ()))

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
        panels = [([(m, None) for m in self.methods], False, f"test {name} accuracy (%)")]
        diffs = [(m, ref) for m, ref in self.pairs]
        if self.baseline is not None:
            diffs = [(m, self.baseline) for m in self.others()] + diffs
        if diffs:
            where = f" − {self.baseline}" if not self.pairs else ""
            panels.append((diffs, True, f"{name}{where} (points, paired)"))
        fig = Figure(figsize=(4.2 + 3.2 * len(panels), 3.8))
        FigureCanvasAgg(fig)
        rng = np.random.default_rng(0)
        for j, (methods, paired, label) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), j + 1)
            for i, (m, ref) in enumerate(methods):
                st = self.stats(m, metric, paired=paired, reference=ref)
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
            labels = [m if not paired or (ref == self.baseline and not self.pairs)
                      else f"{m} − {ref}" for m, ref in methods]
            ax.set_xticklabels(labels, rotation=30 if len(methods) > 4 or self.pairs else 0)
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


def percent(v, sign=False) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}"


def _stats_table(res: CompareResult, rows) -> list:
    """The table of `rows`: (method, None) its test accuracy, (method, reference) the paired
    difference method − reference."""
    head = ["method", "top-1 per seed"]
    for k in TEST_METRICS:
        head += [f"{'top-1' if k == 'top1' else 'mean/class'} mean ± std", "95% CI"]
    table = []
    for m, ref in rows:
        paired = ref is not None
        top1 = res.stats(m, "top1", paired=paired, reference=ref).values
        row = [m if ref is None else f"{m} − {ref}", " ".join(percent(v, paired) for v in top1)]
        for k in TEST_METRICS:
            st = res.stats(m, k, paired=paired, reference=ref)
            row.append(f"{percent(st.mean, paired)} ± {percent(st.std)}" if st.n > 1
                       else percent(st.mean, paired))
            row.append(f"[{percent(st.ci95[0], paired)}, {percent(st.ci95[1], paired)}]"
                       if math.isfinite(st.halfwidth) else "n/a")
        table.append(row)
    widths = [max(len(h), *(len(r[j]) for r in table)) for j, h in enumerate(head)]

    def fmt(r):
        return "  ".join(v.ljust(w) if j == 0 else v.rjust(w)
                         for j, (v, w) in enumerate(zip(r, widths))).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, table)]


def _notes(res: CompareResult, rows) -> list:
    out = []
    for m, ref in rows:
        note = res.stats(m, "top1", paired=ref is not None, reference=ref).note
        if note:
            out.append(note if note.startswith("one seed") else
                       f"{m}{f' − {ref}' if ref is not None else ''}: {note}")
    return out
