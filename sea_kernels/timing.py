"""The one timing harness of the benchmarks and of `sea bench --builtin`.

    samples = interleaved({"reference": ref_step, "cpp": cpp_step}, repeats=30, warmup=3)
    ms = {k: 1e3 * median(v) for k, v in samples.items()}
    ms_gpu = do_bench_median(step, warmup_ms=25, rep_ms=100)      # CUDA: triton.testing.do_bench

`interleaved` times several candidates round-robin — every round calls each candidate once, in
order — so that a slow drift of the machine (other jobs, clocks, thermals) hits every candidate
alike and their ratios stay honest. On CPU a call is timed with `time.perf_counter`; with
``device="cuda"`` with CUDA events around the call (the GPU is synchronised first, so only that
call is counted). `do_bench_median` is the GPU timing of one candidate on its own: the median of
`triton.testing.do_bench` (CUDA events when Triton is absent). `median`, `percentile` and
`summary` reduce the samples. Times are in seconds, except the ``*_ms`` results.

The module imports nothing heavy: torch (and triton) only when a CUDA timing is asked for.
"""
from __future__ import annotations

import math
import numbers
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Candidates = Mapping[str, Callable[[], object]] | Sequence[Callable[[], object]]


def _check_count(name: str, value, minimum: int) -> int:
    """`value` as an int ≥ `minimum`, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _perf_counter_call(fn: Callable[[], object]) -> float:
    """Seconds of one call of `fn`, wall clock."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cuda_event_call(fn: Callable[[], object]) -> float:
    """Seconds of one call of `fn` on the GPU, between two CUDA events."""
    import torch
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def call_timer(device="cpu") -> Callable[[Callable[[], object]], float]:
    """The per-call clock for `device`: perf_counter on CPU, CUDA events on a CUDA device."""
    kind = getattr(device, "type", str(device).split(":")[0])
    return _cuda_event_call if kind == "cuda" else _perf_counter_call


def interleaved(candidates: Candidates, repeats: int, *, warmup: int = 0, device="cpu"):
    """Time `candidates` (zero-argument callables) in `repeats` round-robin rounds.

    Each candidate is first called `warmup` times in a row (untimed); then every round calls the
    candidates once each, in their order. Returns one list of `repeats` samples (seconds) per
    candidate: a dict with the same keys for a mapping, a list in the same order for a sequence.
    """
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    named = isinstance(candidates, Mapping)
    fns = list(candidates.values()) if named else list(candidates)
    timer = call_timer(device)
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            times.append(timer(fn))
    return dict(zip(candidates, samples)) if named else samples


def do_bench_median(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100) -> float:
    """Median milliseconds of `fn` on the GPU: `triton.testing.do_bench` (warm-up and repetition
    budgets in ms, as there); CUDA events around single calls when Triton is not installed."""
    try:
        from triton.testing import do_bench
    except ImportError:
        return _cuda_median_ms(fn, warmup_ms, rep_ms)
    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def _cuda_median_ms(fn: Callable[[], object], warmup_ms: float, rep_ms: float) -> float:
    """do_bench's recipe with CUDA events: estimate one call, then warm up and time by budget."""
    estimate = median(interleaved([fn], 5, device="cuda")[0]) * 1e3
    n_warmup = max(1, int(warmup_ms / max(estimate, 1e-6)))
    n_repeat = max(1, int(rep_ms / max(estimate, 1e-6)))
    return 1e3 * median(interleaved([fn], n_repeat, warmup=n_warmup, device="cuda")[0])


# ------------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0 ≤ q ≤ 100) of `samples`, linearly interpolated (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must lie in [0, 100], got {q!r}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    """The median of `samples` (the mean of the two middle ones for an even count)."""
    if not samples:
        raise ValueError("median of no samples")
    return statistics.median(samples)


@dataclass(frozen=True)
class Summary:
    """Order statistics of one candidate's samples (same unit as the samples)."""
    n: int
    median: float
    min: float
    max: float
    p10: float
    p90: float


def summary(samples: Sequence[float]) -> Summary:
    """Count, median, extremes and 10th/90th percentiles of `samples`."""
    return Summary(n=len(samples), median=median(samples), min=min(samples), max=max(samples),
                   p10=percentile(samples, 10), p90=percentile(samples, 90))
