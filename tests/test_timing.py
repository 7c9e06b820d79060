"""sea_kernels.timing: interleaved round-robin timing, its argument checks, and the statistics."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sea_kernels import timing

ROOT = Path(__file__).resolve().parents[1]


def _logger(log, name):
    return lambda: log.append(name)


def test_one_sample_list_per_candidate():
    fns = {"a": lambda: None, "b": lambda: None, "c": lambda: None}
    samples = timing.interleaved(fns, 4)
    assert list(samples) == ["a", "b", "c"]
    assert all(len(v) == 4 and all(isinstance(t, float) and t >= 0 for t in v)
               for v in samples.values())
    as_list = timing.interleaved([lambda: None, lambda: None], 3)
    assert isinstance(as_list, list) and [len(v) for v in as_list] == [3, 3]


def test_calls_are_interleaved_round_robin_after_the_warmup():
    """Round r starts at candidate r mod n: every candidate is first of a round equally often."""
    log = []
    fns = {name: _logger(log, name) for name in "abc"}
    timing.interleaved(fns, 3)
    assert log == list("abc" "bca" "cab")
    log.clear()
    timing.interleaved(fns, 2, warmup=2)
    assert log == list("aabbcc") + list("abc" "bca")


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True, "3"])
def test_repeats_below_one_or_not_an_integer_is_refused(repeats):
    log = []
    with pytest.raises(ValueError, match="repeats"):
        timing.interleaved({"a": _logger(log, "a")}, repeats)
    assert log == [], "no candidate may run when the arguments are refused"


def test_negative_warmup_is_refused():
    with pytest.raises(ValueError, match="warmup"):
        timing.interleaved([lambda: None], 1, warmup=-1)


def test_samples_measure_the_call():
    samples = timing.interleaved({"sleep": lambda: time.sleep(0.005), "noop": lambda: None}, 3)
    assert min(samples["sleep"]) >= 0.004
    assert timing.median(samples["noop"]) < timing.median(samples["sleep"])


def test_statistics():
    assert timing.median([3.0, 1.0, 2.0]) == 2.0
    assert timing.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert timing.percentile([0.0, 10.0], 25) == 2.5
    assert timing.percentile([5.0, 1.0, 3.0], 0) == 1.0
    assert timing.percentile([5.0, 1.0, 3.0], 100) == 5.0
    s = timing.summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.n, s.median, s.min, s.max) == (5, 3.0, 1.0, 5.0)
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)
    with pytest.raises(ValueError):
        timing.median([])
    with pytest.raises(ValueError, match="q"):
        timing.percentile([1.0], 101)


def test_clock_per_device():
    assert timing.call_timer("cpu") is timing.call_timer(None) is timing._perf_counter_call
    assert timing.call_timer("cuda:1") is timing._cuda_event_call


def test_import_needs_no_torch():
    code = "import sys, sea_kernels.timing; assert 'torch' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_cuda_timing():
    import torch
    a = torch.randn(2048, 2048, device="cuda")
    fns = {"mm": lambda: a @ a, "small": lambda: a[:64] @ a[:, :64]}
    samples = timing.interleaved(fns, 5, warmup=2, device="cuda")
    assert all(len(v) == 5 and min(v) > 0 for v in samples.values())
    assert timing.median(samples["small"]) < timing.median(samples["mm"])
    ms = timing.do_bench_median(fns["mm"], warmup_ms=5, rep_ms=20)
    assert ms > 0
    fallback = timing._cuda_median_ms(fns["mm"], 5, 20)
    assert 0.2 < fallback / ms < 5


def test_oversubscribed_warns_only_when_busy_cores_and_threads_exceed_the_cores():
    assert timing.oversubscribed(2, load=0.2, cores=2) is None      # an idle 2-core machine
    assert timing.oversubscribed(1, load=1.4, cores=2) is None
    msg = timing.oversubscribed(2, load=3.9, cores=2)
    assert msg.startswith("warning: ") and "3.9" in msg and "2 threads" in msg
    assert "--threads 1" in msg
    assert "--threads 1" not in timing.oversubscribed(1, load=3.0, cores=2)
    assert timing.cpu_cores() >= 1
    load = timing.cpu_load(0.05)
    assert load is None or (load[0] >= 0 and ("busy right now" in load[1] or "load" in load[1]))
