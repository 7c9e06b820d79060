"""Audit the Triton kernels for an H100 without a GPU: `python benches/gpu_audit.py [--json FILE]`.

The host (`sea_kernels.op.triton_backend._forward`) runs on meta tensors (nothing is allocated,
the b×b Gram of b = 65,536 included) with its kernel launches recorded instead of run; every
recorded launch — the host's own grid, arguments, block sizes and warps — then goes through
`JITFunction.warmup` under a stand-in driver whose target is GPUTarget("cuda", 90, 32), so Triton
specialises the arguments (ints equal to 1, divisibility by 16) exactly as a launch on an H100
would and lowers the kernel to an sm_90 cubin with its own ptxas. The host has no data-dependent
step (the rare rows of docs/design.md §3 are repaired inside the kernels), so the launches are
exactly those of a run on a GPU.

Per (kernel, shape, dtype) one record (FIELDS):

  kernel          the launched kernel; a variant's constexpr flag in brackets
                  (_prep[NEG_ONLY]: direction="sea_neg"; _stats[GRAD]: with dW)
  shape           [b, d, C, G or null (the whole batch)]
  dtype           the inputs' dtype: bf16 stays bf16 in the GEMMs and the value dots
  compiled        lowered to a cubin without error
  num_warps       the host's num_warps
  regs, spills    registers per thread; spill stores + loads in bytes (ptxas -v of the build)
  smem            shared memory in bytes (Triton's allocation: the kernel's dynamic smem)
  dots            tt.dot ops in the TTIR (static count, loops not unrolled)
  mma             tensor-core instructions in the PTX (mma.sync + wgmma, static count)
  flops_executed  2·m·n·k of every dot (2 per multiply-add of the exact FMA loops that replace
                  the dots for C < 16) the launched grid executes on its regular path, the
                  padding of partial tiles included (from the grid, the loop bounds the kernel
                  computes and the block sizes); the masked repair of the rare rows, which runs
                  only in a row block that has one, is not counted
  flops_needed    the stage's necessary FLOPs over the groups g_k (Σ_k g_k = b):
                  _prep a'ᵀMa' (2bC², 0 for C > 2b: a torch GEMM then), _probs S = A'Lᵀ
                  (Σ 2g_k²C), _stats QK and QL (Σ 2g_k²(g_k + C)), or for d < G ĝ = QX
                  and QL (Σ 2g_k²(d + C))

`--edge` is the compile check of tests/test_triton_kernel.py (EDGE_SHAPES, also with 16-wide
blocks); tests/test_gpu_audit.py runs the audit at two shapes. Both run this script in a process
of its own: TRITON_INTERPRET is removed from the environment before triton is imported (the
interpreter defines no compilable kernels). Exit status 1 when `check` finds a kernel that did
not compile, spills, needs more shared memory than SMEM_LIMIT, has a dot but no tensor-core
instruction, or (not with --edge, whose tiny shapes are all padding) executes more than
MAX_RATIO × its needed FLOPs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

#: (b, d, C, G): G None is the whole batch.
SHAPES = [(256, 1280, 10, None), (256, 8192, 100, None), (1024, 8192, 1000, None),
          (4096, 1280, 10, 256), (65536, 1280, 10, 256)]
#: The compile check's edge cases: b = 1 and G = 1 (Triton turns ints equal to 1 into constants),
#: G = 1 over many rows, groups that start and end inside tiles, C over several tiles (the dot
#: paths, C ≥ 16), C > 2b (no M = WᵀW).
EDGE_SHAPES = [(1, 8, 3, None), (64, 8, 3, 1), (130, 8, 3, 1), (130, 20, 150, 50),
               (100, 20, 70, None), (16, 20, 40, None)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: The kernels the host launches (op/triton_kernels.py).
KERNELS = ("_prep", "_probs", "_stats")
FIELDS = ("kernel", "shape", "dtype", "compiled", "num_warps", "regs", "spills", "smem", "dots",
          "mma", "flops_executed", "flops_needed")
#: H100: 227 KiB of shared memory per block (opt-in maximum).
SMEM_LIMIT = 227 * 1024
#: The most executed/needed FLOPs a kernel may have.
MAX_RATIO = 1.5
TARGET = ("cuda", 90, 32)


@dataclass
class Launch:
    """One recorded kernel launch: the JITFunction, the grid, its bound arguments (name → value,
    constexprs included) and the launch options (num_warps)."""
    fn: object
    grid: tuple
    args: dict
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        flags = [k for k in ("NEG_ONLY", "GRAD") if self.args.get(k)]
        return self.fn.__name__ + "".join(f"[{f}]" for f in flags)


class _Recorder:
    """Stands in for a JITFunction: `rec[grid](*args, **kwargs)` records a Launch."""

    def __init__(self, fn, sink):
        self.fn, self.sink = fn, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
            bound = dict(zip(self.fn.arg_names, args))
            bound.update(kwargs)
            self.sink.append(Launch(self.fn, tuple(grid), bound, options))
        return launch


def capture(b, d, c, group, dtype, *, negative_only=False, compute_grad=True, cfg=None):
    """The launches of one `triton_backend._forward` call on meta tensors of (b, d, C) in `dtype`
    (group: G, or None for the whole batch)."""
    from types import SimpleNamespace

    from sea_kernels.op import triton_backend as tb
    from sea_kernels.op.call import Hyper
    kernels = tb.kernels
    sink: list[Launch] = []
    fake = SimpleNamespace(**{n: _Recorder(getattr(kernels, n), sink) for n in KERNELS})
    meta = torch.device("meta")
    saved = tb.kernels
    tb.kernels = fake
    try:
        x = torch.empty(b, d, dtype=dtype, device=meta)
        w = torch.empty(d, c, dtype=dtype, device=meta)
        y = torch.empty(b, dtype=torch.int64, device=meta)
        scale = torch.empty(b, dtype=torch.float32, device=meta)
        hyper = Hyper(negative_only=negative_only, group_size=group)
        g = b if group is None else min(group, b)
        tb._forward(x, y, w, scale, hyper, compute_grad, g, None, cfg or tb.CONFIG)
    finally:
        tb.kernels = saved
    return sink


def host_launches(b, d, c, group, dtype, cfg=None):
    """Every kernel variant the host launches at one shape: the training step (sea, with dW) and
    the forward of direction="sea_neg" (NEG_ONLY, no dW), de-duplicated by variant."""
    out = {}
    for neg, grad in ((False, True), (True, False)):
        for launch in capture(b, d, c, group, dtype, negative_only=neg, compute_grad=grad,
                              cfg=cfg):
            out.setdefault(launch.name, launch)
    return list(out.values())


class _Driver:
    """The stand-in driver of `JITFunction.warmup`: device 0, an H100's target, no stream."""

    def __init__(self):
        from triton.backends.compiler import GPUTarget
        self.target = GPUTarget(*TARGET)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def is_active(self):
        return True


