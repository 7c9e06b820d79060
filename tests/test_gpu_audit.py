"""benches/gpu_audit.py: the host's own launches lowered to sm_90 cubins with Triton's ptxas (no
GPU needed), at two of its shapes, whole batch and groups, float32 and bfloat16.

Asserted: every kernel variant compiled, no spills, shared memory within an H100's 227 KiB,
tensor-core instructions (mma.sync / wgmma) in every kernel with a dot, executed FLOPs at most
MAX_RATIO × the needed ones, and the JSON records carry exactly the documented fields. A third,
small shape with C ≥ 16 takes the dot paths of `_prep` and `_probs` (C = 10 takes their exact
FMA loops).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"kernel", "shape", "dtype", "compiled", "num_warps", "regs", "spills", "smem", "dots",
          "mma", "flops_executed", "flops_needed"}
KERNELS = {"_prep", "_prep[NEG_ONLY]", "_probs", "_stats", "_stats[GRAD]"}
MAX_RATIO = 1.5


def run_audit(tmp_path, *args, timeout=900):
    """(records, completed process) of benches/gpu_audit.py --json in a process of its own (no
    TRITON_INTERPRET); skips where Triton has no ptxas."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "benches" / "gpu_audit.py"),
                           *args, "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("no ptxas for the CUDA backend of triton")
    assert out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


@pytest.mark.build
def test_audit_two_shapes(tmp_path):
    pytest.importorskip("triton")
    recs, proc = run_audit(tmp_path, "--shape", "256,1280,10,-", "--shape", "4096,1280,10,256",
                           "--shape", "128,64,100,-")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(recs) == 3 * 2 * len(KERNELS)
    for r in recs:
        assert set(r) == FIELDS, r
        where = (r["kernel"], r["shape"], r["dtype"])
        assert r["compiled"] is True, where
        assert r["spills"] == 0, where
        assert 0 <= r["smem"] <= 227 * 1024, where
        assert r["regs"] and 0 < r["regs"] <= 255, where
        assert r["dtype"] in ("float32", "bfloat16") and len(r["shape"]) == 4, where
        assert isinstance(r["mma"], int) and r["mma"] >= 0, where
        assert r["flops_executed"] >= r["flops_needed"] > 0, where
        assert r["flops_executed"] <= MAX_RATIO * r["flops_needed"], where
        if r["dots"]:
            assert r["mma"] > 0, where
    assert {r["kernel"] for r in recs} == KERNELS
    assert all(r["dots"] for r in recs if r["kernel"].startswith("_stats"))
    assert any(r["dots"] for r in recs if r["kernel"].startswith("_prep"))   # C = 100
    assert [r["shape"][3] for r in recs].count(None) == 2 * len(recs) // 3
    assert "_stats" in proc.stdout and "executed" in proc.stdout   # the table
