"""The `triton` backend: the Gram-space stages as three fused Triton kernels and batched GEMMs.

The common formulation, the contract and the stage names are docs/design.md §2, §3 and §5; this
host module runs one step as (b = 256, the whole batch, with dW: 8 launches, no host sync):

    L = XW, K = blockdiag(XXᵀ) (b×G: one bmm over the groups; only for d ≥ G),
    M = WᵀW (C ≤ 2b)                                                                  3 GEMMs
    _prep   A', ‖g_i‖² = a'_iᵀMa'_i and its rounding scale, ‖x_i‖², the zero-row flags kernel
    _probs  S = sc·A'Lᵀ once per tile → Q (b×G, fp32), the row softmax in place      kernel
    _stats  QK (d ≥ G) or ĝ = QX (d < G: 2bGd < 2bGd + 2bG², no K), QL, ‖ĝ‖², xᵀĝ,
            c1 = 1/n, c2 = ηr/n (untrusted rows formed directly in-kernel), the losses
            and D1 = c1 D, D2 = c2 D                                                  kernel
    R = D1 + Qᵀ D2 (one baddbmm over the groups), dW = XᵀR                           2 GEMMs

What differs from the torch backend:

* Dtypes (`DOT_PRECISION`, `COMPUTES_IN`): float32 inputs: the torch GEMMs in fp32 (TF32 only if
  torch's own allow_tf32 says so; the package never sets it), every tl.dot in 3×TF32
  ("tf32x3", tensor cores at ≈ fp32 accuracy). bf16/fp16 inputs: the GEMM operands X, W (and R
  for bf16) stay in their dtype with fp32 accumulation and fp32 outputs L = XW, K = XXᵀ, dW
  (`mm32`); the kernels' value dots (QK, QL) take bf16 operands for bf16 inputs (3×TF32 for
  fp16, whose range would flush small logits); the scores S = A'Lᵀ, M = WᵀW, Q, the row
  factors, losses and D are fp32.
* Memory O(b·G + b·C): Q and K are stored as their diagonal blocks, b×G (G = b for the whole
  batch); no b×b tensor with groups, no concatenation. The last, shorter group is one more small
  GEMM (no padding of X).
* C > 2b: ‖g_i‖² from G' = A'Wᵀ in torch instead of M (as the torch backend).
* The rare rows of docs/design.md §3 are handled in the kernels, masked, without a host sync:
  the cancelling rows (W a'_i ≈ 0) take ‖g_i‖ and their scores from g_i = W a'_i (`_probs`), the
  untrusted rows take ‖ĝ_i‖ and n_i from ĝ_i = q_i X (`_stats`); both keep the Gram-space
  L̃ = c1 L + c2 QL and R = c1 D + Qᵀ c2 D with the corrected factors.
* input_grad=True (docs/design.md §8): X̃ = diag(c1) X + diag(c2) QX (one more batched GEMM),
  L̃ − 1bᵀ = c1 L + c2 QL, 1/n = c1, through `op.input_grad.input_grad`.
* On the CPU the kernels run only in Triton's interpreter, when TRITON_INTERPRET=1 was set before
  the kernels were imported and still is (a testing aid; backend="auto" never picks it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .input_grad import input_grad as input_grad_of
from .torch_backend import TAU

try:
    import triton
    import triton.language as tl

    from . import triton_kernels as kernels
    AVAILABLE, UNAVAILABLE_REASON = True, ""
    #: The kernels were defined for Triton's interpreter (TRITON_INTERPRET=1 at import).
    INTERPRETED = type(kernels._prep).__name__ == "InterpretedFunction"
except Exception as exc:  # pragma: no cover - exercised only where triton is missing
    triton = tl = kernels = None
    AVAILABLE, UNAVAILABLE_REASON = False, f"triton is not importable ({exc!r}); pip install triton"
    INTERPRETED = False

#: tl.dot's input_precision for fp32 operands: 3×TF32 (hi·hi + hi·lo + lo·hi), tensor cores at
#: ≈ fp32 accuracy (tests/test_tensor_core_error.py bounds it). bf16/fp16 operands: their own mma.
DOT_PRECISION = "tf32x3"
#: What the backend computes in, per input dtype: (GEMM/value-dot operands, accumulation).
COMPUTES_IN = {torch.float32: ("float32 (dots: 3xTF32)", "float32"),
               torch.bfloat16: ("bfloat16 (GEMMs, value dots)", "float32"),
               torch.float16: ("float16 (GEMMs)", "float32")}


@dataclass(frozen=True)
class Config:
    """Block sizes. Every dimension that feeds tl.dot must be ≥ 16 on a GPU."""
    row_m: int = 16     # rows per program in _prep
    row_c: int = 128    # class tile of the row passes (_prep, the epilogue of _stats)
    block_m: int = 64   # rows per program in _probs / _stats
    block_n: int = 32   # key tile (j, k) in _probs / _stats
    block_c: int = 16   # class (reduction) tile of S = A'Lᵀ, a'ᵀMa' and g_i = W a'_i
    block_v: int = 16   # class tile of QL and of the loss epilogue in _stats
    block_d: int = 32   # feature tile of the direct rows (g_i, ĝ_i = q_i X)
    row_warps: int = 4  # _prep
    num_warps: int = 8  # _probs / _stats


CONFIG = Config()


def interpreter_on() -> bool:
    """The kernels can run on CPU tensors: defined for, and still under, TRITON_INTERPRET=1."""
    return INTERPRETED and os.environ.get("TRITON_INTERPRET") == "1"


def _check_device(x):
    """The kernels read only CUDA tensors (CPU tensors only under the interpreter)."""
    if not AVAILABLE:
        raise ValueError(f"backend='triton' is not available: {UNAVAILABLE_REASON}")
    if x.device.type != "cuda" and not interpreter_on():
        raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for "
                         f"testing), got tensors on {x.device}; use backend='cpp' or 'torch' on "
                         "the CPU")


def sea_forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None,
                input_grad=False):
    """The backend contract (op/dispatch.py, docs/design.md §5): per-row losses ℓ(x̃_i) (b,),
    dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (d×C) and db = Σ_i D_i (C,), float32; dW and db empty without
    compute_grad, db also without a bias. input_grad=True: a fourth value
    dX = ∂(Σ_i s_i ℓ(x̃_i))/∂X (b×d, float32) with the direction fixed (§8). hyper.group_size G
    projects every row onto the other rows of its group of G consecutive rows only."""
    _check_device(x)
    group = x.shape[0] if hyper.group_size is None else min(hyper.group_size, x.shape[0])
    with torch.no_grad():
        if x.device.type == "cuda":
            with torch.cuda.device(x.device):
                out = _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias,
                               CONFIG, input_grad)
        else:
            out = _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias,
                           CONFIG, input_grad)
    return out


def gemm_dtype(*dtypes) -> torch.dtype:
    """The dtype of the GEMM operands: the inputs' common dtype (bf16 with fp16: fp32)."""
    out = dtypes[0]
    for dt in dtypes[1:]:
        out = out if dt == out else torch.float32
    return out


