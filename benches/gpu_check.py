"""The one command for a GPU machine: every device check, timed and guarded, into two files.

    PYTHONPATH=. SEA_KERNELS_NO_JIT=1 python3 benches/gpu_check.py --out DIR
    python benches/gpu_check.py --dry-run --out DIR      # the same script on the CPU, tiny shapes

Needs torch ≥ 2.11, triton ≥ 3.6 and one CUDA GPU; no network, no virtual environment (run from
the checkout). Writes DIR/gpu_check.json and DIR/gpu_check.md (atomically, after every
section, so a run cut short keeps what it measured). Sections, in order (SECTIONS):

  versions   python, torch, triton, CUDA, GPU, driver; which backends are usable
  tests      the GPU-relevant test files with pytest (TEST_FILES; no TRITON_INTERPRET there)
  accuracy   triton vs float64 (the torch backend in float64 on the GPU for the loss and dW,
             op.reference.augment in float64 for x̃) at ACCURACY_SHAPES with W scaled so that the
             logits' standard deviation is kλ, k ∈ MARGINS: relative errors of the loss, dW and
             x̃ (x̃ of up to 256 sampled rows, formed from the triton host's row factors and its
             (m, 1/z)) per input dtype; the float64 inputs are the dtype's inputs upcast
  sanitizer  compute-sanitizer memcheck and racecheck on one small triton call (a subprocess)
  bench      benches/run.py's candidates (triton, torch-gram, compiled-ref, reference, fused_sea,
             gemm-floor) plus linear-ce (F.linear_cross_entropy, or F.linear + F.cross_entropy:
             the η = 0 anchor) in fp32 and bf16: median ms, peak memory, and the triton step's
             per-kernel times (torch.profiler)
  rows       µs and bytes per row of one grouped step (G = 256) at b ∈ ROW_SIZES, triton and
             torch; a size whose estimated memory exceeds the GPU's is skipped with the reason
  epochs     100 epochs of SeAClassifier (backend triton) at n = 50,000, d = 8192, C = 100,
             b = 256, random unit features on the device, labels the argmax of a random linear
             map (seconds; extrapolated from measured epochs when 100 would not fit the budget)
  sweep      train_many over the 1,728 configurations of PAPER_GRID for a few steps: steps/s
             (the time of 2 + k steps minus that of 2), extrapolated to 100 epochs at n = 50,000

Every section runs in try/except (a failure is recorded with its error and traceback, and the
script goes on) and under a time budget (--budget, default 450 s): a section starts only if its
minimum fits in what is left, and each stops its own loop when its share runs out, saying what
it left out. --dry-run runs the same code on the CPU under TRITON_INTERPRET=1 with every shape
scaled down, fewer epochs, a 64-configuration grid and no sanitizer (a recorded reason): it
proves the script and its file formats before a device run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Full-run shapes; the dry run's are in DRY.
ACCURACY_SHAPES = [(256, 8192, 100, None), (1024, 8192, 1000, None), (4096, 1280, 10, 256),
                   (65536, 1280, 10, 256)]
MARGINS = (1, 10, 100, 1000)
BENCH_SHAPES = [(256, 8192, 100), (1024, 8192, 1000)]
ROW_SIZES = (4096, 16384, 65536, 262144)
ROW_SHAPE = (1280, 10)            # (d, C) of the rows section
GROUP = 256
EPOCHS = dict(n=50_000, d=8192, c=100, batch=256, epochs=100)
SWEEP = dict(d=8192, c=100, batch=256, steps=6, n_full=50_000, epochs_full=100)
TEST_FILES = [("tests/test_triton_kernel.py",), ("tests/test_backends_agree.py", "-k", "triton"),
              ("tests/test_triton_launches.py",), ("tests/test_op_contract.py",),
              ("tests/test_torch_integration.py",)]
DTYPES = ("float32", "bfloat16")
BENCH_ORDER = ("triton", "torch-gram", "gemm-floor", "linear-ce", "fused_sea", "reference",
               "compiled-ref")

DRY = dict(
    accuracy=[(32, 48, 10, None), (64, 32, 20, None), (64, 32, 5, 16), (128, 16, 5, 16)],
    bench=[(32, 64, 10)], rows=(64, 128, 256), row_shape=(32, 5), group=16,
    epochs=dict(n=256, d=32, c=5, batch=64, epochs=3, lr=0.2),
    sweep=dict(d=32, c=5, batch=64, steps=2, n_full=50_000, epochs_full=100),
    tests=[("tests/test_triton_kernel.py", "-k", "refusals or without_grad")])

#: (name, minimum seconds to start on a GPU, share of the budget it may use).
#: The sanitizer runs early: its two subprocesses are cheap to lose to a later overrun.
SECTIONS = [("versions", 1, 0.02), ("tests", 20, 0.25), ("accuracy", 15, 0.17),
            ("sanitizer", 30, 0.22), ("bench", 20, 0.18), ("rows", 10, 0.08), ("epochs", 15, 0.1),
            ("sweep", 15, 0.08)]


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and .md")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, TRITON_INTERPRET=1, tiny shapes, no sanitizer (default: off)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run (default 450; dry run 240)")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to run (default: all: "
                        + ",".join(s[0] for s in SECTIONS) + ")")
    return p.parse_args(argv)


ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
if ARGS is not None:      # before triton is imported: the interpreter is fixed at import
    if ARGS.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("SEA_KERNELS_NO_JIT", "1")   # the C++ extension is never built here
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benches"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Ctx:
    """The run: device, dry or not, the overall deadline and the current section's."""

    def __init__(self, dry: bool, budget: float):
        self.dry = dry
        self.dev = torch.device("cpu" if dry else "cuda")
        self.start = time.monotonic()
        self.deadline = self.start + budget
        self.section_deadline = self.deadline

    def left(self) -> float:
        """Seconds left to the current section (its share, within the whole budget)."""
        return min(self.deadline, self.section_deadline) - time.monotonic()

    def shapes(self, name):
        return DRY[name] if self.dry else {
            "accuracy": ACCURACY_SHAPES, "bench": BENCH_SHAPES, "rows": ROW_SIZES,
            "row_shape": ROW_SHAPE, "group": GROUP, "epochs": EPOCHS, "sweep": SWEEP,
            "tests": TEST_FILES}[name]

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()


