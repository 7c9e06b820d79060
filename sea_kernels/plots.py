"""PNG plots (matplotlib's object API: a `Figure` on an Agg canvas, never pyplot, so the global
backend a caller chose is left alone; every file written atomically).

    plot_curves({"η=0": clf0.history_, "η=0.8": clf8.history_}, "curves.png")   # paper Fig. 2–3
    plot_heatmap(sweep_result, "heatmap.png", x="lr", y="eta")                  # best val accuracy

A *history* is a list of per-epoch dicts, as `SeAClassifier.history_` records them: ``epoch``,
``train_loss`` and, per evaluation set, its top-1 / mean per-class accuracy — flat keys such as
``"test_top1"`` / ``"eval0_top1"`` / ``"test/top1"``, or nested ``{"test": {"top1": …}}``.
`histories_from_many` turns `sea_kernels.sweeps.engine.train_many`'s result into such histories.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .data.writers import atomic_write

_METRIC_NAMES = {"top1": "top-1 accuracy", "mean_per_class": "mean per-class accuracy"}


def _mpl():
    """The matplotlib module, without touching its global backend or importing pyplot."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
        import matplotlib.patches  # noqa: F401
        import matplotlib.ticker  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    return matplotlib


def _figure(**kwargs):
    """A new Figure with its own Agg canvas (not registered with pyplot: nothing to close)."""
    mpl = _mpl()
    fig = mpl.figure.Figure(**kwargs)
    mpl.backends.backend_agg.FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


# ------------------------------------------------------------------------------- histories

def _flat_metrics(entry: Mapping) -> dict[tuple[str, str], float]:
    """{(eval set, metric): value} from one epoch's dict, flat or nested keys."""
    out = {}
    for key, value in entry.items():
        if isinstance(value, Mapping):
            for m, v in value.items():
                if m in _METRIC_NAMES and _is_number(v):
                    out[(str(key), m)] = float(v)
            continue
        if not _is_number(value):
            continue
        for m in _METRIC_NAMES:
            match = re.fullmatch(rf"(.+?)[_/.\-]{m}", str(key))
            if match:
                out[(match.group(1), m)] = float(value)
                break
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def eval_sets_of(history: Sequence[Mapping]) -> list[str]:
    """The names of the evaluation sets a history records, in order of first appearance."""
    names = []
    for entry in history:
        for (name, _) in _flat_metrics(entry):
            if name not in names:
                names.append(name)
    return names


def series(history: Sequence[Mapping], eval_set: str, metric: str = "top1"):
    """(epochs, values) of one metric of one evaluation set (NaN where an epoch lacks it)."""
    epochs, values = [], []
    for i, entry in enumerate(history):
        m = _flat_metrics(entry)
        epochs.append(int(entry.get("epoch", i + 1)))
        values.append(m.get((eval_set, metric), math.nan))
    return np.asarray(epochs), np.asarray(values, dtype=float)


def histories_from_many(many, labels: Sequence[str] | None = None,
                        set_names: Mapping[str, str] | None = None) -> dict[str, list[dict]]:
    """`train_many`'s ManyResult → {label: history} (one per configuration), for `plot_curves`.

    Keys of each epoch dict: ``epoch``, ``train_loss`` and ``<set>_top1`` /
    ``<set>_mean_per_class`` for each of the result's eval sets (renamed by ``set_names``).
    """
    k = len(many.configs)
    labels = list(labels) if labels is not None else [
        f"η={c['eta']:g}" for c in many.configs]
    if len(labels) != k:
        raise ValueError(f"{len(labels)} labels for {k} configurations")
    set_names = dict(set_names or {})
    out = {}
    for j, label in enumerate(labels):
        hist = []
        for e, epoch in enumerate(many.eval_epochs):
            entry = {"epoch": int(epoch)}
            if many.train_loss is not None and epoch - 1 < len(many.train_loss):
                entry["train_loss"] = float(many.train_loss[epoch - 1, j])
            for name, metrics in many.history.items():
                for m, arr in metrics.items():
                    entry[f"{set_names.get(name, name)}_{m}"] = float(arr[e, j])
            hist.append(entry)
        out[label] = hist
    return out