def _value_dtype(dt):
    """The kernels' value-dot operand dtype (a tl dtype) and whether to emulate it (interpreter:
    it cannot dot bf16, so the operands are rounded to it and dotted in fp32). fp16 inputs take
    fp32 (3×TF32) value dots: fp16's range would flush small logits."""
    if dt != torch.bfloat16:
        return tl.float32, False
    return tl.bfloat16, INTERPRETED


def mm32(a, b, batched=False):
    """a @ b (bmm with batched) with fp32 output: fp32 operands as they are; bf16/fp16 operands
    stay in their dtype with fp32 accumulation and output (out_dtype, CUDA), which on the CPU
    (the interpreter's tests) is the same product of the upcast operands."""
    op = torch.bmm if batched else torch.mm
    if a.dtype == torch.float32:
        return op(a, b)
    if a.device.type in ("cuda", "meta"):
        try:
            return op(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # pragma: no cover - a torch without out_dtype
            pass
    return op(a.float(), b.float())


def block_diag_matmul(q, v, group, out=None, add=None, transpose=False):
    """Q v (Qᵀ v with transpose) for Q stored b×G (its diagonal blocks of G rows; the last group
    may be shorter) and v (b, k): one bmm over the full groups, one mm for the shorter last
    group; add: + add (b, k) (a baddbmm)."""
    b, k = v.shape
    out = torch.empty(b, k, dtype=v.dtype, device=v.device) if out is None else out
    nf, rest = divmod(b, group)
    cut = nf * group
    for lo, n, g in ((0, nf, group), (cut, 1, rest)):
        if not n or not g:
            continue
        qb = q[lo:lo + n * g, :g].reshape(n, g, g) if g != group else q[lo:lo + n * g].view(
            n, g, g)
        qb = qb.mT if transpose else qb
        vb, ob = v[lo:lo + n * g].view(n, g, k), out[lo:lo + n * g].view(n, g, k)
        if add is None:
            torch.bmm(qb, vb, out=ob)
        else:
            torch.baddbmm(add[lo:lo + n * g].view(n, g, k), qb, vb, out=ob)
    return out


def gram_blocks(x, group):
    """K = XXᵀ on the diagonal blocks of G rows, stored b×G (row i, column j − G⌊i/G⌋; columns
    past a shorter last group unused): one bmm over the full groups, one mm for the last."""
    b, d = x.shape
    nf, rest = divmod(b, group)
    cut = nf * group
    if not rest:    # the usual case: one bmm, its output is the b×G storage
        return mm32(x.view(nf, group, d), x.view(nf, group, d).mT, batched=True).view(b, group)
    k = torch.empty(b, group, dtype=torch.float32, device=x.device)
    if nf:
        xb = x[:cut].view(nf, group, d)
        k[:cut] = mm32(xb, xb.mT, batched=True).view(cut, group)
    k[cut:, :rest] = mm32(x[cut:], x[cut:].T)
    return k


def _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias, cfg: Config,
             input_grad=False):
    """(losses, dW, db[, dX]) for groups of `group` rows (b: the whole batch)."""
    alpha, eta, lam, delta, negative_only = hyper[:5]
    f32 = torch.float32
    gdt = gemm_dtype(x.dtype, weight.dtype)
    x, w = x.detach().to(gdt).contiguous(), weight.detach().to(gdt).contiguous()
    b, c = x.shape[0], w.shape[1]
    dev = x.device
    has_bias = bias is not None
    bias32 = bias.detach().to(device=dev, dtype=f32).contiguous() if has_bias else x
    labels = labels.to(torch.int64).contiguous()
    logits = mm32(x, w)
    use_qx = x.shape[1] < group        # ĝ = QX (2bGd) is cheaper than K = XXᵀ and QK
    k = x if use_qx else gram_blocks(x, group)
    use_m = c <= 2 * b
    dwc = torch.empty(w.shape, dtype=f32, device=dev) if compute_grad else x.new_empty(0, dtype=f32)
    a, g2, s2, nz, kd = prep(logits, bias32, labels, w, k, x, lam, delta, negative_only, use_m,
                             has_bias, group, cfg, dwc, use_qx)
    q = probs(a, logits, x, w, g2, s2, nz, alpha, group, cfg)
    grad = compute_grad or input_grad
    ql, losses, d, d1, d2, cf = stats(q, k, kd, logits, x, w, labels, bias32, row_scale, eta,
                                      lam, delta, grad, input_grad or has_bias, has_bias, group,
                                      cfg, gdt, dwc, use_qx)
    empty = x.new_empty(0, dtype=f32)
    dw = db = empty
    if compute_grad:
        r = block_diag_matmul(q, d2, group, add=d1, transpose=True)
        if gdt == torch.float32:
            dw = torch.addmm(dwc, x.T, r)
        elif gdt == torch.float16:
            dw = torch.addmm(dwc, x.T.float(), r)
        else:
            dw = mm32(x.T, r.to(gdt)).add_(dwc)
        db = d.sum(dim=0) if has_bias else empty
    if not input_grad:
        return losses, dw, db
    c1, c2, cl1, cl2 = cf
    x32 = x.to(f32)
    x_aug = c1[:, None] * x32 + c2[:, None] * block_diag_matmul(q, x32, group)
    aug = cl1[:, None] * logits + cl2[:, None] * ql
    return losses, dw, db, input_grad_of(d, w.to(f32), aug, x_aug, c1)


