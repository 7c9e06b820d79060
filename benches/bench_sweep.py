"""Sweep engine benchmark: configurations·steps per second, batched engine vs one at a time.

    python benches/bench_sweep.py                      # 48 configs at (b, d, C) = (256, 1280, 10)
    python benches/bench_sweep.py --data cifar --profile
    python benches/bench_sweep.py --paper-grid         # 1,728 configs, one CIFAR-10 epoch, → 100
    python benches/bench_sweep.py --memory --k 96 --d 2048 --c 100   # peak memory vs memory_plan

Candidates (same batches, same 48 configurations, timed interleaved with
`sea_kernels.timing.interleaved`; medians of --repeats):
  batched   `sweep._Engine.step`: every configuration in one pass (X W_all and dW_allᵀ = R_allᵀ X
            single GEMMs, K = X Xᵀ shared, the b×b work batched over chunks of configurations)
  loop      each configuration alone: `fused_sea(..., backend=--loop-backend)` + loss.backward()
            + torch.optim.SGD(momentum 0.9).step() — what training them one by one costs

The default grid is a slice of the paper's: lr ∈ {2⁻²…2³} × η ∈ {0, 0.2, 0.4, 0.8} × δ ∈ {0, 1}
(α 0.01, λ 0.1, wd 1e-6); `--grid eta-positive` uses η ∈ {0.2, 0.4, 0.8, 0.6} instead (no
η = 0 baselines, which the batched engine runs without the b×b work).

--paper-grid trains the paper's whole grid (1,728 configurations) for one epoch over the CIFAR-10
EfficientNet-Lite0 training features (50,000 × 1,280; 196 steps of 256) with `train_many` and
extrapolates the time to 100 epochs (printed as extrapolated), with the process's peak RSS.
Timings on a shared machine are noisy; the table prints the spread.

--memory trains --k configurations (the paper grid's first k, η = 0 and η > 0 alike) for one
epoch of 8 batches of --b random unit rows (d = --d, C = --c, float32) and prints the peak
resident set above the one before training (VmHWM reset through /proc/self/clear_refs after the
features are built) next to `sweeps.engine.memory_plan` for the CPU.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sea_kernels  # noqa: E402
from sea_kernels import timing  # noqa: E402
from sea_kernels.data import writers  # noqa: E402
from sea_kernels.data.features import prepare_features  # noqa: E402
from sea_kernels.op import cpp_backend as _ext  # noqa: E402
from sea_kernels.op.fused import resolve_backend  # noqa: E402
from sea_kernels.params import MOMENTUM  # noqa: E402

sw = importlib.import_module("sea_kernels.sweeps.engine")  # train_many and its engine


def data_path() -> Path:
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    base = here if here.is_dir() else Path("/work/shared/data")
    return base / "cifar10-efficientnet-lite0" / "features.npz"


def grid48(kind: str) -> list[dict]:
    etas = [0.0, 0.2, 0.4, 0.8] if kind == "paper-slice" else [0.2, 0.4, 0.6, 0.8]
    return sea_kernels.sweeps.grid.expand_grid({"lr": [2.0 ** i for i in range(-2, 4)], "eta": etas,
                           "delta": [0.0, 1.0]})


def make_batches(args, n_batches):
    b, d, c = args.b, args.d, args.c
    if args.data == "cifar":
        z = np.load(data_path())
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(z["y_train"]))[:n_batches * b]
        x = prepare_features(z["x_train"][idx])
        y = torch.from_numpy(z["y_train"][idx])
        d, c = x.shape[1], int(y.max()) + 1
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(n_batches * b, d, generator=g), dim=1)
        y = torch.randint(0, c, (n_batches * b,), generator=g)
    return [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(n_batches)], d, c


def run_bench(args):
    configs = grid48(args.grid)
    k = len(configs)
    n_batches = args.steps + 2
    batches, d, c = make_batches(args, n_batches)
    backend = resolve_backend(args.loop_backend, torch.device("cpu"))

    engine = sw._Engine(configs, d, c, torch.float32, torch.device("cpu"), args.chunk_size, None)
    states = []
    for cfg in configs:
        w = torch.zeros(d, c, requires_grad=True)
        opt = torch.optim.SGD([w], lr=cfg["lr"], momentum=MOMENTUM,
                              weight_decay=cfg["weight_decay"])
        states.append((cfg, w, opt))

    def loop_step(cfg, w, opt, xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = sea_kernels.fused_sea(xb, yb, w, alpha=cfg["alpha"], eta=cfg["eta"],
                                     lam=cfg["lam"], delta=cfg["delta"], backend=backend)
        loss.backward()
        opt.step()

    def batched():
        for xb, yb in batches[2:]:
            engine.step(xb, yb)

    def batched_no_grad():
        with torch.no_grad():
            batched()

    def loop():
        for cfg, w, opt in states:
            for xb, yb in batches[2:]:
                loop_step(cfg, w, opt, xb, yb)

    with torch.no_grad():  # warm-up (allocations, MKL) on the first two batches
        for xb, yb in batches[:2]:
            engine.step(xb, yb)
    for cfg, w, opt in states:
        for xb, yb in batches[:2]:
            loop_step(cfg, w, opt, xb, yb)

    # interleaved: machine drift hits both alike
    times = timing.interleaved({"batched": batched_no_grad, "loop": loop}, args.repeats)

    work = k * args.steps
    med = {n: timing.median(t) for n, t in times.items()}
    rate = {n: work / med[n] for n in med}
    eta0 = sum(cfg["eta"] == 0 for cfg in configs)
    print(f"sweep engine, {k} configurations ({eta0} with η = 0), (b, d, C) = ({args.b}, {d}, {c}),"
          f" {args.data} data, float32, {torch.get_num_threads()} threads, {args.steps} steps per "
          f"repeat, median of {args.repeats} interleaved repeats")
    print(f"loop backend: {backend} (C++ extension built: {_ext.CPP_AVAILABLE}); chunk size: "
          f"{args.chunk_size or 'auto'}")
    print(f"{'candidate':<10} {'median s':>10} {'min..max s':>17} {'configs·steps/s':>16} "
          f"{'µs/config-step':>15} {'speed-up':>9}")
    for n in ("loop", "batched"):
        lo, hi = min(times[n]), max(times[n])
        print(f"{n:<10} {med[n]:>10.4f} {lo:>8.4f}..{hi:<8.4f} {rate[n]:>16.1f} "
              f"{1e6 / rate[n]:>15.1f} {rate[n] / rate['loop']:>8.2f}×")
    out = {"configs": k, "eta0": eta0, "b": args.b, "d": d, "C": c,
           "threads": torch.get_num_threads(),
           "steps": args.steps, "repeats": args.repeats, "loop_backend": backend,
           "times_s": times, "configs_steps_per_s": rate, "speedup": rate["batched"] / rate["loop"]}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
            batched()
        print(p.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=22,
            max_shapes_column_width=60))
    return out


def _rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (MiB); NaN where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class _PeakRSS:
    """Samples VmRSS every 20 ms in a thread (VmHWM is not reliably updated mid-run)."""

    def __enter__(self):
        import threading
        self.peak = _rss_mib("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mib("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib("VmRSS"))


def run_memory(args):
    """Peak resident bytes of train_many above the resident set before it vs memory_plan."""
    import gc
    k, d, c, b = args.k, args.d, args.c, args.b
    configs = sea_kernels.sweeps.grid.expand_grid(None)[:k]
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8 * b, d, generator=g), dim=1)
    y = torch.arange(8 * b) % c
    sw.train_many(x[:b], y[:b], configs[:2], epochs=1, batch_size=b // 4, num_classes=c)  # set-up
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _rss_mib("VmRSS")
    sw.train_many(x, y, configs, epochs=1, batch_size=b, num_classes=c)
    peak = _rss_mib("VmHWM") - before
    plan = sw.memory_plan(k, d, c, b, torch.float32, "cpu")
    print(f"train_many, k = {k} configurations, (b, d, C) = ({b}, {d}, {c}), float32, "
          f"{torch.get_num_threads()} threads: peak {peak:.0f} MiB above the {before:.0f} MiB "
          f"before; memory_plan {plan['total'] / 2 ** 20:.0f} MiB (" + ", ".join(
              f"{name} {v / 2 ** 20:.0f}" for name, v in plan.items() if name != "total") + ")")
    return {"k": k, "b": b, "d": d, "C": c, "peak_mib": peak, "plan_mib": plan["total"] / 2 ** 20}


def run_paper_grid(args):
    z = np.load(data_path())
    x = prepare_features(z["x_train"])
    y = torch.from_numpy(z["y_train"])
    del z
    if args.paper_rows:  # rows are grouped by class: a random subset, not the first rows
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:args.paper_rows]
        x, y = x[idx], y[idx]
    c = int(y.max()) + 1
    configs = sea_kernels.sweeps.grid.expand_grid(None)
    try:  # hand the loader's freed buffers back to the OS, so RSS counts what is in use
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    rss0 = _rss_mib("VmRSS")
    with _PeakRSS() as mon:
        res = sw.train_many(x, y, configs, epochs=1, batch_size=256, random_state=0,
                            num_classes=c, chunk_size=args.chunk_size, progress=args.progress)
    peak = mon.peak
    t = res.wall_time_s
    full_steps = -(-50_000 // 256)
    epoch_s = t / res.steps * full_steps
    state_mib = 2 * len(configs) * x.shape[1] * c * 4 / 2 ** 20
    print(f"paper grid: {len(configs)} configurations over {x.shape[0]} × {x.shape[1]} CIFAR-10 "
          f"features, {res.steps} steps of 256 (float32, {torch.get_num_threads()} threads): "
          f"{t:.1f} s measured = {1e3 * t / res.steps:.0f} ms per step of all configurations, "
          f"{len(configs) * res.steps / t:.0f} configs·steps/s "
          f"({1e6 * t / (len(configs) * res.steps):.0f} µs per config-step); "
          f"{int(res.diverged.sum())} diverged")
    what = "measured" if res.steps == full_steps else "extrapolated"
    print(f"  one epoch of 50,000 rows ({full_steps} steps): {epoch_s:.0f} s ({what}); "
          f"100 epochs: {100 * epoch_s:.0f} s = {100 * epoch_s / 3600:.2f} h (extrapolated)")
    print(f"  memory: RSS {rss0:.0f} MiB before training (features loaded), peak during training "
          f"{peak:.0f} MiB (+{peak - rss0:.0f} MiB; weights + momentum alone are "
          f"{state_mib:.0f} MiB)")
    return {"configs": len(configs), "rows": int(x.shape[0]), "steps": res.steps,
            "measured_s": t, "epoch_s": epoch_s, "extrapolated_100_epochs_s": 100 * epoch_s,
            "rss_before_mib": rss0,
            "peak_rss_mib": peak, "diverged": int(res.diverged.sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--b", type=int, default=256)
    p.add_argument("--d", type=int, default=1280)
    p.add_argument("--c", type=int, default=10)
    p.add_argument("--data", choices=("random", "cifar"), default="random")
    p.add_argument("--grid", choices=("paper-slice", "eta-positive"), default="paper-slice")
    p.add_argument("--steps", type=int, default=4, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--loop-backend", default="auto", choices=("auto", "torch", "cpp"))
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    p.add_argument("--paper-grid", action="store_true",
                   help="time the full 1,728-config grid for one CIFAR-10 epoch instead")
    p.add_argument("--paper-rows", type=int, default=None,
                   help="with --paper-grid: use only the first N training rows")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--memory", action="store_true", help="peak memory of train_many vs its plan")
    p.add_argument("--k", type=int, default=96, help="with --memory: configurations")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = run_memory(args) if args.memory else \
        run_paper_grid(args) if args.paper_grid else run_bench(args)
    if args.json:
        writers.write_json(args.json, out, indent=1)


if __name__ == "__main__":
    main()
