"""`make demo`: the SeA op on a random batch, every usable backend against the float64 spec.

Prints, per backend: loss, relative error of loss and dW against the paper-literal float64
reference, and the median step time next to the paper-literal float32 reference.
"""
from __future__ import annotations

import statistics
import time

import torch

import sea_kernels
from sea_kernels import reference


def median_ms(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(b=256, d=2048, c=10):
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, d), dim=1)
    y = torch.randint(0, c, (b,))
    w = torch.randn(d, c) * 3 / d ** 0.5
    ref_loss, ref_grad = reference.sea_loss_and_grad(x.double(), y, w.double())
    sea_kernels.info()
    print(f"\nrandom batch b={b}, d={d}, C={c} (float32), α=0.01 η=0.8 λ=0.1 δ=0")

    def step(fn):
        def run():
            wg = w.clone().requires_grad_(True)
            loss = fn(wg)
            loss.backward()
            return loss.detach(), wg.grad
        return run

    runs = {"reference (paper-literal)": step(lambda wg: reference.sea_loss(x, y, wg))}
    for name, (usable, _) in sea_kernels.backend_status().items():
        if usable and not (name == "triton" and not torch.cuda.is_available()):
            runs[name] = step(lambda wg, n=name: sea_kernels.fused_sea(x, y, wg, backend=n))
    print(f"{'backend':28} {'loss':>10} {'loss err':>9} {'dW err':>9} {'ms/step':>8} {'speed-up':>9}")
    base = None
    for name, run in runs.items():
        loss, grad = run()
        ms = median_ms(run)
        base = base or ms
        lerr = abs(loss.item() - ref_loss.item()) / abs(ref_loss.item())
        gerr = ((grad.double() - ref_grad).norm() / ref_grad.norm()).item()
        print(f"{name:28} {loss.item():10.5f} {lerr:9.1e} {gerr:9.1e} {ms:8.2f} {base / ms:8.2f}×")


if __name__ == "__main__":
    main()
