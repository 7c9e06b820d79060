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
candidate / gemm-floor. A shape's rows are printed as soon as it is timed, with a progress line
per shape on stderr; a legend under the table's header says what each column is (LEGEND).
The CPU table of the three standard shapes takes minutes on 2 cores (the largest shape's
reference step is most of a second, and each candidate runs `--repeats` times); `--shapes`
and `--repeats` make it shorter.

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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import csv_format  # noqa: E402
from arguments import at_least  # noqa: E402
from arguments import shapes as shapes_arg

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


def run(shapes, device, repeats, warmup, csv=None, memory_repeats=3, env=None, *,
        on_shape=None, progress=None):
    """The table's rows (full mode, medians) for `shapes` on `device`; with a list `csv`, also
    append the CSV rows of every mode and metric to it (`env`: csv_format.environment).
    on_shape(rows): called with each shape's rows as soon as they are measured; progress(text):
    called with what is being done (a line for a person)."""
    rows = []
    for b, d, c in shapes:
        say = progress or (lambda text: None)
        x, y, w = make_inputs(b, d, c, device)
        fns = candidates(x, y, w)
        say(f"{device} {(b, d, c)}: checking that the {len(fns) - 1} candidates' dW agree "
            "(this compiles torch.compile(reference) for the shape)")
        errors = check_agreement(fns)
        say(f"{device} {(b, d, c)}: timing {len(fns)} candidates, "
            + (f"{repeats} interleaved rounds after {warmup} warm-up calls" if device != "cuda"
               else "do_bench") + (" (then the CSV's forward mode and memory)" if csv is not None
                                  else ""))
        bands = time_bands(fns, device, repeats, warmup)
        ms = {name: band[1] for name, band in bands.items()}
        if csv is not None:
            csv += csv_rows((b, d, c), device, fns, bands, x, y, w, repeats, warmup,
                            memory_repeats, env)
        shape_rows = [dict(device=device, b=b, d=d, C=c, candidate=name, ms=t,
                           speedup_vs_reference=ms["reference"] / t,
                           x_gemm_floor=t / ms["gemm-floor"], rel_err_dW=errors.get(name))
                      for name, t in ms.items()]
        rows += shape_rows
        if on_shape is not None:
            on_shape(shape_rows)
    return rows


HEADER = (f"{'device':6} {'b':>5} {'d':>5} {'C':>5}  {'candidate':13} {'median ms':>10} "
          f"{'vs reference':>13} {'× GEMM floor':>13} {'dW rel err':>11}")

#: What each column of the table is; printed under its header.
LEGEND = """\
  (b, d, C)     batch, feature dimension, classes; float32, the paper's α, η, λ, δ
  candidate     see `python benches/run.py --help`; gemm-floor is the GEMM floor below
  median ms     median time of one training step: the loss of the augmented batch and dW
  vs reference  reference ms / candidate ms: the speed-up over the paper-literal PyTorch
                (above 1×: faster than it)
  × GEMM floor  candidate ms / GEMM floor ms. The GEMM floor is the time of the step's
                unavoidable GEMMs alone (X@W, X@Xᵀ and Xᵀ@R with torch.mm, nothing else):
                every formulation of the step computes them, so 1.00× is a step that costs
                what its GEMMs cost as three separate torch.mm calls (a fused kernel that
                computes them together can be below 1×)
  dW rel err    ‖dW − dW_reference‖ / ‖dW_reference‖ (float32 against the reference's
                float32; empty for gemm-floor, which computes no dW)"""


def print_header(file=sys.stdout):
    print(HEADER, file=file)
    print(LEGEND, file=file)
    print("-" * len(HEADER), file=file, flush=True)


def print_rows(rows, file=sys.stdout):
    for r in rows:
        err = "" if r["rel_err_dW"] is None else f"{r['rel_err_dW']:.1e}"
        print(f"{r['device']:6} {r['b']:5d} {r['d']:5d} {r['C']:5d}  {r['candidate']:13} "
              f"{r['ms']:10.3f} {r['speedup_vs_reference']:12.2f}× {r['x_gemm_floor']:12.2f}× "
              f"{err:>11}", file=file, flush=True)


_positive = at_least(1)


def _fmt_shapes(shapes):
    return ";".join(",".join(map(str, s)) for s in shapes)


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n`--csv")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shapes_arg, default=None, metavar="b,d,C;...",
                   help=f"the shapes to time (default: CPU {_fmt_shapes(CPU_SHAPES)}; CUDA "
                        f"also {_fmt_shapes(GPU_SHAPES[len(CPU_SHAPES):])})")
    p.add_argument("--repeats", type=_positive, default=30,
                   help="CPU: timed interleaved rounds, each calling every candidate once "
                        "(default 30; CUDA: do_bench, 100 ms)")
    p.add_argument("--warmup", type=at_least(0), default=3,
                   help="CPU: untimed calls of each candidate first (default 3; CUDA: 25 ms)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch CPU threads (default: torch's, here "
                        f"{torch.get_num_threads()}); on a busy machine 1 thread is steadier")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the rows as JSON here (default: none)")
    p.add_argument("--no-gpu", action="store_true",
                   help="skip the CUDA table even if a GPU is present (default: off)")
    p.add_argument("--csv", type=Path, default=None,
                   help="also write the benchmark CSV here (forward and full mode, time and "
                        "memory, p20/p50/p80; benches/csv_format.py) (default: none)")
    p.add_argument("--memory-repeats", type=_positive, default=3,
                   help="with --csv: peak-memory measurements per candidate (default 3)")
    return p


def main(argv=None):
    return run_args(parser().parse_args(argv))


def run_args(args):
    """main() after parsing: the table (and --json, --csv) for parsed `args`."""
    threads = timing.use_threads(args.threads or None)
    print(f"torch {torch.__version__}, {threads} CPU threads; "
          f"backends: {', '.join(k for k, (ok, _) in sea_kernels.backend_status().items() if ok)}")
    plan = [("cpu", args.shapes or CPU_SHAPES, args.repeats, args.warmup)]
    if torch.cuda.is_available() and not args.no_gpu:
        print(f"GPU: {torch.cuda.get_device_name()}")
        plan.append(("cuda", args.shapes or GPU_SHAPES, 100, 25))
    total = sum(len(shapes) for _, shapes, _, _ in plan)
    table = None if args.csv is None else []
    env = None if args.csv is None else csv_format.environment(torch, sea_kernels.__version__)
    done = [0]
    started = [time.perf_counter()]

    def progress(text):
        print(f"[{done[0] + 1}/{total}] {text} …", file=sys.stderr, flush=True)

    def on_shape(shape_rows):
        done[0] += 1
        print_rows(shape_rows)
        r = shape_rows[0]
        print(f"[{done[0]}/{total}] {r['device']} {(r['b'], r['d'], r['C'])}: done in "
              f"{time.perf_counter() - started[0]:.1f} s", file=sys.stderr, flush=True)
        started[0] = time.perf_counter()

    print_header()
    rows = []
    for device, shapes, repeats, warmup in plan:
        rows += run(shapes, device, repeats, warmup, table, args.memory_repeats, env,
                    on_shape=on_shape, progress=progress)
    if args.json:
        writers.write_json(args.json, rows, indent=1)
    if args.csv:
        csv_format.write(args.csv, table)
        print(f"wrote {args.csv} ({len(table)} rows)")


if __name__ == "__main__":
    main()
