"""The one timing harness of the benchmarks and of `sea bench --builtin`.

    samples = interleaved({"reference": ref_step, "cpp": cpp_step}, repeats=30, warmup=3)
    ms = {k: 1e3 * median(v) for k, v in samples.items()}
    ms_gpu = do_bench_median(step, warmup_ms=25, rep_ms=100)      # CUDA: triton.testing.do_bench

`interleaved` times several candidates round-robin — every round calls each candidate once, in
order — so that a slow drift of the machine (other jobs, clocks, thermals) hits every candidate
alike and their ratios stay honest. On CPU a call is timed with `time.perf_counter`; with
``device="cuda"`` with CUDA events around the call (the GPU is synchronised first, so only that
call is counted). `do_bench_median` is the GPU timing of one candidate on its own: the median of
`triton.testing.do_bench` (CUDA events when Triton is absent); `do_bench_percentiles` the same
with its 20th/50th/80th percentiles. `median`, `percentile`, `percentiles`, `band` (p20, median,
p80 — the quantiles the benchmark CSVs of the field, e.g. Liger-Kernel's, report) and `summary`
reduce the samples. Times are in seconds, except the ``*_ms`` results.

`oversubscribed(threads)` says, in one line, when the machine is too busy for CPU timings
with that many threads (the cores other processes keep busy, `cpu_load`, plus the threads
exceed the cores): OpenMP threads that wait on each other's cores make a step many times
slower, and the ratios meaningless.

`peak_memory_bytes` measures one call's peak memory (CUDA: `torch.cuda.max_memory_allocated`;
CPU: the PyTorch CPU allocator's allocations, recorded by `torch.profiler`) above what is live
when it starts; `MEMORY_METHOD` says in words how, per device.

The module imports nothing heavy: torch (and triton) only when a CUDA timing or a memory
measurement is asked for.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import statistics
import tempfile
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
    candidates once each, round r starting at candidate r mod n (the order rotates, so that no
    candidate always runs first, after another's large buffers were freed: on the CPU the first
    of a round paid the page faults, measured up to 1.5× on identical functions). Returns one
    list of `repeats` samples (seconds) per candidate: a dict with the same keys for a mapping,
    a list in the same order for a sequence.
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
    n = len(fns)
    for r in range(repeats):
        for k in range(n):
            i = (r + k) % n
            samples[i].append(timer(fns[i]))
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
    return 1e3 * median(_cuda_samples(fn, warmup_ms, rep_ms))


def _cuda_samples(fn: Callable[[], object], warmup_ms: float, rep_ms: float) -> list[float]:
    """Seconds of single calls on the GPU, by do_bench's budgets (estimate, warm up, repeat)."""
    estimate = median(interleaved([fn], 5, device="cuda")[0]) * 1e3
    n_warmup = max(1, int(warmup_ms / max(estimate, 1e-6)))
    n_repeat = max(1, int(rep_ms / max(estimate, 1e-6)))
    return interleaved([fn], n_repeat, warmup=n_warmup, device="cuda")[0]


#: The percentiles the benchmark CSVs report (Liger-Kernel's y_value_20 / _50 / _80).
BAND = (20, 50, 80)


def do_bench_percentiles(fn: Callable[[], object], qs: Sequence[float] = BAND,
                         warmup_ms: float = 25, rep_ms: float = 100) -> tuple[float, ...]:
    """The `qs`-th percentiles (0–100) of `fn`'s milliseconds on the GPU:
    `triton.testing.do_bench(quantiles=...)`, CUDA events around single calls without Triton."""
    for q in qs:
        _check_q(q)
    try:
        from triton.testing import do_bench
    except ImportError:
        samples = _cuda_samples(fn, warmup_ms, rep_ms)
        return tuple(1e3 * percentile(samples, q) for q in qs)
    out = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[q / 100 for q in qs])
    out = out if isinstance(out, (list, tuple)) else [out]
    return tuple(float(v) for v in out)


# ------------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0 ≤ q ≤ 100) of `samples`, linearly interpolated (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    _check_q(q)
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _check_q(q) -> None:
    if not 0 <= q <= 100:
        raise ValueError(f"q must lie in [0, 100], got {q!r}")


def percentiles(samples: Sequence[float], qs: Sequence[float] = BAND) -> tuple[float, ...]:
    """The `qs`-th percentiles of `samples` (`percentile` for each)."""
    return tuple(percentile(samples, q) for q in qs)


def band(samples: Sequence[float]) -> tuple[float, float, float]:
    """(20th percentile, median, 80th percentile) of `samples`: the spread the benchmark CSVs
    report. The middle value is `median` itself, so it equals the median a table prints."""
    return percentile(samples, 20), median(samples), percentile(samples, 80)


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
    p20: float
    p80: float


def summary(samples: Sequence[float]) -> Summary:
    """Count, median, extremes and 10th/20th/80th/90th percentiles of `samples`."""
    return Summary(n=len(samples), median=median(samples), min=min(samples), max=max(samples),
                   p10=percentile(samples, 10), p90=percentile(samples, 90),
                   p20=percentile(samples, 20), p80=percentile(samples, 80))


# ------------------------------------------------------------------------------- memory

