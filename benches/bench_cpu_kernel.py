"""Timing of the fused C++ CPU kernel against the eager paths and the GEMM floor.

    python benches/bench_cpu_kernel.py [--repeats 20] [--threads 2] [--shapes 256,8192,100 ...]

Candidates, float32, interleaved round-robin, median (and minimum) wall time of the repeats
after warm-up (`sea_kernels.timing.interleaved`); the minimum is the steadier figure on a
machine shared with other jobs:
  reference   paper-literal sea_kernels.reference.sea_loss_and_grad (autograd for dW)
  torch-gram  sea_kernels.op.torch_backend.sea_forward (eager Gram space)
  cpp         torch.ops.sea_kernels.sea_fwd_cpu (losses + dW)
  gemm-floor  torch.mm of X@W, X@Xᵀ and Xᵀ@R (R b×C): the three GEMMs no formulation avoids
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sea_kernels._C  # noqa: E402,F401  (registers the op)
from sea_kernels import reference, timing  # noqa: E402
from sea_kernels.op import torch_backend  # noqa: E402
from sea_kernels.op.call import Hyper  # noqa: E402
from sea_kernels.params import DEFAULTS  # noqa: E402

# The paper's defaults, in the positional order of op.call.Hyper (and of sea_fwd_cpu).
HYPER = {k: DEFAULTS[k] for k in ("alpha", "eta", "lam", "delta")}


def inputs(b, d, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.randn(d, c, generator=g) * (3.0 / d ** 0.5)
    return x, y, w


def candidates(x, y, w):
    b, c = x.shape[0], w.shape[1]
    s = torch.full((b,), 1.0 / b)
    r = torch.randn(b, c)
    h = tuple(HYPER.values())
    return {
        "reference": lambda: reference.sea_loss_and_grad(x, y, w, **HYPER),
        "torch-gram": lambda: torch_backend.sea_forward(x, y, w, s, Hyper(*h)),
        "cpp": lambda: torch.ops.sea_kernels.sea_fwd_cpu(x, y, w, s, *h, False, True),
        "gemm-floor": lambda: (x @ w, x @ x.T, x.T @ r),
    }


def bench(fns, repeats, warmup=3):
    """{name: (median ms, min ms)} over `repeats` interleaved rounds."""
    times = timing.interleaved(fns, repeats, warmup=warmup)  # load drift hits every one alike
    return {k: (timing.median(v) * 1e3, min(v) * 1e3) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", nargs="*",
                    default=["256,2048,10", "256,8192,100", "1024,8192,1000"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats} load={os.getloadavg()[0]:.2f}  "
          "(median ms; ratios of medians, and of minima in brackets)")
    print(f"{'b,d,C':>16} {'reference':>10} {'torch-gram':>10} {'cpp':>8} {'floor':>8} "
          f"{'ref/cpp':>14} {'cpp/floor':>14}")
    for shape in args.shapes:
        b, d, c = map(int, shape.split(","))
        t = bench(candidates(*inputs(b, d, c)), args.repeats)
        med = {k: v[0] for k, v in t.items()}
        low = {k: v[1] for k, v in t.items()}
        speedup = f"{med['reference'] / med['cpp']:.2f} [{low['reference'] / low['cpp']:.2f}]"
        floor = f"{med['cpp'] / med['gemm-floor']:.2f} [{low['cpp'] / low['gemm-floor']:.2f}]"
        print(f"{shape:>16} {med['reference']:10.2f} {med['torch-gram']:10.2f} {med['cpp']:8.2f} "
              f"{med['gemm-floor']:8.2f} {speedup:>14} {floor:>14}", flush=True)
    print(f"load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
