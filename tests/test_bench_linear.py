"""benches/bench_linear.py (issue #16) runs at one tiny shape and prints its table."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "bench_linear.py"


def test_bench_linear_prints_table():
    out = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "8,16,3", "--repeats", "2",
                          "--warmup", "0", "--threads", "1"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "ratio = SeA ms / F.linear_cross_entropy" in out        # the legend
    assert "SeA ms" in out and "F.lce ms" in out and "floor" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("    8    16     3")]
    assert len(rows) == 6
    for row in rows:       # b d C, the row's label, SeA ms, F.lce ms, ratio (and the floor)
        numbers = [float(t) for t in row[3:] if t[0].isdigit()]
        assert len(numbers) in (3, 4) and min(numbers) > 0
