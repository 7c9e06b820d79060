"""sea_kernels.plots draws with matplotlib's object API: a user's backend stays as it was,
pyplot is never imported, and the PNGs are written (atomically)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

HISTORIES = {
    "η=0": [{"epoch": 1, "train_loss": 1.2, "train_top1": 0.5, "test_top1": 0.45},
            {"epoch": 2, "train_loss": 0.9, "train_top1": 0.6, "test_top1": 0.55}],
    "η=0.8": [{"epoch": 1, "train_loss": 1.1, "train": {"top1": 0.52}, "test": {"top1": 0.5}},
              {"epoch": 2, "train_loss": 0.8, "train": {"top1": 0.65}, "test": {"top1": 0.6}}],
}
SWEEP = {"metric": "top1",
         "configs": [{"lr": lr, "eta": eta, "delta": 0.0} for lr in (0.1, 1.0) for eta in (0, 0.8)],
         "val_top1": [0.5, 0.55, None, 0.6]}


@pytest.mark.parametrize("backend", ["svg", "pdf"])
def test_plots_leave_the_users_backend_alone(tmp_path, backend):
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use({backend!r})
        from sea_kernels.plots import plot_curves, plot_heatmap
        out = sys.argv[1]
        plot_curves({HISTORIES!r}, out + "/curves.png")
        plot_curves({{"none": [{{"epoch": 1, "train_loss": 1.0}}]}}, out + "/loss.png")
        plot_heatmap({SWEEP!r}, out + "/heatmap.png", x="lr", y="eta")
        assert matplotlib.get_backend() == {backend!r}, matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MPLBACKEND", None)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
    for name in ("curves.png", "loss.png", "heatmap.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "heatmap.png",
                                                          "loss.png"], "no temporary file left"


def test_plots_in_process_keep_the_backend_and_write_other_formats(tmp_path):
    import matplotlib

    from sea_kernels.plots import plot_curves, plot_heatmap
    before = matplotlib.get_backend()
    assert plot_curves(HISTORIES, tmp_path / "c.png") == tmp_path / "c.png"
    plot_heatmap(SWEEP, tmp_path / "h.svg")
    plot_curves(HISTORIES, tmp_path / "c.pdf", sets=["test"], title="t")
    assert matplotlib.get_backend() == before
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:500]
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
