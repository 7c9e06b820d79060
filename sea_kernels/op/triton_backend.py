"""The `triton` backend: the Gram-space stages as fused, flash-attention-style Triton kernels.

The common formulation, the contract and the stage names are docs/design.md §2, §3 and §5; this
host module launches the kernels of op/triton_kernels.py stage by stage. What differs:

* fp32 throughout: bf16/fp16 inputs are upcast, every kernel accumulates in fp32; float64 is not
  declared (op/dispatch.py sends it to `torch`). `tl.dot` runs with input_precision=DOT_PRECISION
  ("ieee", exact fp32: TF32 would put 1e-3 relative errors into S, amplified by 1/α).
* No b×b matrix is stored. `attention` is an online softmax over key blocks (as flash
  attention): per value tile of [K | L] it forms Q[K | L], keeps QL (b×C), the row max m_i and
  1/z_i (z_i = Σ_j e^{S_ij − m_i}), and `grad_rows` recomputes Q = e^{S − m}/z block by block
  from A', L, m and 1/z (not from one lse = m + log z, whose rounding ε|m| would scale whole rows
  of Q). QK never leaves registers: ‖ĝ_i‖² and x_iᵀĝ_i come out of `attention` as per-tile
  partial sums (no atomics), added on the host.
* Groups and zero rows (docs/design.md §3): S_ij = −∞ unless j ≠ i lies in i's group of G
  consecutive rows (G = b for the whole batch) and x_j ≠ 0 (exactly: the flags `nz`); a row
  block visits only the key tiles of the groups it meets, in `attention` and `grad_rows` alike,
  so a grouped step costs O(bG) instead of O(b²) in its b×b part. A row with no allowed partner
  has Q_i = 0 (m = 1/z = 0): x̃_i = Π(x_i).
* Bias b (C,): added to L in `_row_prep` and `_row_epilogue` (L̃ = c1 L + c2 QL + 1bᵀ), not to the
  keys L of the scores; db = Σ_i D_i. Without a bias the kernels get zeros (adding +0 is exact).
* Tiles: rows in blocks of Config.row_m / block_m / block_n, the class dimension looped over in
  tiles (any C, no maximum), any b ≥ 1. `logits_and_gram`, `grad_norms_and_rows` (M = WᵀW for
  C ≤ 2b, else A'Wᵀ, as the torch backend) and `weight_grad` are torch GEMMs, the row factors
  c1 = 1/n, c2 = ηr/n are O(b) torch ops on the host (`torch_backend.factors`); the other four
  stages are one kernel launch each.
* The untrusted rows of docs/design.md §3 (‖ĝ_i‖² < τ·max_j K_jj, `torch_backend.untrusted_rows`)
  and those whose n_i² cancels are redone in torch after `attention` (masks, no host sync: every
  row computed, kept by torch.where): their rows of Q from A', L, sc, m and 1/z under the same
  mask (`q_rows`, `allowed`), then
  x̃_i = Π(x_i + ηΠ(q_i X)) directly, with c1 = 0, c2 = 1 and QL_i ← x̃_iᵀW for `_row_epilogue`,
  c2 = 0 for `_grad_rows`, and their share of dW added from x̃ (`torch_backend.add_direct_grad`).
* On the CPU the kernels run only in Triton's interpreter, when TRITON_INTERPRET=1 was set before
  the kernels were imported and still is (a testing aid; backend="auto" never picks it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .torch_backend import add_direct_grad, factors, grad_norms_and_rows, weight_grad

try:
    import triton

    from . import triton_kernels as kernels
    AVAILABLE, UNAVAILABLE_REASON = True, ""
    #: The kernels were defined for Triton's interpreter (TRITON_INTERPRET=1 at import).
    INTERPRETED = type(kernels._row_prep).__name__ == "InterpretedFunction"
except Exception as exc:  # pragma: no cover - exercised only where triton is missing
    triton = kernels = None
    AVAILABLE, UNAVAILABLE_REASON = False, f"triton is not importable ({exc!r}); pip install triton"
    INTERPRETED = False

DOT_PRECISION = "ieee"


@dataclass(frozen=True)
class Config:
    """Block sizes. Every dimension that feeds tl.dot (m, n, c, v, d) must be ≥ 16 on a GPU."""
    row_m: int = 16     # rows per program in _row_prep / _row_epilogue
    row_c: int = 128    # class tile in _row_prep / _row_epilogue
    block_m: int = 64   # query rows i
    block_n: int = 64   # key rows j
    block_c: int = 32   # class (reduction) tile of S = A' Lᵀ
    block_v: int = 64   # value-column tile of [K | L] in _attention
    block_d: int = 64   # class tile of R in _grad_rows
    row_warps: int = 4  # _row_prep / _row_epilogue
    num_warps: int = 8  # _attention / _grad_rows: at 64×64 fp32 ("ieee") tiles, 4 warps spill on
                        # sm_90 (255 registers + local memory); 8 warps need ~200, no spills


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


def sea_forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None):
    """The backend contract (op/dispatch.py, docs/design.md §5): per-row losses ℓ(x̃_i) (b,),
    dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (d×C) and db = Σ_i D_i (C,), float32; dW and db empty without
    compute_grad, db also without a bias. hyper.group_size G projects every row onto the other
    rows of its group of G consecutive rows only (None: the whole batch)."""
    _check_device(x)
    group = x.shape[0] if hyper.group_size is None else min(hyper.group_size, x.shape[0])
    with torch.no_grad():
        if x.device.type == "cuda":
            with torch.cuda.device(x.device):
                out = _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias,
                               CONFIG)
        else:
            out = _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias,
                           CONFIG)
    return out if bias is not None else (out[0], out[1], out[1].new_empty(0))


def _forward(x, labels, weight, row_scale, hyper, compute_grad, group, bias, cfg: Config):
    """(losses, dW, db) for groups of `group` rows (b: the whole batch)."""
    alpha, eta, lam, delta, negative_only = hyper[:5]
    f32 = torch.float32
    x, w = x.detach().to(f32), weight.detach().to(f32)
    c = w.shape[1]
    bias = (torch.zeros(c, dtype=f32, device=x.device) if bias is None
            else bias.detach().to(device=x.device, dtype=f32).contiguous())
    labels = labels.to(torch.int64).contiguous()
    logits, v = logits_and_gram(x, w)
    nz = (x != 0).any(dim=1).to(f32)  # 1.0 for the rows x_j ≠ 0: the zero rows are masked
    a = row_prep(logits, bias, labels, lam, delta, negative_only, cfg)
    g_norm2, cancel, g_all = grad_norms_and_rows(a, w)
    sc, ql, mz, gh2, xg = attention(a, logits, v, nz, g_norm2, alpha, group, cfg)
    # the cancelling rows (W a'_i ≈ 0, §3): the kernel's scores A'Lᵀ lose ε·κ/α, so their q_i
    # comes from x_jᵀg_i directly (`direct_q_rows`) and their x̃_i is formed directly
    direct = (cancel, g_all, x, g_norm2, alpha)
    every = torch.arange(x.shape[0], device=x.device)
    c1, c2, rows, x_aug = factors(
        x, w, lambda _: q_rows(a, logits, sc, mz, nz, group, every, direct) @ x, ql, gh2, xg,
        v.diagonal(), eta, force=cancel)
    c1, c2 = c1.contiguous(), c2.contiguous()
    losses, d = row_epilogue(logits, bias, labels, ql, c1, c2, row_scale, lam, delta,
                             compute_grad, cfg)
    if not compute_grad:
        return losses, x.new_empty(0), x.new_empty(0)
    c2 = c2.masked_fill(rows, 0)  # their share comes from x̃ directly (c1 = 0 already)
    dw = weight_grad(x, grad_rows(a, logits, nz, sc, mz, d, c1, c2, group, cfg))
    dw = add_direct_grad(dw, x_aug, d)
    return losses, dw, d.sum(dim=0)


def allowed(rows, b, nz, group):
    """(len(rows)×b) bool: Q_ij may be non-zero — j ≠ i, j in i's group of `group` rows, x_j ≠ 0
    (nz_j > 0; the kernels' `_allowed`)."""
    cols = torch.arange(b, device=nz.device)
    return ((cols[None, :] // group == rows[:, None] // group) & (nz > 0)[None, :]
            & (cols[None, :] != rows[:, None]))


def q_rows(a, logits, sc, mz, nz, group, rows, direct=None):
    """Rows `rows` of Q = e^{S − m}/z (S_ij = sc_i a'_i·l_j, −∞ where not `allowed`; mz = (m, 1/z)
    of `attention`), recomputed in torch as `_grad_rows` recomputes them (Q is never stored).
    direct = (cancelling mask (b,), G' = A'Wᵀ (b×d), X, ‖g‖², α): the masked rows' Q_i is the
    masked softmax of x_jᵀg_i/(α‖g_i‖) formed from g_i (torch_backend.grad_norms_and_rows, §3;
    torch.where, no host sync)."""
    m, inv_z = mz
    allow = allowed(rows, logits.shape[0], nz, group)
    s = (a[rows] @ logits.T) * sc[rows, None]
    q = torch.exp(s.masked_fill(~allow, float("-inf")) - m[rows, None]) * inv_z[rows, None]
    if direct is None:
        return q
    cancel, g_all, x, g_norm2, alpha = direct
    sd = (g_all[rows] @ x.T) * (g_norm2[rows].clamp_min(torch.finfo(x.dtype).tiny).rsqrt()
                                / alpha)[:, None]
    sd = sd.masked_fill(~allow, float("-inf"))
    none = ~allow.any(dim=1, keepdim=True)
    qd = torch.softmax(sd.masked_fill(none, 0.0), dim=1).masked_fill(none, 0.0)
    return torch.where(cancel[rows, None], qd, q)


def logits_and_gram(x, w):
    """L = XW (b×C) and the attention values V = [K | L] = [XXᵀ | XW] (b×(b+C))."""
    logits = x @ w
    return logits, torch.cat([x @ x.T, logits], dim=1)


def row_prep(logits, bias, labels, lam, delta, negative_only, cfg: Config):
    """A' (b×C) by _row_prep from Z = (L + 1bᵀ + δ(1−Y))/λ: (softmax(Z) − Y)/(1 − p_y) formed
    exactly (softmax over c ≠ y, −1 at y); negative_only: softmax(Z)/max row-wise."""
    b, c = logits.shape
    a = torch.empty_like(logits)
    kernels._row_prep[(triton.cdiv(b, cfg.row_m),)](
        logits, bias, labels, a, b, c, logits.stride(0), a.stride(0), float(delta), 1.0 / lam,
        NEG_ONLY=bool(negative_only), BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c,
        num_warps=cfg.row_warps)
    return a


def key_tiles(b: int, group: int, cfg: Config) -> int:
    """How many BLOCK_V-wide K-column tiles cover the key range of any row block: all of b for
    the whole batch; for groups of G, a block of block_m rows meets ≤ ⌈(block_m − 1)/G⌉ + 1
    groups, and the range starts up to block_v − 1 columns before them (aligned tiles)."""
    span = group * (triton.cdiv(cfg.block_m - 1, group) + 1)
    return min(triton.cdiv(b, cfg.block_v), triton.cdiv(span + cfg.block_v - 1, cfg.block_v))


def attention(a, logits, v, nz, g_norm2, alpha, group, cfg: Config):
    """_attention: (sc, QL, (m, 1/z), ‖ĝ‖², xᵀĝ) with S_ij = sc_i a'_i·l_j, sc_i = 1/(α‖g_i‖) (0
    for a zero g_i), Q = softmax_j(S) over the other non-zero rows j of i's group, QL (b×C),
    m_i = max_j S_ij and z_i = Σ_j e^{S_ij − m_i} (m = 1/z = 0 for a row without such j). QK is
    formed tile by tile for ‖ĝ_i‖² = Σ_k (QK)_ik Q_ik but never stored."""
    b, c = logits.shape
    f32, dev = torch.float32, logits.device
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(torch.finfo(f32).tiny).rsqrt(), 0)
    sc = (inv_g / alpha).contiguous()
    n_ktiles = key_tiles(b, group, cfg)
    ql = torch.empty(b, c, dtype=f32, device=dev)
    m = torch.empty(b, dtype=f32, device=dev)
    inv_z = torch.empty(b, dtype=f32, device=dev)
    p1 = torch.empty(b, n_ktiles, dtype=f32, device=dev)
    p2 = torch.empty_like(p1)
    grid = (triton.cdiv(b, cfg.block_m), n_ktiles + triton.cdiv(c, cfg.block_v))
    kernels._attention[grid](
        a, logits, v, nz, sc, ql, m, inv_z, p1, p2, b, c, group, n_ktiles,
        a.stride(0), logits.stride(0), v.stride(0), ql.stride(0), p1.stride(0),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_V=cfg.block_v,
        PREC=DOT_PRECISION, num_warps=cfg.num_warps)
    return sc, ql, (m, inv_z), p1.sum(dim=1), p2.sum(dim=1)


def row_epilogue(logits, bias, labels, ql, c1, c2, row_scale, lam, delta, compute_grad,
                 cfg: Config):
    """_row_epilogue: per-row losses and, with compute_grad, D = s(P̃ − Y) (the losses tensor
    stands in for it otherwise), from L̃ = c1 L + c2 QL + 1bᵀ."""
    b, c = logits.shape
    f32, dev = torch.float32, logits.device
    losses = torch.empty(b, dtype=f32, device=dev)
    d = torch.empty_like(logits) if compute_grad else losses
    rs = row_scale.detach().to(device=dev, dtype=f32).contiguous() if compute_grad else losses
    kernels._row_epilogue[(triton.cdiv(b, cfg.row_m),)](
        logits, labels, ql, bias, c1, c2, rs, losses, d, b, c,
        logits.stride(0), ql.stride(0), d.stride(0), float(delta), float(lam), 1.0 / lam,
        GRAD=bool(compute_grad), BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c, num_warps=cfg.row_warps)
    return losses, d if compute_grad else None


def grad_rows(a, logits, nz, sc, mz, d, c1, c2, group, cfg: Config):
    """_grad_rows: R = diag(c1) D + Qᵀ diag(c2) D (b×C), Q recomputed from A', L, sc, m, 1/z over
    each row block's groups."""
    b, c = logits.shape
    r_mat = torch.empty_like(logits)
    kernels._grad_rows[(triton.cdiv(b, cfg.block_n), triton.cdiv(c, cfg.block_d))](
        a, logits, nz, sc, *mz, d, c1, c2, r_mat, b, c, group,
        a.stride(0), logits.stride(0), d.stride(0), r_mat.stride(0),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_D=cfg.block_d,
        PREC=DOT_PRECISION, num_warps=cfg.num_warps)
    return r_mat
