"""One command for every benchmark: `python benches/run.py` prints a table of SeA step times.

A step is what training needs: the loss of the augmented batch and dW. Candidates, timed
interleaved in one run (round-robin, median of repeats) so that their ratios are honest:

  reference     paper-literal PyTorch (sea_kernels.reference, autograd for dW)
  compiled-ref  torch.compile(reference)
  torch-gram    the Gram-space eager backend (sea_kernels.op.torch_backend)
  cpp           the fused C++ kernel (torch.ops.sea_kernels.sea_fwd_cpu), CPU only
  fused_sea     the public op + autograd with backend="auto" (what a training loop calls)
  triton        the fused Triton kernel, CUDA only
  gemm-floor    the three GEMMs no formulation avoids (X@W, X@Xᵀ, Xᵀ@R) with torch.mm

On CPU times are wall-clock medians with time.perf_counter; on CUDA, triton.testing.do_bench
medians (both through `sea_kernels.timing`). Ratios are reference / candidate (speed-up) and
candidate / gemm-floor.

`--csv out.csv` also writes the results in the benchmark CSV format of the field (Liger-Kernel's
columns, see benches/csv_format.py; plot them with `python benches/plot.py out.csv`): one row per
(kernel, provider, mode, metric, shape) with the 20th/50th/80th percentiles, and the machine
(CPU model or GPU name, threads) and the torch / package versions, so that CSVs of several
machines merge. Modes: "full" is the step of the table (loss + dW); "forward" the loss alone
(no dW: compute_grad=False, or torch.no_grad for the autograd candidates; its gemm-floor is
X@W and X@Xᵀ). Metrics: "time" (ms, as above) and "memory" (MiB): the peak memory one step
allocates above what is live when it starts — on CUDA torch.cuda.max_memory_allocated, on CPU the
PyTorch CPU allocator's allocations recorded by torch.profiler (tensors only: BLAS scratch and
C++ std::vector buffers are not counted); `sea_kernels.timing.MEMORY_METHOD` has the words, and
the CSV's `measurement` column repeats them per row. A value that cannot be measured is NaN,
with the reason in `measurement`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import csv_format  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference, timing  # noqa: E402
from sea_kernels.data import writers  # noqa: E402
from sea_kernels.op import cpp_backend as _ext  # noqa: E402
from sea_kernels.op import (
    torch_backend,  # noqa: E402
    triton_backend,  # noqa: E402
)
from sea_kernels.op.call import Hyper  # noqa: E402
from sea_kernels.params import DEFAULTS  # noqa: E402

CPU_SHAPES = [(256, 2048, 10), (256, 8192, 100), (1024, 8192, 1000)]
GPU_SHAPES = CPU_SHAPES + [(4096, 8192, 100)]
# The paper's defaults, in the positional order of op.call.Hyper (and of sea_fwd_cpu).
HYPER = {k: DEFAULTS[k] for k in ("alpha", "eta", "lam", "delta")}


def make_inputs(b, d, c, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.randn(d, c, generator=g) * (3.0 / d ** 0.5)
    return x.to(device, dtype), y.to(device), w.to(device, dtype)


def candidates(x, y, w):
    """{name: zero-argument callable running one step (loss + dW)}."""
    b = x.shape[0]
    scale = torch.full((b,), 1.0 / b, device=x.device, dtype=torch.float32)

    def ref_step(fn):
        def step():
            wg = w.detach().requires_grad_(True)
            fn(x, y, wg).backward()
            return wg.grad
        return step

    def ref_loss(xx, yy, ww):
        return reference.sea_loss(xx, yy, ww, **HYPER)

    compiled_loss = torch.compile(ref_loss, dynamic=False)
    out = {"reference": ref_step(ref_loss), "compiled-ref": ref_step(compiled_loss),
           "torch-gram": lambda: torch_backend.sea_forward(x, y, w, scale, Hyper(*HYPER.values()))}
    if x.device.type == "cpu" and _ext.CPP_AVAILABLE:
        out["cpp"] = lambda: torch.ops.sea_kernels.sea_fwd_cpu(x, y, w, scale, *HYPER.values(),
                                                               False, True)
    if x.device.type == "cuda" and triton_backend.AVAILABLE:
        out["triton"] = lambda: triton_backend.sea_forward(x, y, w, scale, Hyper(*HYPER.values()))
    out["fused_sea"] = ref_step(lambda xx, yy, ww: sea_kernels.fused_sea(xx, yy, ww, validate=False,
                                                                         **HYPER))
    r = torch.randn(b, w.shape[1], device=x.device, dtype=x.dtype)
    out["gemm-floor"] = lambda: (x @ w, x @ x.T, x.T @ r)
    return out


def forward_candidates(x, y, w):
    """{name: zero-argument callable computing the loss alone} (no dW): the "forward" mode of
    the CSV. The backends get compute_grad=False, the autograd candidates run under no_grad;
    the GEMM floor is the two GEMMs the loss needs (X@W, X@Xᵀ)."""
    b = x.shape[0]
    scale = torch.full((b,), 1.0 / b, device=x.device, dtype=torch.float32)
    h = tuple(HYPER.values())

    def no_grad(fn):
        def loss():
            with torch.no_grad():
                return fn(x, y, w)
        return loss

    def ref_loss(xx, yy, ww):
        return reference.sea_loss(xx, yy, ww, **HYPER)

    compiled_loss = torch.compile(ref_loss, dynamic=False)
    out = {"reference": no_grad(ref_loss), "compiled-ref": no_grad(compiled_loss),
           "torch-gram": lambda: torch_backend.sea_forward(x, y, w, scale, Hyper(*h), False)}
    if x.device.type == "cpu" and _ext.CPP_AVAILABLE:
        out["cpp"] = lambda: torch.ops.sea_kernels.sea_fwd_cpu(x, y, w, scale, *h, False, False)
    if x.device.type == "cuda" and triton_backend.AVAILABLE:
        out["triton"] = lambda: triton_backend.sea_forward(x, y, w, scale, Hyper(*h), False)
    out["fused_sea"] = no_grad(lambda xx, yy, ww: sea_kernels.fused_sea(xx, yy, ww, validate=False,
                                                                        **HYPER))
    out["gemm-floor"] = lambda: (x @ w, x @ x.T)
    return out


def time_bands(fns, device, repeats, warmup):
    """{name: (p20, p50, p80) ms}. CPU: `repeats` interleaved rounds after `warmup` calls each
    (p50 is their median); CUDA: triton.testing.do_bench's quantiles per candidate, with `warmup`
    and `repeats` as its budgets in ms."""
    if device == "cuda":
        return {name: _p20_p50_p80(timing.do_bench_percentiles(fn, warmup_ms=warmup,
                                                               rep_ms=repeats))
                for name, fn in fns.items()}
    samples = timing.interleaved(fns, repeats, warmup=warmup)  # drift hits every candidate alike
    return {name: tuple(v * 1e3 for v in timing.band(t)) for name, t in samples.items()}


def _p20_p50_p80(values):
    by_q = dict(zip(timing.BAND, values))
    return by_q[20], by_q[50], by_q[80]


def time_ms(fns, device, repeats, warmup):
    """{name: median ms} (the p50 of `time_bands`)."""
    return {name: band[1] for name, band in time_bands(fns, device, repeats, warmup).items()}


def time_method(device, repeats, warmup):
    """The `measurement` of a time row, in words."""
    if device == "cuda":
        try:
            import triton.testing  # noqa: F401
            how = "triton.testing.do_bench quantiles"
        except ImportError:
            how = "CUDA events around single calls (do_bench's budgets; Triton absent)"
        return f"{how}, {warmup} ms warm-up, {repeats} ms of repetitions"
    return (f"wall clock (time.perf_counter) of {repeats} interleaved round-robin rounds after "
            f"{warmup} warm-up calls each")


def memory_bands(fns, device, repeats):
    """{name: ((p20, p50, p80) MiB or None, measurement)} of each candidate's peak memory."""
    out = {}
    for name, fn in fns.items():
        try:
            mib = [v / 2 ** 20 for v in timing.memory_samples(fn, repeats, device)]
        except timing.MemoryUnavailable as e:
            out[name] = (None, f"not measured: {e}")
            continue
        out[name] = (timing.band(mib), f"{timing.MEMORY_METHOD[device]}; {repeats} runs")
    return out