@contextlib.contextmanager
def sm90_driver():
    """Triton's active driver replaced by `_Driver` (restored after); a fresh Triton cache, so
    that every kernel is built (and ptxas reports its registers) in this process."""
    from triton.runtime import driver
    try:
        from triton import knobs
    except ImportError:  # pragma: no cover - a Triton without knobs: ptxas is rerun instead
        knobs = None
    saved = driver._active
    with tempfile.TemporaryDirectory(prefix="sea_audit_cache_") as tmp:
        old_env = os.environ.get("TRITON_CACHE_DIR")
        os.environ["TRITON_CACHE_DIR"] = tmp
        old = None
        if knobs is not None:
            old = (knobs.cache.dir, getattr(knobs.nvidia, "dump_ptxas_log", None))
            knobs.cache.dir = tmp
            if old[1] is not None:
                knobs.nvidia.dump_ptxas_log = True
        driver.set_active(_Driver())
        try:
            yield
        finally:
            driver._active = saved   # None: the default driver, created when next asked for
            if old is not None:
                knobs.cache.dir = old[0]
                if old[1] is not None:
                    knobs.nvidia.dump_ptxas_log = old[1]
            if old_env is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = old_env


def _tensor_args(args, fn):
    """The launch's positional values in the kernel's order, tensors as MockTensors (a dtype and
    data_ptr 0: aligned, as every torch allocation is)."""
    from triton.runtime.jit import MockTensor
    values = []
    for name in fn.arg_names:
        v = args[name]
        values.append(MockTensor(v.dtype) if isinstance(v, torch.Tensor) else v)
    return values


_REGS = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_MMA = re.compile(r"\bmma\.sync\b|\bwgmma\.mma_async\b")
_DOT = re.compile(r"\btt\.dot\b|\bttng\.warp_group_dot\b")


def _ptxas_stats(log: str, kernel) -> tuple[int | None, int | None]:
    """(registers, spill bytes) from the build's ptxas -v log, or ptxas -v run on the PTX."""
    if not _REGS.search(log or ""):
        log = _run_ptxas(kernel.asm["ptx"])
    regs = _REGS.search(log)
    spills = _SPILL.findall(log)
    return (int(regs.group(1)) if regs else None,
            sum(int(st) + int(ld) for st, ld in spills) if spills else None)