def plot_curves(histories: Mapping[str, Sequence[Mapping]], path: str | os.PathLike, *,
                metric: str = "top1", sets: Sequence[str] | None = None,
                titles: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Accuracy per epoch, one panel per evaluation set (default: every set the histories
    record, e.g. train and test — the paper's Fig. 2–3), one line per history (e.g. per η)."""
    if not histories:
        raise ValueError("no histories to plot")
    if metric not in _METRIC_NAMES:
        raise ValueError(f"metric must be one of {tuple(_METRIC_NAMES)}, got {metric!r}")
    if sets is None:
        sets = []
        for h in histories.values():
            sets += [s for s in eval_sets_of(h) if s not in sets]
    sets = list(sets)
    mpl = _mpl()
    n_panels = max(1, len(sets))
    fig = _figure(figsize=(5.2 * n_panels, 4.0))
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    cmap = mpl.colormaps["viridis"]
    colors = [cmap(i / max(1, len(histories) - 1) * 0.9) for i in range(len(histories))]
    if not sets:    # nothing evaluated: plot the training loss instead
        ax = axes[0]
        for color, (label, h) in zip(colors, histories.items()):
            ep = [int(e.get("epoch", i + 1)) for i, e in enumerate(h)]
            ax.plot(ep, [float(e.get("train_loss", math.nan)) for e in h], label=str(label),
                    color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    for p, s in enumerate(sets):
        ax = axes[p]
        for color, (label, h) in zip(colors, histories.items()):
            ep, val = series(h, s, metric)
            if np.isfinite(val).any():
                ax.plot(ep, 100 * val, label=str(label), color=color, lw=1.4,
                        marker="o" if len(ep) <= 12 else None, ms=3)
        ax.set_title(titles[p] if titles and p < len(titles) else f"{s} {_METRIC_NAMES[metric]}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(f"{_METRIC_NAMES[metric]} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------- heat-map

def _result_arrays(result):
    """(configs, scores, metric) from a SweepResult (or its dict / to_json form)."""
    if isinstance(result, Mapping):
        configs = result["configs"]
        metric = result.get("metric", "top1")
        key = "val_top1" if metric == "top1" else "val_mean_per_class"
        scores = np.array([math.nan if v is None else v for v in result[key]], dtype=float)
        return configs, scores, metric
    metric = getattr(result, "metric", "top1")
    scores = result.scores() if hasattr(result, "scores") else (
        result.val_top1 if metric == "top1" else result.val_mean_per_class)
    return result.configs, np.asarray(scores, dtype=float), metric


def heatmap_table(result, x: str = "lr", y: str = "eta"):
    """(x values, y values, M) with M[i, j] = best validation score over the other parameters
    at y = y_values[i], x = x_values[j] (NaN where every configuration there diverged)."""
    configs, scores, _ = _result_arrays(result)
    if not configs:
        raise ValueError("the sweep result has no configurations")
    for p in (x, y):
        if p not in configs[0]:
            raise ValueError(f"unknown hyper-parameter {p!r} for the heat-map axes "
                             f"(have: {', '.join(configs[0])})")
    xs = sorted({float(c[x]) for c in configs})
    ys = sorted({float(c[y]) for c in configs})
    m = np.full((len(ys), len(xs)), np.nan)
    for c, s in zip(configs, scores):
        if not np.isfinite(s):
            continue
        i, j = ys.index(float(c[y])), xs.index(float(c[x]))
        m[i, j] = s if np.isnan(m[i, j]) else max(m[i, j], s)
    return xs, ys, m


def plot_heatmap(result, path: str | os.PathLike, x: str = "lr", y: str = "eta", *,
                 title: str | None = None) -> Path:
    """Best validation accuracy over the other hyper-parameters, on the (x, y) grid."""
    xs, ys, m = heatmap_table(result, x, y)
    _, _, metric = _result_arrays(result)
    mpl = _mpl()
    fig = _figure(figsize=(max(5.0, 1.6 + 0.9 * len(xs)), max(3.2, 1.4 + 0.5 * len(ys))))
    ax = fig.subplots()
    shown = np.ma.masked_invalid(100 * m)
    cmap = mpl.colormaps["viridis"].with_extremes(bad="#d0d0d0")
    im = ax.imshow(shown, cmap=cmap, aspect="auto", origin="lower")
    fig.colorbar(im, ax=ax, label=f"validation {_METRIC_NAMES.get(metric, metric)} (%)")
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel({"lr": "learning rate", "eta": "η", "lam": "λ", "alpha": "α", "delta": "δ",
                   "weight_decay": "weight decay"}.get(x, x))
    ax.set_ylabel({"lr": "learning rate", "eta": "η", "lam": "λ", "alpha": "α", "delta": "δ",
                   "weight_decay": "weight decay"}.get(y, y))
    finite = np.isfinite(m)
    best = (np.unravel_index(np.nanargmax(np.where(finite, m, -np.inf)), m.shape)
            if finite.any() else None)
    lo, hi = (np.nanmin(m), np.nanmax(m)) if finite.any() else (0, 1)
    for i in range(len(ys)):
        for j in range(len(xs)):
            if finite[i, j]:
                dark = (m[i, j] - lo) / max(hi - lo, 1e-12) < 0.5
                ax.text(j, i, f"{100 * m[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black",
                        fontweight="bold" if best == (i, j) else "normal")
            else:
                ax.text(j, i, "div.", ha="center", va="center", fontsize=7, color="#606060")
    if best is not None:
        ax.add_patch(mpl.patches.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False,
                                           ec="red", lw=2))
    n_cfg = len(_result_arrays(result)[0])
    ax.set_title(title or f"best over the other parameters ({n_cfg} configurations)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
