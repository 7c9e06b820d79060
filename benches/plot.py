"""Plots of benchmark CSVs: `python benches/plot.py out.csv [more.csv ...] --out plots/`.

One PNG per kernel × mode × metric (e.g. plots/sea_loss-full-time.png): the median (y_value_50)
against the shape, one line per provider — and per machine when the CSVs come from several
(GPUs, CPUs, thread counts) — with the 20th–80th percentile band shaded. The CSVs are those of
`python benches/run.py --csv` (benches/csv_format.py; Liger-Kernel's columns); several are merged,
a later row replacing an earlier one with the same key (csv_format.KEY_COLUMNS). Shapes run along
the x axis in order of b·d·C; the y axis is logarithmic. NaN values (not measurable) are left
out. Drawn with matplotlib's object API (Figure + FigureCanvasAgg: the global backend of the
caller is left alone) and written atomically.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import csv_format  # noqa: E402

from sea_kernels.data.writers import atomic_write  # noqa: E402

_METRIC_LABEL = {"time": "time per step", "memory": "peak memory per step"}
_MODE_LABEL = {"forward": "forward (loss only)", "full": "full (loss + dW)"}
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _shape_order(shape: tuple) -> tuple:
    return (math.prod(shape), shape) if shape else (math.inf, ())


def groups(rows: Iterable[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """{(kernel, mode, metric): rows}, in order of first appearance."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        key = (r["kernel_name"], r["kernel_operation_mode"] or "", r["metric_name"])
        out.setdefault(key, []).append(r)
    return out


def _machine_key(row: dict) -> tuple:
    return row.get("device") or "", row.get("machine") or "", row.get("threads")


def plot_group(rows: Sequence[dict], key: tuple[str, str, str], path: Path,
               providers: Sequence[str]) -> Path | None:
    """One figure of one (kernel, mode, metric); None (nothing written) without a finite value."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kernel, mode, metric = key
    shapes = sorted({csv_format.shape_of(r) for r in rows}, key=_shape_order)
    pos = {s: i for i, s in enumerate(shapes)}
    machines = sorted({_machine_key(r) for r in rows}, key=lambda m: tuple(map(str, m)))
    several = len(machines) > 1
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault((r["kernel_provider"], _machine_key(r)), []).append(r)

    fig = Figure(figsize=(max(6.0, 1.2 + 1.1 * len(shapes)), 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    drawn = 0
    for (provider, machine), srows in sorted(series.items(),
                                             key=lambda kv: (providers.index(kv[0][0]),
                                                             machines.index(kv[0][1]))):
        srows = sorted(srows, key=lambda r: pos[csv_format.shape_of(r)])
        p50 = [r["y_value_50"] for r in srows]
        if not any(math.isfinite(v) and v > 0 for v in p50):
            continue
        p20 = [r["y_value_20"] for r in srows]
        p80 = [r["y_value_80"] for r in srows]
        color = cmap(providers.index(provider) % 10)
        m = machines.index(machine)
        dodge = (m - (len(machines) - 1) / 2) * 0.06   # machines side by side at a shape
        xs = [pos[csv_format.shape_of(r)] + dodge for r in srows]
        label = f"{provider} — {csv_format.machine_label(srows[0])}" if several else provider
        ax.plot(xs, p50, color=color, ls=_LINESTYLES[m % len(_LINESTYLES)],
                marker=_MARKERS[m % len(_MARKERS)], ms=4, lw=1.4, label=label)
        ax.fill_between(xs, p20, p80, color=color, alpha=0.18, lw=0)
        ax.vlines(xs, p20, p80, color=color, lw=0.8, alpha=0.7)  # the band at a lone shape
        drawn += 1
    if not drawn:
        return None
    unit = rows[0].get("metric_unit") or ""
    ax.set_yscale("log")
    ax.set_xticks(range(len(shapes)), ["×".join(map(str, s)) if s else "?" for s in shapes],
                  rotation=20 if len(shapes) > 4 else 0)
    ax.set_xlim(-0.3, len(shapes) - 0.7)
    ax.set_xlabel("shape b×d×C")
    ax.set_ylabel(f"{_METRIC_LABEL.get(metric, metric)} ({unit}), median")
    title = f"{kernel}: {_MODE_LABEL.get(mode, mode)}, {metric} — band: p20–p80"
    if not several:
        title += f"\n{csv_format.machine_label(rows[0])}"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def plot_csvs(paths: Sequence[str | Path], out: str | Path, fmt: str = "png") -> list[Path]:
    """Every (kernel, mode, metric) figure of the merged CSVs under `out`; the paths written."""
    rows = csv_format.read(paths)
    if not rows:
        raise ValueError("the CSVs have no rows")
    providers = list(dict.fromkeys(r["kernel_provider"] for r in rows))
    written = []
    for key, grows in groups(rows).items():
        name = "-".join(part.replace("/", "_") or "none" for part in key) + f".{fmt}"
        path = plot_group(grows, key, Path(out) / name, providers)
        if path is None:
            print(f"{name}: no finite value to plot, skipped", file=sys.stderr)
        else:
            written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", type=Path, help="benchmark CSVs (benches/run.py --csv)")
    p.add_argument("--out", type=Path, default=Path("plots"), help="folder for the figures")
    p.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    args = p.parse_args(argv)
    for path in args.csv:
        if not path.is_file():
            p.error(f"no such file: {path}")
    try:
        written = plot_csvs(args.csv, args.out, args.format)
    except ValueError as e:
        p.error(str(e))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
