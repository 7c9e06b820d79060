"""Groups benchmark (issue #9): µs per row of one SeA step vs the batch size, groups vs whole batch.

    python benches/bench_groups.py                          # the issue's table
    python benches/bench_groups.py --repeats 3 --csv groups.csv
    python benches/bench_groups.py --sizes 256,1024 --shapes 1280,10
    python benches/bench_groups.py --memory                 # peak memory at b = 262,144, G = 256

A step is what training needs: the loss of the augmented batch and dW — `fused_sea(...,
group_size=G, backend=...)` and `loss.backward()` (where `fused_sea` has no group_size yet, the
backend's `sea_forward(..., group_size=G)` directly). Providers: `cpp` (the fused C++ kernel) and
`torch` (the Gram-space eager backend). For each (d, C) of --shapes and b of --sizes, G = 256
(--groups) and G = None (the whole batch, the paper): with groups every row costs O(G·d) (the
G×G blocks K_g, Q_g), so µs/row stays flat in b; the whole batch costs O(b·d) per row and its
b×b buffers grow as b². A whole-batch call whose estimated time exceeds --max-call-s (from its
GEMM flops and this machine's measured GEMM rate) is not run and says so in the table.

Times are wall-clock medians of --repeats interleaved rounds (`sea_kernels.timing.interleaved`:
cpp and torch alternate, so a drift of the machine hits both), after one untimed call each that
also checks that their dW agree (column `dW rel diff`). `--csv out.csv` writes the rows in the
benchmark CSV format of benches/csv_format.py (time per call in ms, p20/p50/p80; provider
`cpp-G256`, `torch-whole`, …; group_size in the config; skipped calls as NaN with the reason).

`--memory`: the peak memory of one step (fused_sea forward + backward, G = --groups' first,
default 256) per provider at each b of --sizes (default 32,768 and 262,144) and (d, C) of
--shapes (default 1280,10), float32, each in a fresh subprocess: the peak resident set
(/proc/self/status VmHWM, reset through /proc/self/clear_refs after the inputs are built) minus
the resident set before the call — the step's own memory, the b×d input x excluded — against
`memory_formula` per provider: cpp b·(2G + 2C) + d·C floats (its b×(G+C) buffer [K | L], Q's
b×G, D; no b×d stage), torch b·(3d + 2C + 2G) + d·C (three b×d stages — QX, the direct x̃ of
every row and G' = A'Wᵀ of its sync-free repairs — the logits and D, S and Q blocks).
"""
from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import csv_format  # noqa: E402
from run import HYPER, make_inputs  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import timing  # noqa: E402
from sea_kernels.op import cpp_backend, torch_backend  # noqa: E402
from sea_kernels.op.call import Hyper  # noqa: E402

SIZES = (256, 1024, 4096, 16384)
GROUPS = (256, None)
SHAPES = ((1280, 10), (8192, 100))
PROVIDERS = ("cpp", "torch")
#: fused_sea takes group_size (the public API of issue #9); else the backends are called directly.
FUSED_HAS_GROUPS = "group_size" in inspect.signature(sea_kernels.fused_sea).parameters


def step_flops(b: int, d: int, c: int, group: int | None) -> float:
    """GEMM flops of one step: L = XW, dW = XᵀR (2bdC each), ‖g‖ via WᵀW (C²d), and per row
    over its group of n: K (n·d), S = A'Lᵀ (n·C), [QK | QL] (n·(n + C)), QᵀV (n·C)."""
    n = b if not group or group >= b else group
    return 2.0 * (2 * b * d * c + c * c * d + b * n * (d + 3 * c + n))


def gemm_rate() -> float:
    """Flops per second of a float32 1024×1024 GEMM on this machine now (best of 3)."""
    a = torch.randn(1024, 1024)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024 ** 3 / best


def step(provider: str, x, y, w, group: int | None):
    """A zero-argument callable running one step (loss + dW) of `provider`; returns dW."""
    if FUSED_HAS_GROUPS:
        def fused():
            wg = w.detach().requires_grad_(True)
            sea_kernels.fused_sea(x, y, wg, group_size=group, backend=provider, validate=False,
                                  **HYPER).backward()
            return wg.grad
        return fused
    forward = cpp_backend.sea_forward if provider == "cpp" else torch_backend.sea_forward
    scale = torch.full((x.shape[0],), 1.0 / x.shape[0])
    hyper = Hyper(*HYPER.values(), False, group or None)
    return lambda: forward(x, y, w, scale, hyper, True)[1]