# ---------------------------------------------------------------------------------- helpers

def _hyper():
    from run import HYPER
    return dict(HYPER)


def _time_ms(ctx, fn) -> float:
    """Median ms of one call: do_bench on CUDA, wall clock of a few calls on the CPU."""
    from sea_kernels import timing
    if ctx.dev.type == "cuda":
        return timing.do_bench_median(fn, warmup_ms=10, rep_ms=50)
    samples = timing.interleaved([fn], 3, warmup=1)[0]
    return 1e3 * timing.median(samples)


def _peak_bytes(ctx, fn):
    from sea_kernels import timing
    try:
        return timing.peak_memory_bytes(fn, ctx.dev)
    except timing.MemoryUnavailable as exc:
        return f"not measured: {exc}"


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _unit_rows(n, d, dev, seed, dtype=torch.float32):
    g = torch.Generator(device=dev).manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, device=dev), dim=1).to(dtype)


def _labels(n, c, dev, seed):
    g = torch.Generator(device=dev).manual_seed(seed + 1)
    return torch.randint(0, c, (n,), generator=g, device=dev)


def _learnable_labels(x, c, seed):
    """argmax_c of x·W_true for a random W_true: a separable task (random labels on random
    features make the trainer's divergence guard fire at small d)."""
    g = torch.Generator(device=x.device).manual_seed(seed + 2)
    return (x.float() @ torch.randn(x.shape[1], c, generator=g, device=x.device)).argmax(dim=1)


def _oom(exc) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_cuda():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------- sections