def prep(logits, bias, labels, w, k, x, lam, delta, negative_only, use_m, has_bias, group,
         cfg: Config, zero, qx=False):
    """_prep: (A' (b×C, fp32), ‖g_i‖², its rounding scale (Σ_c |a'_ic|‖w_c‖)², nz, ‖x_i‖² (b,));
    C > 2b (not use_m): the two norms from G' = A'Wᵀ in torch; qx: no K (‖x_i‖² from X). `zero`
    (fp32) is zeroed on the way."""
    b, c = logits.shape
    f32, dev = torch.float32, logits.device
    a = torch.empty(b, c, dtype=f32, device=dev)
    g2, s2, nz, kd = (torch.empty(b, dtype=f32, device=dev) for _ in range(4))
    m = w.T.to(f32) @ w.to(f32) if use_m else a
    grid = triton.cdiv(b, cfg.row_m)
    kernels._prep[(grid,)](
        logits, bias, labels, m, k, x, a, g2, s2, nz, kd, zero, zero.numel(),
        triton.cdiv(zero.numel(), grid), b, c, x.shape[1], group,
        logits.stride(0), m.stride(0), k.stride(0), x.stride(0), a.stride(0), float(delta),
        1.0 / lam, NEG_ONLY=bool(negative_only), HAS_BIAS=has_bias, USE_M=use_m,
        SMALL_C=c < cfg.block_c, QX=bool(qx), BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c,
        BLOCK_CD=cfg.block_c, BLOCK_D=cfg.block_d, PREC=DOT_PRECISION, num_warps=cfg.row_warps)
    if not use_m:
        w32 = w.to(f32)
        g2 = (a @ w32.T).square().sum(dim=1)
        s2 = (a.abs() @ w32.square().sum(dim=0).sqrt()).square()
    return a, g2, s2, nz, kd