def csv_rows(shape, device, fns, full_bands, x, y, w, repeats, warmup, memory_repeats, env):
    """The CSV rows of one shape: forward and full, time and memory, every candidate."""
    gpu_name = torch.cuda.get_device_name(x.device) if device == "cuda" else ""
    fwd = forward_candidates(x, y, w)
    fwd_bands = time_bands(fwd, device, repeats, warmup)
    config = {"dtype": str(x.dtype).replace("torch.", ""), **HYPER}
    n_time = repeats if device != "cuda" else ""
    rows = []
    for mode, mode_fns, bands in (("forward", fwd, fwd_bands), ("full", fns, full_bands)):
        common = dict(device=device, gpu_name=gpu_name, mode=mode, shape=shape, config=config)
        for name in mode_fns:
            rows.append(csv_format.make_row(env, provider=name, metric="time", band=bands[name],
                                            n_samples=n_time,
                                            measurement=time_method(device, repeats, warmup),
                                            **common))
        for name, (band, how) in memory_bands(mode_fns, device, memory_repeats).items():
            rows.append(csv_format.make_row(env, provider=name, metric="memory", band=band,
                                            n_samples=memory_repeats if band else 0,
                                            measurement=how, **common))
    return rows


def check_agreement(fns):
    """Every candidate's dW must agree before its time means anything."""
    grads = {name: fn() for name, fn in fns.items() if name != "gemm-floor"}
    grads = {k: (v[1] if isinstance(v, tuple) else v) for k, v in grads.items()}
    base = grads["reference"].double()
    return {k: ((g.double() - base).norm() / base.norm()).item() for k, g in grads.items()}