#: How `peak_memory_bytes` measures, per device kind (for the CSVs and tables that report it).
MEMORY_METHOD = {
    "cuda": ("peak bytes allocated during the call above those allocated at its start: "
             "torch.cuda.max_memory_allocated after reset_peak_memory_stats minus "
             "torch.cuda.memory_allocated before (tensors of PyTorch's caching allocator; its "
             "cached free blocks, the CUDA context and workspaces allocated before the call "
             "are not counted)"),
    "cpu": ("peak bytes allocated during the call above those live at its start: the running "
            "sum of every allocation and free of PyTorch's CPU allocator that torch.profiler "
            "(profile_memory=True) records during the call, at its maximum (tensors only; "
            "memory outside that allocator — BLAS/oneDNN packing buffers, std::vector scratch "
            "inside C++ kernels, Python objects — is not counted, and RSS is not used: the "
            "C allocator keeps freed pages resident)"),
}


class MemoryUnavailable(RuntimeError):
    """The peak memory of a call cannot be measured here (the message says why)."""


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Slack over the cores before `oversubscribed` speaks: an idle machine is rarely at exactly 0.
LOAD_SLACK = 0.5
#: How long `cpu_load` watches the machine.
LOAD_SAMPLE_S = 0.5


def _cpu_times():
    """(busy, total) jiffies of all cores from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)      # idle + iowait
    total = sum(fields[:8])                                         # without guest (in user)
    return total - idle, total


def cpu_load(sample_s: float = LOAD_SAMPLE_S) -> tuple[float, str] | None:
    """(cores busy, how it was measured): the cores the other processes keep busy right now —
    the machine's busy share over `sample_s` seconds (from /proc/stat, while this process
    sleeps) × its cores — else the 1-minute load average; None where neither exists. The
    load average lags by a minute: it still counts, e.g., a build that has just finished."""
    first = _cpu_times()
    if first is not None:
        time.sleep(sample_s)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            cores = os.cpu_count() or 1
            return share * cores, f"{share * cores:.1f} of {cores} cores busy right now"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return load, f"load average {load:.1f} over the last minute"


def oversubscribed(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when `threads` CPU threads plus the cores other processes keep busy (`load`,
    else `cpu_load()`) exceed the cores this process may use (`cores`, else `cpu_cores()`) by
    more than LOAD_SLACK; else None (also where the load cannot be measured)."""
    if load is None:
        measured = cpu_load()
        if measured is None:
            return None
        load, how = measured
    else:
        how = f"load {load:.1f}"
    cores = cpu_cores() if cores is None else cores
    if load + threads <= cores + LOAD_SLACK:
        return None
    return (f"warning: this machine is busy ({how}; {cores} cores for this process) and the "
            f"timing uses {threads} thread{'s' * (threads != 1)}: a step that waits for a core "
            "is many times slower and the ratios are noisy; "
            + ("use --threads 1 or " if threads > 1 else "use ") + "a quiet machine")


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count (None: keep torch's own), print `oversubscribed`'s warning
    to stderr when the machine is too busy for it, and return the count in use."""
    import sys

    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    busy = oversubscribed(threads)
    if busy:
        print(busy, file=sys.stderr, flush=True)
    return threads


def _device_kind(device) -> str:
    return getattr(device, "type", str(device or "cpu").split(":")[0])


def peak_memory_bytes(fn: Callable[[], object], device="cpu") -> float:
    """Peak bytes allocated during one call of `fn` above those live when it starts (see
    `MEMORY_METHOD`). Raises `MemoryUnavailable` where it cannot be measured (no CUDA memory
    statistics; a torch.profiler that records no CPU allocations)."""
    kind = _device_kind(device)
    if kind == "cuda":
        return _cuda_peak_bytes(fn, device)
    if kind != "cpu":
        raise MemoryUnavailable(f"no memory measurement for device {device!r}")
    return _cpu_peak_bytes(fn)


def memory_samples(fn: Callable[[], object], repeats: int, device="cpu") -> list[float]:
    """`repeats` measurements of `peak_memory_bytes(fn, device)` (bytes)."""
    _check_count("repeats", repeats, 1)
    return [peak_memory_bytes(fn, device) for _ in range(repeats)]


def _cuda_peak_bytes(fn: Callable[[], object], device) -> float:
    import torch
    dev = torch.device(device)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    start = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)
    return float(max(0, torch.cuda.max_memory_allocated(dev) - start))


def _cpu_peak_bytes(fn: Callable[[], object]) -> float:
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
    except ImportError as e:  # pragma: no cover - every torch ≥ 2.0 has them
        raise MemoryUnavailable(f"torch.profiler is not available: {e}") from None
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _without_profiler_chatter():
        prof.start()
    try:
        fn()
    finally:
        with _without_profiler_chatter():
            prof.stop()
    try:
        events = prof.profiler.kineto_results.events()
        deltas = [(e.start_ns(), e.nbytes()) for e in events
                  if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    except AttributeError as e:  # the profiler's result API moved
        raise MemoryUnavailable(f"torch.profiler's memory events are not readable: {e}") from None
    if not deltas:
        raise MemoryUnavailable("torch.profiler recorded no CPU allocation during the call")
    deltas.sort(key=lambda t: t[0])  # stable: events of the same nanosecond keep their order
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return float(peak)


#: The lines libkineto writes to stderr on every profiler start and stop.
_PROFILER_CHATTER = re.compile(r"ActivityProfiler\w*\.cpp:\d+\] profiler_(start|stop)\s*$")


@contextlib.contextmanager
def _without_profiler_chatter():
    """Hold back libkineto's "profiler_start / profiler_stop" lines (written to file descriptor
    2, around every profiler session); anything else written to stderr meanwhile is passed on."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(True)
                    if not _PROFILER_CHATTER.search(line)]
            if kept:
                os.write(2, "".join(kept).encode())