def _run_ptxas(ptx: str) -> str:
    import subprocess

    from triton.backends.nvidia.compiler import get_ptxas
    try:
        ptxas = get_ptxas(90).path
    except TypeError:  # pragma: no cover - Triton versions whose get_ptxas takes no arch
        ptxas = get_ptxas().path
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "k.ptx")
        src.write_text(ptx)
        out = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", str(src), "-o",
                              str(Path(tmp, "k.cubin"))], capture_output=True, text=True)
        return out.stdout + out.stderr


_built: dict = {}


def compile_launch(launch: Launch) -> dict:
    """Lower one launch for sm_90 (inside `sm90_driver`): {compiled, error, regs, spills, smem,
    dots, mma}."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            kernel = launch.fn.warmup(*_tensor_args(launch.args, launch.fn), grid=launch.grid,
                                      **{k: v for k, v in launch.args.items()
                                         if k not in launch.fn.arg_names}, **launch.options)
        if not kernel.asm.get("cubin"):
            raise RuntimeError("no cubin")
    except Exception as exc:  # noqa: BLE001 - a failed build is a result
        return dict(compiled=False, error=f"{type(exc).__name__}: {exc}"[:2000], regs=None,
                    spills=None, smem=None, dots=None, mma=None)
    key = id(kernel)
    if key not in _built:   # a cache hit (the same specialisation) prints no ptxas log
        regs, spills = _ptxas_stats(buf.getvalue(), kernel)
        ttir = kernel.asm.get("ttir", "")
        _built[key] = (kernel, dict(
            compiled=True, error=None, regs=regs, spills=spills,
            smem=int(getattr(kernel.metadata, "shared", 0) or 0),
            dots=len(_DOT.findall(ttir)), mma=len(_MMA.findall(kernel.asm.get("ptx", "")))))
    return dict(_built[key][1])


def small_config():
    """16-wide blocks (the least tl.dot takes), value tiles of 32, 4 warps."""
    from sea_kernels.op import triton_backend as tb
    return tb.Config(row_m=16, row_c=32, block_m=16, block_n=16, block_c=16, block_v=32,
                     block_d=16, num_warps=4)


def _cdiv(a, b):
    return -(-a // b)


def _span(first, last, g, b, align):
    """The kernels' `_span`: [lo, hi) of the groups of rows first..last, lo aligned down."""
    lo = (first // g) * g
    return lo // align * align, min((last // g + 1) * g, b)


def _group_sizes(b, g):
    return [g] * (b // g) + ([b % g] if b % g else [])


def flops(launch: Launch) -> tuple[int, int]:
    """(executed, needed) FLOPs of one launch (see the module docstring)."""
    a = launch.args
    name = launch.fn.__name__
    b, c, g = a["b"], a["C"], a["G"]
    groups = _group_sizes(b, g)
    if name == "_prep":
        if not a["USE_M"]:
            return 0, 0
        cp = c if a["SMALL_C"] else _cdiv(c, a["BLOCK_CD"]) * a["BLOCK_CD"]
        return launch.grid[0] * a["BLOCK_M"] * 2 * cp * cp, 2 * b * c * c
    bm, bn = a["BLOCK_M"], a["BLOCK_N"]
    executed = 0
    for r0 in range(0, b, bm):
        lo, hi = _span(r0, min(r0 + bm, b) - 1, g, b, bn)
        n = _cdiv(hi - lo, bn)
        if name == "_probs":
            cp = c if a["SMALL_C"] else _cdiv(c, a["BLOCK_CD"]) * a["BLOCK_CD"]
            executed += n * bm * bn * 2 * cp
        elif name == "_stats":
            bv, bd, d = a["BLOCK_V"], a["BLOCK_D"], a["D"]
            gram = (n * _cdiv(d, bd) * 2 * bm * bn * bd if a["QX"] else n * n * 2 * bm * bn * bn)
            executed += gram + n * _cdiv(c, bv) * 2 * bm * bn * bv
    if name == "_probs":
        return executed, sum(2 * gk * gk * c for gk in groups)
    if name == "_stats":
        inner = a["D"] if a["QX"] else None
        return executed, sum(2 * gk * gk * ((inner or gk) + c) for gk in groups)
    return 0, 0


def records(shapes=SHAPES, dtypes=tuple(DTYPES), cfg=None, progress=None) -> list[dict]:
    """One record (FIELDS, plus `error` where a build failed: printed, not in the JSON) per
    (kernel, shape, dtype)."""
    out = []
    with sm90_driver():
        for b, d, c, g in shapes:
            for dt in dtypes:
                for launch in host_launches(b, d, c, g, DTYPES[dt], cfg):
                    if progress:
                        progress(f"{launch.name} {(b, d, c, g)} {dt}")
                    built = compile_launch(launch)
                    executed, needed = flops(launch)
                    rec = dict(kernel=launch.name, shape=[b, d, c, g], dtype=dt,
                               compiled=built["compiled"],
                               num_warps=launch.options.get("num_warps", 4),
                               regs=built["regs"], spills=built["spills"], smem=built["smem"],
                               dots=built["dots"], mma=built["mma"], flops_executed=executed,
                               flops_needed=needed)
                    if built["error"]:
                        rec["error"] = built["error"]
                    out.append(rec)
    return out


def _fmt_flops(v):
    if not v:
        return "0"
    e = int(math.floor(math.log10(v) / 3))
    return f"{v / 1000 ** e:.3g}{' kMGTP'[e].strip()}"


def table(recs) -> str:
    """The records as a fixed-width text table."""
    head = (f"{'kernel':22} {'b,d,C,G':>22} {'dtype':8} {'ok':>3} {'warps':>5} {'regs':>4} "
            f"{'spill':>5} {'smem':>6} {'dots':>4} {'mma':>4} {'executed':>8} {'needed':>8} "
            f"{'ratio':>6}")
    lines = [head, "-" * len(head)]
    for r in recs:
        shape = ",".join("-" if v is None else str(v) for v in r["shape"])
        ratio = (f"{r['flops_executed'] / r['flops_needed']:.2f}" if r["flops_needed"] else "")
        lines.append(f"{r['kernel']:22} {shape:>22} {r['dtype']:8} "
                     f"{'yes' if r['compiled'] else 'NO':>3} {r['num_warps']:5} "
                     f"{_v(r['regs']):>4} {_v(r['spills']):>5} {_v(r['smem']):>6} "
                     f"{_v(r['dots']):>4} {_v(r['mma']):>4} {_fmt_flops(r['flops_executed']):>8} "
                     f"{_fmt_flops(r['flops_needed']):>8} {ratio:>6}")
        if r.get("error"):
            lines.append(f"    error: {r['error'][:300]}")
    return "\n".join(lines)


def _v(v):
    return "?" if v is None else str(v)


def check(recs, ratio=True) -> list[str]:
    """What is wrong with the records: a kernel that did not compile, spills, shared memory
    over SMEM_LIMIT, a dot without tensor-core instructions, executed FLOPs over MAX_RATIO ×
    the needed ones. Empty when all is well."""
    bad = []
    for r in recs:
        where = f"{r['kernel']} {r['shape']} {r['dtype']}"
        if not r["compiled"]:
            bad.append(f"{where}: not compiled ({r.get('error')})")
            continue
        if r["spills"] != 0:
            bad.append(f"{where}: {r['spills']} bytes of spills")
        if r["smem"] is None or r["smem"] > SMEM_LIMIT:
            bad.append(f"{where}: shared memory {r['smem']} > {SMEM_LIMIT}")
        if r["dots"] and not r["mma"]:
            bad.append(f"{where}: {r['dots']} dots but no tensor-core instruction")
        if ratio and r["flops_executed"] > MAX_RATIO * r["flops_needed"]:
            bad.append(f"{where}: executed {r['flops_executed']} > {MAX_RATIO} × needed "
                       f"{r['flops_needed']}")
    return bad


def _shape(text):
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected b,d,C,G (G: - for the whole batch), "
                                         f"got {text!r}")
    try:
        return tuple(None if p in ("-", "", "none") else int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers in {text!r}") from None


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=_shape, action="append", default=None, metavar="b,d,C,G",
                   help="audit this shape (repeatable; G '-' for the whole batch; default: the "
                        "five of SHAPES)")
    p.add_argument("--dtype", choices=tuple(DTYPES), action="append", default=None,
                   help="input dtype (repeatable; default: float32 and bfloat16)")
    p.add_argument("--edge", action="store_true",
                   help="the compile check instead: EDGE_SHAPES with the shipped Config and with "
                        "16-wide blocks (small_config), float32")
    p.add_argument("--json", type=Path, default=None, help="write the records as JSON here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    say = lambda t: print(f"compiling {t}", file=sys.stderr, flush=True)  # noqa: E731
    if args.edge:
        recs = (records(EDGE_SHAPES, ("float32",), progress=say)
                + records(EDGE_SHAPES[:3], ("float32",), cfg=small_config(), progress=say))
    else:
        recs = records(args.shape or SHAPES, tuple(args.dtype or DTYPES), progress=say)
    print(table(recs))
    if args.json:
        from sea_kernels.data import writers
        writers.write_json(args.json, [{k: r[k] for k in FIELDS} for r in recs], indent=1)
        print(f"wrote {args.json} ({len(recs)} records)")
    bad = check(recs, ratio=not args.edge)
    for line in bad:
        print("FAIL", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
