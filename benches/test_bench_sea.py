"""pytest-benchmark suite: `pytest benches/ --benchmark-only` (or `--benchmark-compare`).

Each benchmark is one training step (loss + dW) at the issue's CPU shapes; benches/run.py prints
the same candidates side by side with ratios.
"""
import pytest
from run import CPU_SHAPES, candidates, make_inputs

NAMES = ["reference", "torch-gram", "cpp", "fused_sea", "gemm-floor"]


@pytest.mark.parametrize("shape", CPU_SHAPES[:2], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_step(benchmark, shape, name):
    fns = candidates(*make_inputs(*shape, "cpu"))
    if name not in fns:
        pytest.skip(f"{name} not available on this machine")
    benchmark.group = "x".join(map(str, shape))
    benchmark(fns[name])