def versions(ctx):
    import sea_kernels
    out = dict(python=platform.python_version(), torch=torch.__version__,
               cuda=torch.version.cuda, sea_kernels=sea_kernels.__version__,
               device=str(ctx.dev), dry_run=ctx.dry,
               triton_interpret=os.environ.get("TRITON_INTERPRET"))
    try:
        import triton
        out["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        out["triton"] = f"not importable: {exc!r}"
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out["driver"] = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                text=True, timeout=20).stdout.strip()
        except Exception as exc:  # noqa: BLE001
            out["driver"] = f"nvidia-smi failed: {exc!r}"
    else:
        out["driver"] = "no nvidia-smi"
    out["backends"] = {k: ok for k, (ok, _) in sea_kernels.backend_status().items()}
    from sea_kernels.op import triton_backend as tb
    if tb.AVAILABLE:
        import dataclasses
        out["triton_config"] = dataclasses.asdict(tb.CONFIG)
        out["dot_precision"] = tb.DOT_PRECISION
    return out


def tests(ctx):
    import importlib.util
    if importlib.util.find_spec("pytest") is None:
        return {"skipped": "pytest is not importable here"}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if ctx.dry:
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    out = []
    for spec in ctx.shapes("tests"):
        if not (ROOT / spec[0]).exists():
            out.append(dict(file=" ".join(spec), outcome="absent"))
            continue
        left = ctx.left()
        if left < 10:
            out.append(dict(file=" ".join(spec), outcome="skipped: budget"))
            continue
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--maxfail=5", *spec]
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=left)
            lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
            rec = dict(file=" ".join(spec), rc=p.returncode,
                       outcome=lines[-1] if lines else "(no output)")
            if p.returncode not in (0, 5):
                rec["tail"] = (p.stdout + p.stderr)[-3000:]
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout or b""
            partial = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            rec = dict(file=" ".join(spec), rc=None, outcome=f"timed out after {left:.0f} s",
                       tail=partial[-3000:])
        rec["seconds"] = round(time.monotonic() - t0, 1)
        out.append(rec)
    return out


