"""The Triton path's tensor-core dots bounded on the CPU (the interpreter computes dots in fp32,
so the hardware's operand rounding is emulated here): the stages of op/triton_backend.py in
float64, with every operand rounded as the GPU rounds it — fp32 inputs: the kernels' dots in
3×TF32 (a = a_hi + a_lo, a_hi = tf32(a), a_lo = tf32(a − a_hi); a·b ≈ a_hi b_hi + a_hi b_lo +
a_lo b_hi), the torch GEMMs in fp32; bf16 inputs: the GEMM and value-dot operands in bf16 —
and every stored intermediate (L, K, A', M, Q, D1, D2, R) rounded to fp32. The error against
float64 (the torch backend on the same rounded inputs) must stay inside the fuzz suite's bound
for the dtype (tests/fuzz_oracle.py TOL, relative); plain TF32 in the kernels would not."""
import math

import pytest
import torch
from fuzz_oracle import TOL
from helpers import make_problem

from sea_kernels.op import torch_backend
from sea_kernels.op.call import Hyper
from sea_kernels.op.reference import one_hot


def tf32(t):
    """t rounded to TF32 (10 mantissa bits, to nearest), as float64."""
    i = t.to(torch.float32).view(torch.int32)
    return ((i + 0x1000) & ~0x1FFF).view(torch.float32).double()


def f32(t):
    return t.to(torch.float32).double()


def bf16(t):
    return t.to(torch.bfloat16).double()


def dot(a, b, mode):
    """a @ b with the operands rounded as tl.dot / the GEMM does: "tf32x3", "tf32" (one TF32
    product), "fp32" (exact fp32 operands), "bf16"."""
    if mode == "tf32x3":
        ah, bh = tf32(a), tf32(b)
        al, bl = tf32(a - ah), tf32(b - bh)
        return ah @ bh + ah @ bl + al @ bh
    if mode == "tf32":
        return tf32(a) @ tf32(b)
    if mode == "bf16":
        return bf16(a) @ bf16(b)
    return f32(a) @ f32(b)


def emulated(x, y, w, scale, hyper, dtype, kdot):
    """(losses, dW) of the Triton stages (whole batch, no rare rows) in float64 with the
    operand rounding of `dtype` inputs; kdot: the kernels' fp32 dot mode."""
    gemm = "bf16" if dtype == torch.bfloat16 else "fp32"
    vdot = "bf16" if dtype == torch.bfloat16 else kdot
    yh = one_hot(y, w.shape[1], torch.float64)
    logits = f32(dot(x, w, gemm))                                   # mm32: fp32 output
    k = f32(dot(x, x.T, gemm))
    a = f32(torch_backend.row_prep(logits, yh, hyper.lam, hyper.delta, False))
    m = f32(dot(w.T, w, "fp32"))                                   # M = WᵀW from fp32 W
    g2 = (dot(a, m, kdot) * a).sum(dim=1)                          # _prep: a'ᵀMa'
    sc = g2.rsqrt() / hyper.alpha
    s = dot(a, logits.T, kdot) * sc[:, None]                        # _probs: S = sc·A'Lᵀ
    s.fill_diagonal_(-math.inf)
    q = f32(torch.softmax(s, dim=1))
    p1 = (dot(q, k, vdot) * q).sum(dim=1)                           # _stats: QK, QL
    ql = dot(q, logits, vdot)
    p2 = (q * k).sum(dim=1)
    r = p1.rsqrt()
    n2 = k.diagonal() + 2 * hyper.eta * r * p2 + hyper.eta ** 2
    c1 = n2.rsqrt()
    c2 = hyper.eta * r * c1
    losses, d = torch_backend.row_epilogue(logits, ql, c1, c2, yh, scale, hyper.lam,
                                           hyper.delta)
    rr = f32(f32(c1[:, None] * d) + dot(q.T, f32(c2[:, None] * d), "fp32"))  # baddbmm
    dw = dot(x.T, rr, gemm)                                          # XᵀR
    return losses, dw


def errors(dtype, kdot, seed, alpha):
    """Relative errors (loss, dW) of the emulation against float64 on the rounded inputs."""
    x, y, w = make_problem(96, 48, 24, seed=seed)
    x, w = x.to(dtype).double(), w.to(dtype).double()
    hyper = Hyper(alpha, 0.8, 0.5, 0.1)
    scale = torch.full((96,), 1 / 96, dtype=torch.float64)
    want = torch_backend.sea_forward(x, y, w, scale, hyper, True)
    got = emulated(x, y, w, scale, hyper, dtype, kdot)
    return tuple(float((g - t).norm() / t.norm()) for g, t in zip(got, want[:2]))


CASES = [(seed, alpha) for seed in range(3) for alpha in (0.01, 0.1, 1.0)]


@pytest.mark.parametrize("seed,alpha", CASES)
def test_fp32_tf32x3_within_the_float32_bound(seed, alpha):
    """fp32 inputs, 3×TF32 dots: inside TOL["float32"] (2e-5 relative)."""
    err = errors(torch.float32, "tf32x3", seed, alpha)
    assert max(err) <= TOL["float32"], err


@pytest.mark.parametrize("seed,alpha", CASES)
def test_bf16_within_the_bf16_bound(seed, alpha):
    """bf16 inputs: bf16 GEMM and value-dot operands, 3×TF32 scores: inside TOL["bfloat16"]."""
    err = errors(torch.bfloat16, "tf32x3", seed, alpha)
    assert max(err) <= TOL["bfloat16"], err


def test_single_tf32_would_not_do():
    """The emulation can tell: one TF32 product per dot leaves the fp32 bound at α = 0.01."""
    err = max(max(errors(torch.float32, "tf32", seed, 0.01)) for seed in range(3))
    assert err > TOL["float32"], err
