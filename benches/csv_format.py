"""The benchmark CSV of `benches/run.py --csv` (written) and `benches/plot.py` (read).

One row per (kernel, provider, mode, metric, shape) — Liger-Kernel's benchmark CSV
(benchmark/data/all_benchmark_data.csv), whose column names are kept where they fit, so that runs
from different machines and GPUs concatenate and plot together:

  kernel_name                 "sea_loss": one SeA step of the smoothed-hinge loss of the
                              augmented batch
  kernel_provider             the candidate: reference, compiled-ref, torch-gram, cpp, fused_sea,
                              triton, gemm-floor
  kernel_operation_mode       "forward" (the loss only, no dW) or "full" (loss + dW)
  metric_name, metric_unit    "time" in ms, or "memory" in MiB (2**20 bytes)
  x_name, x_label, x_value    "shape", "(b, d, C)", e.g. "256x2048x10"
  y_value_50/_20/_80          the median and the 20th / 80th percentiles of the samples
                              (NaN where a value cannot be measured: see `measurement`)
  extra_benchmark_config_str  JSON: b, d, C, dtype and the SeA hyper-parameters
  gpu_name                    the GPU of a cuda row ("" on a cpu row)
  timestamp                   UTC, "%Y-%m-%d %H:%M:%S"
  sea_kernels_version         this package's version (Liger's liger_version)

and, for merging results of several machines:

  device                      "cpu" or "cuda"
  machine                     what ran the row: the CPU model (cpu rows) or the GPU name (cuda)
  cpu_model, threads          the host CPU and torch's CPU thread count
  torch_version, cuda_version, triton_version, python_version
  b, d, C                     the shape again, as integers
  n_samples                   how many samples the percentiles summarise ("" where the timer
                              does not say: triton.testing.do_bench)
  measurement                 how the value was measured, in words (and why it is NaN)
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

KERNEL = "sea_loss"
MODES = ("forward", "full")
METRICS = {"time": "ms", "memory": "MiB"}

COLUMNS = (
    # Liger-Kernel's columns, in its order (liger_version → sea_kernels_version)
    "kernel_name", "kernel_provider", "kernel_operation_mode", "metric_name", "metric_unit",
    "x_name", "x_label", "x_value", "y_value_50", "y_value_20", "y_value_80",
    "extra_benchmark_config_str", "gpu_name", "timestamp", "sea_kernels_version",
    # where it ran, and how it was measured
    "device", "machine", "cpu_model", "threads", "torch_version", "cuda_version",
    "triton_version", "python_version", "b", "d", "C", "n_samples", "measurement",
)
VALUE_COLUMNS = ("y_value_20", "y_value_50", "y_value_80")

#: The columns that say which measurement a row is: a later row with the same key replaces an
#: earlier one when CSVs are merged (as Liger-Kernel's CSV updates do).
KEY_COLUMNS = ("kernel_name", "kernel_provider", "kernel_operation_mode", "metric_name",
               "x_value", "extra_benchmark_config_str", "device", "machine", "threads")


def shape_value(b: int, d: int, c: int) -> str:
    """x_value of a shape: "b x d x C" without spaces, e.g. "256x2048x10"."""
    return f"{b}x{d}x{c}"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(torch_module, version: str) -> dict:
    """The columns that are the same for every row of one run (versions, host CPU, threads)."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = ""
    return {
        "sea_kernels_version": version,
        "cpu_model": cpu_model(),
        "threads": torch_module.get_num_threads(),
        "torch_version": torch_module.__version__,
        "cuda_version": torch_module.version.cuda or "",
        "triton_version": triton_version,
        "python_version": platform.python_version(),
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def make_row(env: Mapping, *, device: str, gpu_name: str, provider: str, mode: str, metric: str,
             shape: tuple[int, int, int], band: tuple[float, float, float] | None,
             config: Mapping, n_samples: int | str, measurement: str) -> dict:
    """One CSV row. `band` is (p20, p50, p80) in the metric's unit, None for not measurable."""
    if mode not in MODES or metric not in METRICS:
        raise ValueError(f"unknown mode/metric {mode!r}/{metric!r}")
    b, d, c = shape
    p20, p50, p80 = band if band is not None else (math.nan,) * 3
    row = dict(env)
    row.update(
        kernel_name=KERNEL, kernel_provider=provider, kernel_operation_mode=mode,
        metric_name=metric, metric_unit=METRICS[metric], x_name="shape", x_label="(b, d, C)",
        x_value=shape_value(b, d, c), y_value_50=float(p50), y_value_20=float(p20),
        y_value_80=float(p80),
        extra_benchmark_config_str=json.dumps({"b": b, "d": d, "C": c, **config}),
        gpu_name=gpu_name if device == "cuda" else "", device=device,
        machine=gpu_name if device == "cuda" else env["cpu_model"], b=b, d=d, C=c,
        n_samples=n_samples, measurement=measurement)
    return {k: row.get(k, "") for k in COLUMNS}


def write(path: str | os.PathLike, rows: Iterable[Mapping]) -> Path:
    """The rows as the benchmark CSV, atomically (`sea_kernels.data.writers.write_csv`)."""
    from sea_kernels.data import writers
    return writers.write_csv(path, list(rows), fieldnames=COLUMNS)


# ------------------------------------------------------------------------------- reading

def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """The rows of one or more benchmark CSVs, merged: values as floats (NaN where empty),
    b/d/C/threads as ints; a later row with the same `KEY_COLUMNS` replaces an earlier one.
    A CSV without the columns the plots need raises ValueError naming it."""
    need = {"kernel_name", "kernel_provider", "kernel_operation_mode", "metric_name",
            "metric_unit", "x_value", *VALUE_COLUMNS}
    merged: dict[tuple, dict] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = need - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: not a benchmark CSV (missing columns: "
                                 f"{', '.join(sorted(missing))})")
            for raw in reader:
                row = dict(raw)
                for k in VALUE_COLUMNS:
                    row[k] = _number(row.get(k))
                for k in ("b", "d", "C", "threads"):
                    v = _number(row.get(k))
                    row[k] = int(v) if math.isfinite(v) else None
                row.setdefault("machine", row.get("gpu_name", ""))
                row.setdefault("device", "cuda" if row.get("gpu_name") else "cpu")
                merged[tuple(str(row.get(k, "")) for k in KEY_COLUMNS)] = row
    return list(merged.values())


def shape_of(row: Mapping) -> tuple:
    """(b, d, C) of a row, from its columns or its x_value "bxdxC"; () when neither says."""
    if all(isinstance(row.get(k), int) for k in ("b", "d", "C")):
        return row["b"], row["d"], row["C"]
    try:
        return tuple(int(v) for v in str(row["x_value"]).split("x"))
    except ValueError:
        return ()


def machine_label(row: Mapping) -> str:
    """What ran a row, for a legend: the GPU, or the CPU with its thread count."""
    machine = row.get("machine") or row.get("gpu_name") or "?"
    if row.get("device") == "cpu" and row.get("threads"):
        return f"{machine}, {row['threads']} threads"
    return str(machine)