def probs(a, logits, x, w, g2, s2, nz, alpha, group, cfg: Config):
    """_probs: Q (b×G, fp32), the masked row softmax of S = sc·A'Lᵀ over each row's group."""
    b, c = logits.shape
    q = torch.empty(b, group, dtype=torch.float32, device=a.device)
    kernels._probs[(triton.cdiv(b, cfg.block_m),)](
        a, logits, x, w, g2, s2, nz, q, b, c, x.shape[1], group, 1.0 / alpha,
        TAU[torch.float32], a.stride(0), logits.stride(0), x.stride(0), w.stride(0),
        q.stride(0), SMALL_C=c < cfg.block_c, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BLOCK_CD=cfg.block_c, BLOCK_D=cfg.block_d, PREC=DOT_PRECISION,
        num_warps=cfg.num_warps)
    return q


def stats(q, k, kd, logits, x, w, labels, bias, row_scale, eta, lam, delta, grad, write_d,
          has_bias, group, cfg: Config, gdt, dwc, qx=False):
    """_stats: (QL, losses, D or None, D1, D2, (c1, c2, cl1, cl2)) with R = D1 + Qᵀ D2, X̃ = c1 X
    + c2 QX, L̃ − 1bᵀ = cl1 L + cl2 QL; without `grad` the D's are None. gdt: the inputs' GEMM
    dtype (bf16: bf16 value dots); dwc (d×C, zeroed by _prep): the untrusted rows' dW share is
    added to it; qx: ‖ĝ‖², xᵀĝ from ĝ = QX (k unused), kd = ‖x_i‖²."""
    b, c = logits.shape
    f32, dev = torch.float32, logits.device
    ql = torch.empty(b, c, dtype=f32, device=dev)
    losses = torch.empty(b, dtype=f32, device=dev)
    cf = torch.empty(4, b, dtype=f32, device=dev)
    xa = torch.empty(b, x.shape[1], dtype=f32, device=dev)
    d1 = torch.empty(b, c, dtype=f32, device=dev) if grad else losses
    d2 = torch.empty_like(d1) if grad else losses
    d = torch.empty_like(d1) if grad and write_d else d1
    rs = row_scale.detach().to(device=dev, dtype=f32).contiguous() if grad else losses
    vdt, emu = _value_dtype(gdt)
    kernels._stats[(triton.cdiv(b, cfg.block_m),)](
        q, k, kd, logits, x, w, labels, bias, rs, ql, losses, d, d1, d2, cf, xa, dwc, b, c,
        x.shape[1], group, float(eta), TAU[f32], float(delta), float(lam), 1.0 / lam,
        q.stride(0), k.stride(0), logits.stride(0), x.stride(0), w.stride(0), ql.stride(0),
        d1.stride(0), xa.stride(0),
        GRAD=bool(grad), WRITE_D=bool(grad and write_d), HAS_BIAS=has_bias, QX=bool(qx),
        VDT=vdt, VEMU=emu,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_C=cfg.block_v,
        BLOCK_D=cfg.block_d, PREC=DOT_PRECISION, num_warps=cfg.num_warps)
    if not grad:
        return ql, losses, None, None, None, cf
    return ql, losses, (d if write_d else None), d1, d2, cf
