"""benches/gpu_check.py --dry-run: the device script end to end on the CPU (TRITON_INTERPRET=1,
tiny shapes), so that a device run cannot fail on what the CPU can catch: both files are
written, and every section ran and recorded its results (the sanitizer's a reason)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))


@pytest.mark.slow
def test_dry_run(tmp_path):
    pytest.importorskip("triton")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "benches" / "gpu_check.py"),
                           "--dry-run", "--out", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=330)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    md = (tmp_path / "gpu_check.md").read_text()
    names = ("versions", "tests", "accuracy", "sanitizer", "bench", "rows", "epochs", "sweep")
    assert report["dry_run"] is True and tuple(report["sections"]) == names
    for name in names:
        sec = report["sections"][name]
        assert sec["status"] == "ok", (name, sec.get("error"), sec.get("traceback"))
        assert sec["results"], name
        assert f"## {name}" in md
    sections = report["sections"]
    assert all(t["rc"] == 0 for t in sections["tests"]["results"]), sections["tests"]
    acc = sections["accuracy"]["results"]
    assert acc and not [r for r in acc if "error" in r or "skipped" in r], acc
    assert all(r["rel_dW"] < 1e-2 and r["rel_x_aug"] < 1e-2 for r in acc), acc
    bench = sections["bench"]["results"]
    assert {"triton", "torch-gram", "gemm-floor", "linear-ce"} <= {r["candidate"] for r in bench}
    assert not [r for r in bench if "error" in r], bench
    assert not [r for r in sections["rows"]["results"] if "error" in r]
    assert sections["epochs"]["results"]["seconds"] > 0
    assert sections["sweep"]["results"]["steps_per_s"] > 0
    assert "skipped" in sections["sanitizer"]["results"]


def test_sanitizer_plumbing(tmp_path, monkeypatch):
    """The sanitizer section (device only) with a stand-in compute-sanitizer on PATH: both tools
    run as subprocesses, their summary lines and the call's completion are recorded."""
    import gpu_check
    fake = tmp_path / "compute-sanitizer"
    fake.write_text("#!/bin/sh\necho \"========= $2: sanitizer call done\"\n"
                    "echo '========= ERROR SUMMARY: 0 errors'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    ctx = gpu_check.Ctx(dry=False, budget=120)
    out = gpu_check.sanitizer(ctx)
    assert out["binary"] == str(fake)
    for tool in ("memcheck", "racecheck"):
        rec = out[tool]
        assert rec["rc"] == 0 and rec["call_done"], rec
        assert rec["summary"].endswith("ERROR SUMMARY: 0 errors") and rec["seconds"] >= 0
