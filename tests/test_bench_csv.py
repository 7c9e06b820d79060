"""The benchmark CSV (`benches/run.py --csv`, benches/csv_format.py), its plots
(`benches/plot.py`), and the percentile and peak-memory helpers of sea_kernels.timing they use."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sea_kernels
from sea_kernels import timing

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
sys.path.insert(0, str(BENCHES))

import csv_format  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
LIGER_COLUMNS = ["kernel_name", "kernel_provider", "kernel_operation_mode", "metric_name",
                 "metric_unit", "x_name", "x_label", "x_value", "y_value_50", "y_value_20",
                 "y_value_80", "extra_benchmark_config_str", "gpu_name", "timestamp"]
SHAPE = (8, 16, 3)


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot(*args, timeout=300):
    return subprocess.run([sys.executable, str(BENCHES / "plot.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ------------------------------------------------------------------------------- timing helpers

def test_band_and_percentiles():
    s = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert timing.band(s) == (pytest.approx(1.8), 3.0, pytest.approx(4.2))
    assert timing.band([1.0, 2.0])[1] == timing.median([1.0, 2.0]) == 1.5
    assert timing.percentiles(s, (0, 50, 100)) == (1.0, 3.0, 5.0)
    assert timing.BAND == (20, 50, 80)
    summ = timing.summary(s)
    assert (summ.p20, summ.p80) == (pytest.approx(1.8), pytest.approx(4.2))
    with pytest.raises(ValueError, match="q"):
        timing.percentiles(s, (20, 120))


def test_cpu_peak_memory_counts_the_step_allocations():
    keep = torch.ones(256, 256)  # live before the step: not counted

    def step():
        a = torch.empty(1024, 1024)   # 4 MiB, freed before the next one
        del a
        b = torch.empty(512, 512)     # 1 MiB
        return b.sum() + keep[0, 0]

    try:
        peaks = timing.memory_samples(step, 2, "cpu")
    except timing.MemoryUnavailable as e:  # pragma: no cover - profiler without memory events
        pytest.skip(str(e))
    assert len(peaks) == 2
    for p in peaks:  # the 4 MiB buffer, plus at most a few scalars
        assert 4 * 2 ** 20 <= p < 4 * 2 ** 20 + 4096, p
    assert "torch.profiler" in timing.MEMORY_METHOD["cpu"]
    with pytest.raises(timing.MemoryUnavailable):
        timing.peak_memory_bytes(step, "meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory_and_percentiles():
    keep = torch.ones(1024, 1024, device="cuda")

    def step():
        return torch.empty(2048, 1024, device="cuda").fill_(1.0).sum() + keep[0, 0]

    peak = timing.peak_memory_bytes(step, "cuda")
    assert 8 * 2 ** 20 <= peak < 9 * 2 ** 20
    p20, p50, p80 = timing.do_bench_percentiles(step, warmup_ms=5, rep_ms=20)
    assert 0 < p20 <= p50 <= p80


# ------------------------------------------------------------------------------- format (fast)

def _synthetic_rows(machine="CPU A", threads=2, scale=1.0):
    env = {"sea_kernels_version": sea_kernels.__version__, "cpu_model": machine,
           "threads": threads, "torch_version": torch.__version__, "cuda_version": "",
           "triton_version": "", "python_version": "3", "timestamp": "2025-01-01 00:00:00"}
    rows = []
    for shape in [(8, 16, 3), (16, 32, 4), (32, 64, 5)]:
        for provider in ("reference", "cpp"):
            for mode in csv_format.MODES:
                for metric in csv_format.METRICS:
                    v = scale * math.prod(shape) * (2 if provider == "reference" else 1)
                    band = None if (metric, provider) == ("memory", "cpp") else (v, 1.1 * v,
                                                                                 1.3 * v)
                    rows.append(csv_format.make_row(
                        env, device="cpu", gpu_name="", provider=provider, mode=mode,
                        metric=metric, shape=shape, band=band, config={"dtype": "float32"},
                        n_samples=3, measurement="synthetic"))
    return rows


def test_rows_round_trip_and_merge(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    csv_format.write(a, _synthetic_rows())
    csv_format.write(b, _synthetic_rows(machine="CPU B", scale=2.0))
    header = next(csv.reader(open(a, newline="", encoding="utf-8")))
    assert header == list(csv_format.COLUMNS) and header[:len(LIGER_COLUMNS)] == LIGER_COLUMNS
    raw = _read(a)
    assert raw[0]["x_value"] == "8x16x3" and json.loads(raw[0]["extra_benchmark_config_str"]) \
        == {"b": 8, "d": 16, "C": 3, "dtype": "float32"}
    nan_rows = [r for r in raw if r["kernel_provider"] == "cpp" and r["metric_name"] == "memory"]
    assert nan_rows and all(r["y_value_50"] == "nan" for r in nan_rows)
    one = csv_format.read([a])
    assert len(one) == 24 and one[0]["b"] == 8 and isinstance(one[0]["y_value_50"], float)
    assert len(csv_format.read([a, a])) == 24, "the same rows twice merge into one"
    both = csv_format.read([a, b])
    assert len(both) == 48 and {r["machine"] for r in both} == {"CPU A", "CPU B"}
    assert not list(tmp_path.glob(".*tmp*")), "written atomically, no temporary file left"


def test_read_refuses_a_csv_that_is_not_a_benchmark(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a benchmark CSV"):
        csv_format.read([bad])
    proc = _plot(bad, "--out", tmp_path / "p")
    assert proc.returncode == 2 and "not a benchmark CSV" in proc.stderr


def test_plot_synthetic_csvs_of_two_machines(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    csv_format.write(a, _synthetic_rows())
    csv_format.write(b, _synthetic_rows(machine="CPU B", threads=8, scale=0.5))
    out = tmp_path / "plots"
    proc = _plot(a, b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"sea_loss-{m}-{k}.png" for m in csv_format.MODES
                           for k in csv_format.METRICS)
    for p in out.iterdir():
        assert p.read_bytes()[:8] == PNG
    assert sorted(Path(line).name for line in proc.stdout.split()) == names


# ------------------------------------------------------------------------------- run.py end to end

@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory):
    """benches/run.py at one tiny shape, CPU only, with --csv: (CSV path, stdout)."""
    out = tmp_path_factory.mktemp("bench") / "out.csv"
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(BENCHES / "run.py"), "--shapes",
                           ",".join(map(str, SHAPE)), "--repeats", "2", "--warmup", "1",
                           "--no-gpu", "--memory-repeats", "2", "--csv", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.time() - t0 < 900
    return out, proc.stdout, proc.stderr


@pytest.mark.slow
def test_run_csv_has_one_row_per_kernel_provider_mode_metric_shape(bench_csv):
    path, stdout, stderr = bench_csv
    rows = _read(path)
    assert list(rows[0]) == list(csv_format.COLUMNS)
    providers = {"reference", "compiled-ref", "torch-gram", "fused_sea", "gemm-floor"}
    if sea_kernels.backend_status()["cpp"][0]:
        providers.add("cpp")
    keys = [(r["kernel_name"], r["kernel_provider"], r["kernel_operation_mode"],
             r["metric_name"], r["x_value"]) for r in rows]
    assert len(keys) == len(set(keys)), "one row per (kernel, provider, mode, metric, shape)"
    assert set(keys) == {("sea_loss", p, m, k, "8x16x3") for p in providers
                         for m in ("forward", "full") for k in ("time", "memory")}
    for r in rows:
        p20, p50, p80 = (float(r[k]) for k in ("y_value_20", "y_value_50", "y_value_80"))
        assert r["metric_unit"] == {"time": "ms", "memory": "MiB"}[r["metric_name"]]
        if r["metric_name"] == "time":
            assert 0 < p20 <= p50 <= p80, r
            assert r["n_samples"] == "2" and "perf_counter" in r["measurement"]
        elif math.isnan(p50):
            assert r["measurement"].startswith("not measured"), r
        else:
            assert 0 <= p20 <= p50 <= p80, r
            assert "torch.profiler" in r["measurement"] and r["n_samples"] == "2"
        # where and with what it ran
        assert r["device"] == "cpu" and r["gpu_name"] == ""
        assert r["machine"] and r["machine"] == r["cpu_model"] == csv_format.cpu_model()
        assert int(r["threads"]) >= 1
        assert r["torch_version"] == torch.__version__
        assert r["sea_kernels_version"] == sea_kernels.__version__
        assert r["python_version"] and time.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S")
        assert (int(r["b"]), int(r["d"]), int(r["C"])) == SHAPE
        assert json.loads(r["extra_benchmark_config_str"])["dtype"] == "float32"
    # memory is measured for every CPU candidate (nothing NaN on CPU)
    assert all(math.isfinite(float(r["y_value_50"])) for r in rows)
    # the full step holds dW on top of the loss: never less memory than the forward floor
    mem = {(r["kernel_provider"], r["kernel_operation_mode"]): float(r["y_value_50"])
           for r in rows if r["metric_name"] == "memory"}
    assert mem[("gemm-floor", "full")] > mem[("gemm-floor", "forward")]
    # the table is printed as before, and the CSV's full-mode medians are its numbers
    lines = stdout.splitlines()
    head = [i for i, ln in enumerate(lines) if ln.startswith("device ")]
    assert len(head) == 1 and lines[head[0]].split() == [
        "device", "b", "d", "C", "candidate", "median", "ms", "vs", "reference", "×", "GEMM",
        "floor", "dW", "rel", "err"]
    table = {ln.split()[4]: float(ln.split()[5]) for ln in lines[head[0] + 2:]
             if ln.startswith("cpu ")}
    assert set(table) == providers
    for r in rows:
        if (r["kernel_operation_mode"], r["metric_name"]) == ("full", "time"):
            assert float(r["y_value_50"]) == pytest.approx(table[r["kernel_provider"]],
                                                           abs=6e-4)
    assert "profiler_start" not in stderr and "profiler_stop" not in stderr


@pytest.mark.slow
def test_run_csv_plots_alone_and_merged_with_another_machine(bench_csv, tmp_path):
    path, _, _ = bench_csv
    out = tmp_path / "one"
    proc = _plot(path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(f"sea_loss-{m}-{k}.png" for m in ("forward", "full")
                                            for k in ("time", "memory"))
    assert all(p.read_bytes()[:8] == PNG for p in pngs)

    rows = _read(path)
    for r in rows:
        r["machine"] = r["cpu_model"] = "Another CPU (test)"
        r["threads"] = "16"
    other = tmp_path / "other.csv"
    _write(other, rows)
    merged = csv_format.read([path, other])
    assert len(merged) == 2 * len(rows)
    threads = _read(path)[0]["threads"]
    assert {csv_format.machine_label(r) for r in merged} == {
        f"{csv_format.cpu_model()}, {threads} threads", "Another CPU (test), 16 threads"}
    out2 = tmp_path / "two"
    proc = _plot(path, other, "--out", out2)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out2.glob("*.png")) == [p.name for p in pngs]
    assert all(p.read_bytes()[:8] == PNG for p in out2.glob("*.png"))
    assert not list(out2.glob(".*")), "written atomically: no temporary file left"


@pytest.mark.slow
def test_run_reports_progress_and_explains_its_columns(bench_csv):
    _, stdout, stderr = bench_csv
    assert "[1/1] cpu (8, 16, 3): timing" in stderr and "[1/1] cpu (8, 16, 3): done in" in stderr
    assert "GEMM floor is the time of the step's" in stdout.replace("\n", " ").replace("  ", " ")
    assert stdout.index("device ") < stdout.index("× GEMM floor  candidate ms / GEMM floor ms")


def test_run_help_gives_every_default_and_rejects_bad_counts(capsys):
    import run
    text = run.parser().format_help()
    for action in run.parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), action.option_strings
    assert "gemm-floor" in text
    for argv in (["--repeats", "0"], ["--memory-repeats", "0"], ["--warmup", "-1"],
                 ["--shapes", "8,16"]):
        with pytest.raises(SystemExit):
            run.parser().parse_args(argv)
    assert run.parser().parse_args(["--shapes", "8,16,3;4,4,2"]).shapes == [(8, 16, 3), (4, 4, 2)]
