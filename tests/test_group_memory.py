"""Peak memory of a grouped step (fused_sea forward + backward, G = 256) is O(b·G): within 2× of
the documented formula b·(k·d + 2C + 2G) + d·C floats (k b×d stages: cpp 0, torch 3) and
linear in b (benches/bench_groups.py
--memory; each measurement in a fresh subprocess, the input x excluded)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from sea_kernels.op import cpp_backend

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "bench_groups.py"


def _bench():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_groups", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_formula_counts_the_stated_floats():
    bench = _bench()
    assert bench.memory_formula(262144, 1280, 10, 256, "cpp") == 4 * (262144 * 532 + 12800)
    assert bench.memory_formula(262144, 1280, 10, 256, "torch") == 4 * (262144 * 4372 + 12800)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["torch", "cpp"])
def test_group_step_memory_is_linear_in_b_and_within_2x_of_the_formula(provider):
    if provider == "cpp" and not cpp_backend.ensure():
        pytest.skip(f"C++ kernel unavailable: {cpp_backend.CPP_ERROR}")
    bench = _bench()
    small, big = (bench.measure_memory(provider, b, 1280, 10, 256, threads=2)
                  for b in (8192, 32768))
    assert big["peak_bytes"] <= 2 * big["formula_bytes"], big
    assert small["peak_bytes"] <= 2 * small["formula_bytes"], small
    # 4× the rows: 4× the memory (b² would be 16×); the slack is the allocator's fixed part
    assert big["peak_bytes"] <= 4.5 * max(small["peak_bytes"], 1), (small, big)
    assert big["peak_bytes"] >= 2 * small["peak_bytes"], (small, big)   # it does measure