def measure(b, d, c, group, repeats, rate, max_call_s):
    """{provider: (p20, p50, p80) s per call, or None}, the dW rel diff cpp vs torch, and a note."""
    est = step_flops(b, d, c, group) / rate
    if group is None and est > max_call_s:
        return None, None, f"not run: ≈{est:.0f} s a call (> {max_call_s:g} s)"
    x, y, w = make_inputs(b, d, c, "cpu")
    fns = {p: step(p, x, y, w, group) for p in PROVIDERS}
    grads = {p: fn().double() for p, fn in fns.items()}        # the warm-up call of each
    diff = ((grads["cpp"] - grads["torch"]).norm() / grads["torch"].norm()).item()
    samples = timing.interleaved(fns, repeats)
    return {p: timing.band(s) for p, s in samples.items()}, diff, ""


#: The b×d stages a provider's grouped step holds at once (module docstring).
BXD_STAGES = {"cpp": 0, "torch": 3}


def memory_formula(b: int, d: int, c: int, group: int, provider: str = "torch") -> int:
    """Bytes (float32) the docs state for one grouped step, x excluded: BXD_STAGES[provider]·b·d,
    b·2C for the logits and D, b·2G for a row's S and Q blocks (cpp: [K | L] and Q), d·C for
    dW."""
    return 4 * (b * (BXD_STAGES[provider] * d + 2 * c + 2 * group) + d * c)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(provider: str, b: int, d: int, c: int, group: int) -> dict:
    """In this (fresh) process: the inputs, one warm-up step at a small b (thread pool, kernel
    set-up), then the peak resident bytes of one step above the resident set before it."""
    import gc
    x, y, w = make_inputs(64, d, c, "cpu")
    step(provider, x, y, w, min(group, 16))()
    x, y, w = make_inputs(b, d, c, "cpu")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")       # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    step(provider, x, y, w, group)()
    peak = _status_kib("VmHWM")
    return {"provider": provider, "b": b, "d": d, "C": c, "G": group,
            "input_bytes": x.numel() * x.element_size(),
            "peak_bytes": 1024 * (peak - before),
            "formula_bytes": memory_formula(b, d, c, group, provider)}


