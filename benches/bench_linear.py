"""SeA's η = 0 against torch's own fused linear cross-entropy (issue #16), and the full op's cost.

    python benches/bench_linear.py [--shapes b,d,C;...] [--repeats N] [--warmup N] [--threads N]

Every step is forward + backward in float32 on the CPU, with input rows h (b×d), a linear weight
V (C×d, nn.Linear's layout, requires_grad) and targets y; λ = 1, δ = 0 (cross-entropy), no bias.
The baseline is `F.linear_cross_entropy(F.normalize(h), V, y)`: F.normalize is included in every
baseline, as every SeA call normalises its rows itself (sea_linear_cross_entropy with
F.normalize, fused_sea with Π). The candidates of one shape are timed interleaved (round-robin,
median of `--repeats` rounds after `--warmup` calls each) through `sea_kernels.timing`, so that
drift hits the SeA call and its baseline alike.

Rows of the table (ratio = SeA time / baseline time; 1.00 is parity):

  lce η=0 +dx   sea_linear_cross_entropy(h, V, y, eta=0), h.requires_grad: ∂/∂h and ∂/∂V,
                against the baseline with h.requires_grad
  lce η=0       the same without the input gradient (h.requires_grad False): ∂/∂V only
  op η=0 +dx    sea_linear_cross_entropy(eta=torch.tensor(0.)): the same function through the
                fused op (a tensor η always takes it: the backend's η = 0 forward with
                input_grad=True, gradients from the forward pass), against the baseline with
                h.requires_grad
  op η=0        the same without the input gradient
  fused η=0     fused_sea(h, y, V.T, eta=0) (backend "auto"): ∂/∂V only, against the baseline
                without the input gradient
  lce η=0.8 +dx sea_linear_cross_entropy(..., eta=0.8) with the input gradient, against the
                baseline with it; `floor` is the smallest ratio any implementation can reach,
                (baseline + one b×b GEMM X Xᵀ of that shape, timed alone) / baseline, since the
                direction u = Π(QX) needs a b×b by b×d product
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arguments import at_least  # noqa: E402
from arguments import shapes as shapes_arg

import sea_kernels  # noqa: E402
from sea_kernels import timing  # noqa: E402

SHAPES = "256,1280,10;256,2048,100;256,8192,100;2048,1024,1000"
ETA = 0.8


def make_inputs(b, d, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=g)
    v = torch.randn(c, d, generator=g) * (3.0 / d ** 0.5)
    y = torch.randint(0, c, (b,), generator=g)
    return h, v, y


def candidates(h, v, y):
    """{name: zero-argument callable running one forward + backward}."""
    def step(loss_of, input_grad):
        def run():
            hg = h.detach().requires_grad_(input_grad)
            vg = v.detach().requires_grad_(True)
            loss_of(hg, vg).backward()
        return run

    def lce(hg, vg):
        return F.linear_cross_entropy(F.normalize(hg, dim=1), vg, y)

    def sea(eta):
        return lambda hg, vg: sea_kernels.sea_linear_cross_entropy(hg, vg, y, eta=eta, lam=1.0,
                                                                   delta=0.0)

    zero = torch.tensor(0.0)

    def fused(hg, vg):
        return sea_kernels.fused_sea(hg, y, vg.T, eta=0.0, lam=1.0, delta=0.0)

    xn = F.normalize(h, dim=1)
    return {"lce_dx": step(lce, True), "sea0_dx": step(sea(0.0), True),
            "lce": step(lce, False), "sea0": step(sea(0.0), False),
            "op0_dx": step(sea(zero), True), "op0": step(sea(zero), False),
            "fused0": step(fused, False), "sea_eta_dx": step(sea(ETA), True),
            "xxt": lambda: torch.mm(xn, xn.T)}


ROWS = [("lce η=0 +dx", "sea0_dx", "lce_dx"), ("lce η=0", "sea0", "lce"),
        ("op η=0 +dx", "op0_dx", "lce_dx"), ("op η=0", "op0", "lce"),
        ("fused η=0", "fused0", "lce"), (f"lce η={ETA} +dx", "sea_eta_dx", "lce_dx")]
LEGEND = """\
ratio = SeA ms / F.linear_cross_entropy(F.normalize(h), V, y) ms (F.normalize in both), fwd+bwd
  lce η=0 +dx    sea_linear_cross_entropy(eta=0), input gradient on (h.requires_grad)
  lce η=0        sea_linear_cross_entropy(eta=0), no input gradient (∂/∂V only)
  op η=0 +dx     sea_linear_cross_entropy(eta=tensor(0.)): the fused op, input gradient on
  op η=0         the fused op, no input gradient
  fused η=0      fused_sea(eta=0, backend auto), no input gradient (∂/∂V only)
  lce η=0.8 +dx  the full op with the input gradient; floor = (baseline + X Xᵀ GEMM alone) /
                 baseline, the ratio no implementation of the b×b direction can go under"""


def bench(shapes, repeats, warmup):
    header = (f"{'b':>5} {'d':>5} {'C':>5}  {'row':<14} {'SeA ms':>9} {'F.lce ms':>9} "
              f"{'ratio':>6} {'floor':>6}")
    print(LEGEND)
    print(header)
    print("-" * len(header))
    results = []
    for b, d, c in shapes:
        h, v, y = make_inputs(b, d, c)
        ms = {k: 1e3 * timing.median(s) for k, s in timing.interleaved(
            candidates(h, v, y), repeats, warmup=warmup).items()}
        for label, sea_key, base_key in ROWS:
            floor = (ms[base_key] + ms["xxt"]) / ms[base_key] if sea_key == "sea_eta_dx" else None
            ratio = ms[sea_key] / ms[base_key]
            results.append((b, d, c, label, ms[sea_key], ms[base_key], ratio, floor))
            print(f"{b:>5} {d:>5} {c:>5}  {label:<14} {ms[sea_key]:>9.3f} {ms[base_key]:>9.3f} "
                  f"{ratio:>6.2f} " + (f"{floor:>6.2f}" if floor is not None else f"{'':>6}"),
                  flush=True)
    return results


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in --help."""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\nRows")[0],
                                formatter_class=_Formatter)
    p.add_argument("--shapes", type=shapes_arg, default=SHAPES, metavar="b,d,C;...",
                   help="shapes to time")
    p.add_argument("--repeats", type=at_least(1), default=15,
                   help="timed interleaved rounds, each calling every candidate once")
    p.add_argument("--warmup", type=at_least(0), default=2,
                   help="untimed calls of each candidate before the rounds")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="torch threads (None: torch's own choice)")
    args = p.parse_args(argv)
    threads = timing.use_threads(args.threads)
    print(f"CPU, float32, {threads} torch threads, torch {torch.__version__}; median of "
          f"{args.repeats} interleaved rounds after {args.warmup} warm-up calls each")
    bench(args.shapes, args.repeats, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