def run(shapes, device, repeats, warmup, csv=None, memory_repeats=3, env=None):
    """The table's rows (full mode, medians) for `shapes` on `device`; with a list `csv`, also
    append the CSV rows of every mode and metric to it (`env`: csv_format.environment)."""
    rows = []
    for b, d, c in shapes:
        x, y, w = make_inputs(b, d, c, device)
        fns = candidates(x, y, w)
        errors = check_agreement(fns)
        bands = time_bands(fns, device, repeats, warmup)
        ms = {name: band[1] for name, band in bands.items()}
        if csv is not None:
            csv += csv_rows((b, d, c), device, fns, bands, x, y, w, repeats, warmup,
                            memory_repeats, env)
        for name, t in ms.items():
            rows.append(dict(device=device, b=b, d=d, C=c, candidate=name, ms=t,
                             speedup_vs_reference=ms["reference"] / t,
                             x_gemm_floor=t / ms["gemm-floor"],
                             rel_err_dW=errors.get(name)))
    return rows


def print_table(rows, file=sys.stdout):
    head = (f"{'device':6} {'b':>5} {'d':>5} {'C':>5}  {'candidate':13} {'median ms':>10} "
            f"{'vs reference':>13} {'× GEMM floor':>13} {'dW rel err':>11}")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in rows:
        err = "" if r["rel_err_dW"] is None else f"{r['rel_err_dW']:.1e}"
        print(f"{r['device']:6} {r['b']:5d} {r['d']:5d} {r['C']:5d}  {r['candidate']:13} "
              f"{r['ms']:10.3f} {r['speedup_vs_reference']:12.2f}× {r['x_gemm_floor']:12.2f}× "
              f"{err:>11}", file=file)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=None, help="b,d,C;b,d,C;... (default: the standard set)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--no-gpu", action="store_true",
                   help="skip the CUDA table even if a GPU is present")
    p.add_argument("--csv", type=Path, default=None,
                   help="also write the benchmark CSV here (forward and full mode, time and "
                        "memory, p20/p50/p80; benches/csv_format.py)")
    p.add_argument("--memory-repeats", type=int, default=3,
                   help="with --csv: peak-memory measurements per candidate (default 3)")
    args = p.parse_args(argv)
    if args.memory_repeats < 1:
        p.error(f"--memory-repeats must be ≥ 1, got {args.memory_repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    custom = ([tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
              if args.shapes else None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"backends: {', '.join(k for k, (ok, _) in sea_kernels.backend_status().items() if ok)}")
    table = None if args.csv is None else []
    env = None if args.csv is None else csv_format.environment(torch, sea_kernels.__version__)
    rows = run(custom or CPU_SHAPES, "cpu", args.repeats, args.warmup, table,
               args.memory_repeats, env)
    if torch.cuda.is_available() and not args.no_gpu:
        print(f"GPU: {torch.cuda.get_device_name()}")
        rows += run(custom or GPU_SHAPES, "cuda", 100, 25, table, args.memory_repeats, env)
    print_table(rows)
    if args.json:
        writers.write_json(args.json, rows, indent=1)
    if args.csv:
        csv_format.write(args.csv, table)
        print(f"wrote {args.csv} ({len(table)} rows)")


if __name__ == "__main__":
    main()