def _triton_run(x, y, w, group, hyper):
    """(loss, dW, x̃ of the sampled rows, the sampled rows) of fused_sea(backend="triton"); x̃
    from the kernels' Q (b×G, `triton_backend.probs`) and row factors c1, c2 (`stats`):
    x̃_i = c1_i x_i + c2_i q_i X (for the untrusted rows c1, c2 are the kernel's directly formed
    1/‖v_i‖ and ηr_i/‖v_i‖)."""
    import sea_kernels
    from sea_kernels.op import triton_backend as tb
    seen = {}
    orig_p, orig_s = tb.probs, tb.stats

    def spy_p(*args, **kw):
        seen["q"] = orig_p(*args, **kw)
        return seen["q"]

    def spy_s(*args, **kw):
        out = orig_s(*args, **kw)
        seen["cf"] = out[-1]
        return out

    tb.probs, tb.stats = spy_p, spy_s
    try:
        wg = w.detach().requires_grad_(True)
        loss = sea_kernels.fused_sea(x, y, wg, group_size=group, backend="triton", **hyper)
        loss.backward()
    finally:
        tb.probs, tb.stats = orig_p, orig_s
    b = x.shape[0]
    rows = torch.arange(0, b, max(1, b // 256), device=x.device)[:256]
    xf, q = x.float(), seen["q"]
    g = q.shape[1]
    cols = (rows // g * g)[:, None] + torch.arange(g, device=x.device)
    qd = torch.zeros(rows.numel(), b, device=x.device).scatter_add_(
        1, cols.clamp(max=b - 1), q[rows] * (cols < b))
    c1, c2 = seen["cf"][0], seen["cf"][1]
    xt = c1[rows, None] * xf[rows] + c2[rows, None] * (qd @ xf)
    return loss.detach(), wg.grad, xt, rows


def accuracy(ctx):
    import sea_kernels
    from sea_kernels.op import reference as ref
    hyper = _hyper()
    lam = hyper["lam"]
    out = []
    for b, d, c, g in ctx.shapes("accuracy"):
        x32 = _unit_rows(b, d, ctx.dev, seed=b + d + c)
        y = _labels(b, c, ctx.dev, seed=b + d + c)
        w0 = torch.randn(d, c, generator=torch.Generator(device=ctx.dev).manual_seed(7),
                         device=ctx.dev)
        w0 = w0 / (x32 @ w0).std()          # logits of standard deviation 1
        for k in MARGINS:
            for dt in DTYPES:
                rec = dict(shape=[b, d, c, g], margin=f"{k}λ", dtype=dt)
                if ctx.left() < 2:
                    rec["skipped"] = "budget"
                    out.append(rec)
                    continue
                try:
                    xd, wd = x32.to(getattr(torch, dt)), (w0 * (k * lam)).to(getattr(torch, dt))
                    loss, dw, xt, rows = _triton_run(xd, y, wd, g, hyper)
                    x64, w64 = xd.double(), wd.double().requires_grad_(True)
                    l64 = sea_kernels.fused_sea(x64, y, w64, group_size=g, backend="torch",
                                                **hyper)
                    l64.backward()
                    xt64 = ref.augment(x64, y, w64.detach(), group_size=g, **hyper)[rows]
                    rec.update(loss=float(l64), rel_loss=_rel(loss.reshape(1), l64.reshape(1)),
                               rel_dW=_rel(dw, w64.grad), rel_x_aug=_rel(xt, xt64))
                except Exception as exc:  # noqa: BLE001 - one cell's failure is its result
                    rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
                out.append(rec)
                _free_cuda()
    return out


def _linear_ce(x, y, w):
    """The η = 0 anchor: the plain linear + cross-entropy step (loss and dW)."""
    fused = getattr(F, "linear_cross_entropy", None)

    def step():
        wg = w.detach().requires_grad_(True)
        if fused is not None:
            loss = fused(x, wg.T, y)
        else:
            loss = F.cross_entropy(F.linear(x, wg.T).float(), y)
        loss.backward()
        return wg.grad
    return step, ("F.linear_cross_entropy" if fused is not None
                  else "F.linear + F.cross_entropy (no F.linear_cross_entropy in this torch)")


def stage_times(ctx, fn, top=12):
    """{kernel or op: ms} of one call under torch.profiler (device time on CUDA, CPU time
    otherwise), the `top` largest."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.dev.type == "cuda" else [])
    fn()
    ctx.sync()
    with profile(activities=acts) as prof:
        fn()
        ctx.sync()
    rows = []
    for e in prof.key_averages():
        if ctx.dev.type == "cuda":
            t = getattr(e, "self_device_time_total", None)
            if t is None:
                t = getattr(e, "self_cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        if t > 0:
            rows.append((e.key, t / 1e3))
    rows.sort(key=lambda r: -r[1])
    return {k: round(v, 4) for k, v in rows[:top]}


def bench(ctx):
    import run as bench_run

    from sea_kernels.op import triton_backend as tb
    from sea_kernels.op.call import Hyper
    out = []
    for b, d, c in ctx.shapes("bench"):
        for dt in DTYPES:
            if ctx.left() < 5:
                out.append(dict(shape=[b, d, c], dtype=dt, skipped="budget"))
                continue
            x, y, w = bench_run.make_inputs(b, d, c, ctx.dev, getattr(torch, dt))
            fns = bench_run.candidates(x, y, w)
            notes = {}
            if "triton" not in fns and tb.interpreter_on():
                scale = torch.full((b,), 1.0 / b, device=x.device)
                fns["triton"] = lambda x=x, y=y, w=w, s=scale: tb.sea_forward(
                    x, y, w, s, Hyper(*bench_run.HYPER.values()))
            if ctx.dry:
                fns.pop("compiled-ref", None)
                out.append(dict(shape=[b, d, c], dtype=dt, candidate="compiled-ref",
                                skipped="dry run: inductor's CPU build takes minutes"))
            fns["linear-ce"], notes["linear-ce"] = _linear_ce(x, y, w)
            # what matters most first: the budget cuts the tail (compiled-ref compiles per shape)
            first = [k for k in BENCH_ORDER if k in fns]
            fns = {k: fns[k] for k in first + [k for k in fns if k not in first]}
            for name, fn in fns.items():
                rec = dict(shape=[b, d, c], dtype=dt, candidate=name)
                if name in notes:
                    rec["note"] = notes[name]
                if ctx.left() < 2:
                    rec["skipped"] = "budget"
                    out.append(rec)
                    continue
                try:
                    fn()
                    ctx.sync()
                    rec["ms"] = _time_ms(ctx, fn)
                    rec["peak_bytes"] = _peak_bytes(ctx, fn)
                except Exception as exc:  # noqa: BLE001
                    rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
                out.append(rec)
            floor = next((r.get("ms") for r in out[-len(fns):] if r["candidate"] == "gemm-floor"),
                         None)
            for r in out[-len(fns):]:
                if floor and r.get("ms"):
                    r["x_gemm_floor"] = r["ms"] / floor
            if "triton" in fns and ctx.left() > 5:
                try:
                    out.append(dict(shape=[b, d, c], dtype=dt, candidate="triton (stages, ms)",
                                    stages=stage_times(ctx, fns["triton"])))
                except Exception as exc:  # noqa: BLE001
                    out.append(dict(shape=[b, d, c], dtype=dt, candidate="triton (stages)",
                                    error=f"{type(exc).__name__}: {exc}"[:500]))
            x = y = w = fns = None
            _free_cuda()
    return out


def rows(ctx):
    import sea_kernels
    hyper = _hyper()
    d, c = ctx.shapes("row_shape")
    g = ctx.shapes("group")
    total = (torch.cuda.get_device_properties(0).total_memory if ctx.dev.type == "cuda"
             else None)
    out = []
    for b in ctx.shapes("rows"):
        for backend in ("triton", "torch"):
            rec = dict(b=b, G=g, d=d, C=c, backend=backend)
            # the triton host forms the b×b Gram and V = [K | L]: ≈ 2·b·(b + C) floats at once
            need = 4 * (2 * b * (b + c) + 4 * b * d) if backend == "triton" else 4 * 8 * b * (d + g)
            if total is not None and need > 0.9 * total:
                rec["skipped"] = (f"needs ≈ {need / 2**30:.0f} GiB (the host's b×b Gram)"
                                  if backend == "triton" else f"needs ≈ {need / 2**30:.0f} GiB")
                out.append(rec)
                continue
            if ctx.left() < 3:
                rec["skipped"] = "budget"
                out.append(rec)
                continue
            try:
                x = _unit_rows(b, d, ctx.dev, seed=b)
                y = _labels(b, c, ctx.dev, seed=b)
                w = torch.randn(d, c, device=ctx.dev) * (3.0 / d ** 0.5)

                def step(x=x, y=y, w=w, backend=backend):
                    wg = w.detach().requires_grad_(True)
                    sea_kernels.fused_sea(x, y, wg, group_size=g, backend=backend,
                                          validate=False, **hyper).backward()
                    return wg.grad

                step()
                ctx.sync()
                ms = _time_ms(ctx, step)
                peak = _peak_bytes(ctx, step)
                rec.update(ms=ms, us_per_row=1e3 * ms / b, peak_bytes=peak,
                           bytes_per_row=peak / b if isinstance(peak, float) else None)
            except Exception as exc:  # noqa: BLE001
                rec["error" if not _oom(exc) else "skipped"] = (
                    f"{type(exc).__name__}: {exc}"[:300])
            out.append(rec)
            x = y = w = None
            _free_cuda()
    return out


def epochs(ctx):
    import sea_kernels
    p = ctx.shapes("epochs")
    x = _unit_rows(p["n"], p["d"], ctx.dev, seed=3)
    y_np = _learnable_labels(x, p["c"], seed=3).cpu().numpy()

    from sea_kernels.train.divergence import TrainingDiverged
    kw = {"lr": p["lr"]} if "lr" in p else {}
    diverged = []

    def fit(n_epochs):
        clf = sea_kernels.SeAClassifier(epochs=n_epochs, batch_size=p["batch"],
                                        device=str(ctx.dev), backend="triton", random_state=0,
                                        **kw)
        ctx.sync()
        t0 = time.perf_counter()
        try:
            clf.fit(x, y_np)
        except TrainingDiverged as exc:     # the time is still the time; say so
            diverged.append(f"{n_epochs} epochs: {exc}"[:300])
        ctx.sync()
        return time.perf_counter() - t0, clf

    t_first, _ = fit(1)                    # the kernels' first compile, the first allocations
    t1, _ = fit(1)
    t2, _ = fit(2)
    per_epoch = t2 - t1 if t2 > t1 else t2 / 2      # a fit's set-up cancels in t2 − t1
    out = dict(n=p["n"], d=p["d"], C=p["c"], batch=p["batch"], backend="triton",
               seconds_first_fit_1_epoch=t_first, seconds_1_epoch=t1, seconds_2_epochs=t2,
               seconds_per_epoch=per_epoch, steps_per_epoch=math.ceil(p["n"] / p["batch"]),
               lr=kw.get("lr", "default"))
    want = p["epochs"]
    estimate = t1 + (want - 1) * per_epoch
    if estimate * 1.2 + 5 < ctx.left():
        t, clf = fit(want)
        out.update(epochs=want, seconds=t, measured=True,
                   final_train_loss=(clf.history_[-1].get("train_loss")
                                     if getattr(clf, "history_", None)
                                     and isinstance(clf.history_[-1], dict) else None),
                   backend_used=getattr(clf, "backend_", None))
    else:
        out.update(epochs=want, seconds=estimate, measured=False,
                   note=f"extrapolated: {want} epochs ≈ {estimate:.0f} s would not fit "
                        f"the {ctx.left():.0f} s left")
    if diverged:
        out["diverged"] = diverged
    return out


def sweep(ctx):
    from sea_kernels import params
    from sea_kernels.sweeps.engine import train_many
    from sea_kernels.sweeps.grid import expand_grid
    p = ctx.shapes("sweep")
    grid = params.PAPER_GRID
    if ctx.dry:
        grid = {k: list(v)[:2] for k, v in grid.items()}
    configs = expand_grid(grid)
    n = p["batch"] * (p["steps"] + 2)
    x = _unit_rows(n, p["d"], ctx.dev, seed=5)
    y = _learnable_labels(x, p["c"], seed=5)

    def go(rows_):
        ctx.sync()
        t0 = time.perf_counter()
        res = train_many(x[:rows_], y[:rows_], configs, epochs=1, batch_size=p["batch"],
                         device=str(ctx.dev), eval_every=None, num_classes=p["c"])
        ctx.sync()
        return time.perf_counter() - t0, res

    t_warm, _ = go(p["batch"])              # one step: allocation, first launches
    t_two, _ = go(2 * p["batch"])
    t_all, res = go(n)
    t = max(t_all - t_two, 1e-9)            # `steps` more steps; the set-up and copies cancel
    rate = p["steps"] / t
    full_steps = p["epochs_full"] * math.ceil(p["n_full"] / p["batch"])
    return dict(configs=len(configs), d=p["d"], C=p["c"], batch=p["batch"], steps=p["steps"],
                seconds=t, warmup_seconds=t_warm, seconds_2_steps=t_two,
                seconds_all_steps=t_all, steps_per_s=rate,
                config_steps_per_s=rate * len(configs),
                engine_steps_last_run=getattr(res, "steps", None),
                extrapolated_100_epochs_s=full_steps / rate,
                extrapolated_for=f"{p['epochs_full']} epochs at n = {p['n_full']} "
                                 f"({full_steps} steps)")


SANITIZER_CALL = r"""
import torch, sea_kernels
g = torch.Generator(device="cuda").manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(96, 64, device="cuda", generator=g), dim=1)
y = torch.randint(0, 10, (96,), device="cuda", generator=g)
w = torch.randn(64, 10, device="cuda", generator=g).requires_grad_(True)
sea_kernels.fused_sea(x, y, w, backend="triton").backward()
w.grad = None
sea_kernels.fused_sea(x, y, w, group_size=32, backend="triton").backward()
torch.cuda.synchronize()
print("sanitizer call done")
"""


def sanitizer(ctx):
    if ctx.dry:
        return {"skipped": "dry run: compute-sanitizer needs a GPU"}
    exe = shutil.which("compute-sanitizer")
    for cand in ("/usr/local/cuda/bin/compute-sanitizer",
                 "/usr/local/cuda/compute-sanitizer/compute-sanitizer"):
        if exe is None and Path(cand).exists():
            exe = cand
    if exe is None:
        return {"skipped": "no compute-sanitizer binary on PATH or in /usr/local/cuda"}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    out = {"binary": exe}
    tools = ("memcheck", "racecheck")
    for i, tool in enumerate(tools):
        left = min(ctx.left() / (len(tools) - i), 150)
        if left < 15:
            out[tool] = {"skipped": "budget"}
            continue
        t0 = time.monotonic()
        try:
            p = subprocess.run([exe, "--tool", tool, sys.executable, "-c", SANITIZER_CALL],
                               cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=left)
            text = p.stdout + p.stderr
            summary = [ln for ln in text.splitlines() if "ERROR SUMMARY" in ln
                       or "RACECHECK SUMMARY" in ln]
            out[tool] = dict(rc=p.returncode, summary=summary[-1] if summary else None,
                             call_done="sanitizer call done" in text,
                             tail=text[-1500:] if p.returncode else None)
        except subprocess.TimeoutExpired:
            out[tool] = {"error": f"timed out after {left:.0f} s"}
        out[tool]["seconds"] = round(time.monotonic() - t0, 1)
    return out


FUNCS = dict(versions=versions, tests=tests, accuracy=accuracy, bench=bench, rows=rows,
             epochs=epochs, sweep=sweep, sanitizer=sanitizer)


# ----------------------------------------------------------------------------------- output

def _cell(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)[:200]
    return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")[:200]


def markdown(report) -> str:
    kind = "dry run (CPU, TRITON_INTERPRET=1)" if report["dry_run"] else "GPU run"
    lines = ["# gpu_check", "", f"{kind}; {report['seconds']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget.", ""]
    for name, sec in report["sections"].items():
        lines += [f"## {name}", "", f"{sec['status']} in {sec.get('seconds', 0):.1f} s"
                  + (f": {sec['reason']}" if sec.get("reason") else ""), ""]
        if sec.get("error"):
            lines += ["```", sec["error"], sec.get("traceback", "")[-2000:], "```", ""]
        res = sec.get("results")
        if isinstance(res, list) and res and all(isinstance(r, dict) for r in res):
            keys = []
            for r in res:
                keys += [k for k in r if k not in keys and k != "tail"]
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in res]
            tails = [r for r in res if r.get("tail")]
            for r in tails:
                lines += ["", "```", r["tail"][-1500:], "```"]
        elif isinstance(res, dict):
            lines += [f"- {k}: {_cell(v)}" for k, v in res.items()]
        elif res is not None:
            lines.append(_cell(res))
        lines.append("")
    return "\n".join(lines)


def main(args) -> int:
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --dry-run on a CPU", file=sys.stderr)
        return 2
    budget = args.budget or (240.0 if dry else 450.0)
    ctx = Ctx(dry, budget)
    only = set(args.only.split(",")) if args.only else None
    report = dict(dry_run=dry, budget_s=budget, command=" ".join(sys.argv), sections={})
    for name, minimum, share in SECTIONS:
        if only is not None and name not in only:
            continue
        sec = report["sections"][name] = {}
        left = ctx.deadline - time.monotonic()
        need = 0 if dry else minimum
        if left < need:
            sec.update(status="skipped", reason=f"budget: {left:.0f} s left, needs ≥ {need} s",
                       seconds=0.0)
        else:
            ctx.section_deadline = time.monotonic() + max(share * budget, need)
            print(f"[gpu_check] {name} ({left:.0f} s left)", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                sec["results"] = FUNCS[name](ctx)
                sec["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded; the next section runs
                sec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:2000],
                           traceback=traceback.format_exc()[-4000:])
            sec["seconds"] = round(time.monotonic() - t0, 2)
            with contextlib.suppress(Exception):
                _free_cuda()
        report["seconds"] = time.monotonic() - ctx.start
        _write(args.out, report)
    print(f"[gpu_check] wrote {args.out}/gpu_check.json and gpu_check.md in "
          f"{time.monotonic() - ctx.start:.0f} s", file=sys.stderr)
    return 0


def _write(out_dir: Path, report):
    from sea_kernels.data import writers
    out_dir.mkdir(parents=True, exist_ok=True)
    writers.write_json(out_dir / "gpu_check.json", report, indent=1)
    writers.write_text(out_dir / "gpu_check.md", markdown(report))


if __name__ == "__main__":
    sys.exit(main(ARGS))