def measure_memory(provider: str, b: int, d: int, c: int, group: int, threads=None) -> dict:
    """`memory_child` in a fresh Python process (its own allocator and peak), as a dict."""
    import json
    import subprocess
    cmd = [sys.executable, __file__, "--memory-child", f"{provider},{b},{d},{c},{group}"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_memory(shapes, sizes, group, threads=None):
    print(f"{'d':>5} {'C':>4} {'b':>7} {'G':>4}  {'provider':8} {'peak MB':>9} {'formula MB':>10} "
          f"{'ratio':>6} {'x MB':>7}")
    rows = []
    for d, c in shapes:
        for b in sizes:
            for p in PROVIDERS:
                r = measure_memory(p, b, d, c, group, threads)
                rows.append(r)
                print(f"{d:5d} {c:4d} {b:7d} {group:4d}  {p:8} {r['peak_bytes'] / 1e6:9.0f} "
                      f"{r['formula_bytes'] / 1e6:10.0f} "
                      f"{r['peak_bytes'] / r['formula_bytes']:6.2f} {r['input_bytes'] / 1e6:7.0f}",
                      flush=True)
    return rows


def provider_name(provider: str, group: int | None) -> str:
    return f"{provider}-{'whole' if group is None else f'G{group}'}"


def run(shapes, sizes, groups, repeats, max_call_s, csv_rows=None, env=None):
    x, y, w = make_inputs(64, 32, 4, "cpu")
    for p in PROVIDERS:                        # the one-time costs (thread pool, BLAS set-up)
        for group in groups:
            step(p, x, y, w, group and min(group, 16))()
    rate = gemm_rate()
    print(f"GEMM rate now: {rate / 1e9:.1f} GFLOP/s (float32 1024³); {repeats} timed rounds")
    rows = []
    for d, c in shapes:
        for b in sizes:
            for group in groups:
                bands, diff, note = measure(b, d, c, group, repeats, rate, max_call_s)
                for p in PROVIDERS:
                    band = None if bands is None else bands[p]
                    rows.append(dict(d=d, C=c, b=b, G=group, provider=p, band=band, diff=diff,
                                     note=note))
                    if csv_rows is not None:
                        csv_rows.append(csv_format.make_row(
                            env, device="cpu", gpu_name="", provider=provider_name(p, group),
                            mode="full", metric="time", shape=(b, d, c),
                            band=None if band is None else tuple(1e3 * v for v in band),
                            config={"dtype": "float32", **HYPER, "group_size": group},
                            n_samples=repeats if band else 0,
                            measurement=note or (f"wall clock (time.perf_counter) of {repeats} "
                                                 "interleaved rounds after 1 warm-up call each")))
                print_rows(rows[-len(PROVIDERS):], header=not rows[:-len(PROVIDERS)])
    return rows


def print_rows(rows, header=False, file=sys.stdout):
    head = (f"{'d':>5} {'C':>4} {'b':>6} {'G':>6}  {'provider':8} {'µs/row':>9} {'ms/call':>10} "
            f"{'p20–p80 ms':>17} {'dW rel diff':>11}  note")
    if header:
        print(head, file=file)
        print("-" * len(head), file=file)
    for r in rows:
        g = "whole" if r["G"] is None else str(r["G"])
        diff = "" if r["diff"] is None else f"{r['diff']:.1e}"
        if r["band"] is None:
            print(f"{r['d']:5d} {r['C']:4d} {r['b']:6d} {g:>6}  {r['provider']:8} {'—':>9} "
                  f"{'—':>10} {'':>17} {diff:>11}  {r['note']}", file=file)
            continue
        p20, p50, p80 = (1e3 * v for v in r["band"])
        print(f"{r['d']:5d} {r['C']:4d} {r['b']:6d} {g:>6}  {r['provider']:8} "
              f"{1e3 * p50 / r['b']:9.2f} {p50:10.1f} {f'{p20:.1f}–{p80:.1f}':>17} {diff:>11}",
              file=file)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=_ints, default=list(SIZES), help="batch sizes b (comma list)")
    p.add_argument("--shapes", default=";".join(f"{d},{c}" for d, c in SHAPES),
                   help="d,C;d,C;... (default: %(default)s)")
    p.add_argument("--groups", default="256,none",
                   help="group sizes, 'none' for the whole batch (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-call-s", type=float, default=30.0,
                   help="do not run whole-batch calls estimated to take longer (default 30 s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--csv", type=Path, default=None, help="also write the benchmark CSV here")
    p.add_argument("--memory", action="store_true",
                   help="peak memory per step instead of time (see the module docstring)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        import json
        provider, *nums = args.memory_child.split(",")
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(memory_child(provider, *map(int, nums))))
        return
    if args.repeats < 1:
        p.error(f"--repeats must be ≥ 1, got {args.repeats}")
    if not cpp_backend.ensure():
        p.error(f"the C++ kernel is unavailable: {cpp_backend.CPP_ERROR}")
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [tuple(_ints(s)) for s in args.shapes.split(";") if s]
    groups = [None if g.strip().lower() == "none" else int(g) for g in args.groups.split(",")]
    if args.memory:
        sizes = args.sizes if "--sizes" in (argv or sys.argv) else [32768, 262144]
        shapes = shapes if "--shapes" in (argv or sys.argv) else [(1280, 10)]
        group = groups[0] or 256
        print(f"torch {torch.__version__}; peak memory of one step (fused_sea + backward), G = "
              f"{group}, float32, each in a fresh process")
        run_memory(shapes, sizes, group, args.threads)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; step = "
          + ("fused_sea(group_size=G) + backward" if FUSED_HAS_GROUPS else
             "backend sea_forward(group_size=G) (fused_sea has no group_size yet)"))
    table = None if args.csv is None else []
    env = None if args.csv is None else csv_format.environment(torch, sea_kernels.__version__)
    run(shapes, args.sizes, groups, args.repeats, args.max_call_s, table, env)
    if args.csv:
        csv_format.write(args.csv, table)
        print(f"wrote {args.csv} ({len(table)} rows)")


if __name__ == "__main__":
    main()
