"""The `triton` backend: SeA in Gram space with fused, flash-attention-style Triton kernels.

Same contract and corner cases as `torch_sea.sea_forward` (DESIGN.md §2). With L = XW, K = XXᵀ:

    torch   L = X W,  K = X Xᵀ,  ‖g_i‖² = a'_iᵀ (WᵀW) a'_i  (C ≤ 2b)  or  ‖W a'_i‖²  (C > 2b)
    _row_prep      Z = (L + δ(1−Y))/λ,  A' = (softmax(Z) − Y) / max|·|   (row-wise; −Y dropped
                   for negative_only). With s_i = Σ_{c≠y} e^{z_c−m}: a'_c = e^{z_c−m}/s_i,
                   a'_y = −1, so the small entries never pass through a cancelling 1 − p_y.
    _attention     "queries" A'/(α‖g‖), "keys" L, "values" V = [K | L]:
                   S_ij = a'_i·l_j/(α‖g_i‖), S_ii = −∞, online softmax over j → QV = Q[K | L] per
                   column tile, lse_i = log Σ_j e^{S_ij}, and per-tile partial sums of
                   ‖ĝ_i‖² = Σ_k (QK)_ik Q_ik and x_i·ĝ_i = Σ_k Q_ik K_ik (no atomics).
    _row_epilogue  r = 1/‖ĝ‖, n = sqrt(K_ii + 2ηr x·ĝ + η²), L̃ = (L + ηr QL)/n,
                   loss_i = −λ log softmax((L̃ + δ(1−Y))/λ)_{y_i} (as log1p(Σ_{c≠y} p̃_c/p̃_y)),
                   D = s (P̃ − Y) with p̃_y − 1 = −Σ_{c≠y} p̃_c.
    _grad_rows     R = D/n + Qᵀ (ηr/n ∘ D), Q recomputed from A', L and lse (no b×b matrix kept).
    torch   dW = Xᵀ R

Everything accumulates in fp32; bf16/fp16 inputs are upcast (the GEMMs then run in fp32).
Any b ≥ 1 and any C (the class dimension is looped over in tiles; no maximum).
`tl.dot` runs with input_precision=DOT_PRECISION ("ieee": exact fp32 — TF32 would put 1e-3
relative errors into S, which is amplified by 1/α).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl
    AVAILABLE, UNAVAILABLE_REASON = True, ""
except Exception as exc:  # pragma: no cover - exercised only where triton is missing
    triton = tl = None
    AVAILABLE, UNAVAILABLE_REASON = False, f"triton is not importable ({exc!r}); pip install triton"

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

if AVAILABLE:
    @triton.jit
    def _scores(a_ptr, l_ptr, rows, cols, rmask, cmask, C, stride_a, stride_l,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                PREC: tl.constexpr):
        """Σ_c A'[rows, c] L[cols, c]  (BLOCK_M × BLOCK_N, fp32)."""
        s = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            cm = cc < C
            a = tl.load(a_ptr + rows[:, None].to(tl.int64) * stride_a + cc[None, :],
                        mask=rmask[:, None] & cm[None, :], other=0.0)
            lt = tl.load(l_ptr + cols[None, :].to(tl.int64) * stride_l + cc[:, None],
                         mask=cm[:, None] & cmask[None, :], other=0.0)
            s += tl.dot(a, lt, input_precision=PREC)
        return s

    @triton.jit
    def _log1p(u):
        """log(1 + u) for u ≥ 0, accurate to fp32 rounding also for tiny u (Taylor below 0.1)."""
        t = tl.minimum(u, 0.1)
        series = t * (1.0 - t * (1.0 / 2 - t * (1.0 / 3 - t * (1.0 / 4 - t * (
            1.0 / 5 - t * (1.0 / 6 - t * (1.0 / 7 - t * (1.0 / 8 - t / 9))))))))
        return tl.where(u < 0.1, series, tl.log(1.0 + u))

    @triton.jit
    def _row_prep(l_ptr, y_ptr, a_ptr, b, C, stride_l, stride_a, delta, inv_lam,
                  NEG_ONLY: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        """A' = (softmax(Z) − Y)/max|·| row-wise, Z = (L + δ(1−Y))/λ (−Y dropped if NEG_ONLY)."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < b
        r64 = rows.to(tl.int64)
        y = tl.load(y_ptr + rows, mask=rmask, other=-1)
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        s = tl.zeros([BLOCK_M], dtype=tl.float32)  # Σ_{c≠y} e^{z_c − m}
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = rmask[:, None] & (cols[None, :] < C)
            is_y = cols[None, :] == y[:, None]
            lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
            z = tl.where(mask, tl.where(is_y, lv, lv + delta) * inv_lam, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            e = tl.where(is_y, 0.0, tl.exp(z - m_safe[:, None]))
            s = s * tl.exp(m - m_safe) + tl.sum(e, 1)
            m = m_new
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        inv_s = tl.where(s > 0, 1.0 / tl.where(s > 0, s, 1.0), 0.0)
        minus_one = tl.where(s > 0, -1.0, 0.0)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = rmask[:, None] & (cols[None, :] < C)
            is_y = cols[None, :] == y[:, None]
            lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
            z = tl.where(mask, tl.where(is_y, lv, lv + delta) * inv_lam, float("-inf"))
            e = tl.exp(z - m_safe[:, None])
            if NEG_ONLY:
                a = e
            else:
                a = tl.where(is_y, minus_one[:, None], e * inv_s[:, None])
            tl.store(a_ptr + r64[:, None] * stride_a + cols[None, :], a, mask=mask)

    @triton.jit
    def _attention(a_ptr, l_ptr, v_ptr, sc_ptr, qv_ptr, lse_ptr, p1_ptr, p2_ptr, b, C, NV,
                   stride_a, stride_l, stride_v, stride_qv, stride_p,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_V: tl.constexpr, PREC: tl.constexpr):
        """QV[i, tile] = Σ_j Q_ij V[j, tile] with Q = softmax_{j≠i}(sc_i A'_i·L_j), V = [K | L].

        Also lse_i (+inf when row i has no j ≠ i, so that Q = e^{S − lse} = 0) and, for tiles
        that cover K-columns k < b, partials p1 = Σ_k (QK)_ik Q_ik and p2 = Σ_k Q_ik K_ik.
        """
        pid_t = tl.program_id(1)
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < b
        r64 = rows.to(tl.int64)
        vcols = pid_t * BLOCK_V + tl.arange(0, BLOCK_V)
        vmask = vcols < NV
        sc = tl.load(sc_ptr + rows, mask=rmask, other=0.0)
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        z = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32)
        for j0 in range(0, b, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            cmask = cols < b
            s = _scores(a_ptr, l_ptr, rows, cols, rmask, cmask, C, stride_a, stride_l,
                        BLOCK_M, BLOCK_N, BLOCK_C, PREC) * sc[:, None]
            valid = cmask[None, :] & (rows[:, None] != cols[None, :])
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            scale = tl.exp(m - m_safe)
            p = tl.exp(s - m_safe[:, None])
            z = z * scale + tl.sum(p, 1)
            v = tl.load(v_ptr + cols[:, None].to(tl.int64) * stride_v + vcols[None, :],
                        mask=cmask[:, None] & vmask[None, :], other=0.0)
            acc = acc * scale[:, None] + tl.dot(p, v, input_precision=PREC)
            m = m_new
        z_safe = tl.where(z > 0, z, 1.0)
        inv_z = tl.where(z > 0, 1.0 / z_safe, 0.0)
        qv = acc * inv_z[:, None]
        tl.store(qv_ptr + r64[:, None] * stride_qv + vcols[None, :], qv,
                 mask=rmask[:, None] & vmask[None, :])
        lse = tl.where(z > 0, m + tl.log(z_safe), float("inf"))
        if pid_t == 0:
            tl.store(lse_ptr + rows, lse, mask=rmask)
        if pid_t * BLOCK_V < b:
            kmask = vcols < b
            sk = _scores(a_ptr, l_ptr, rows, vcols, rmask, kmask, C, stride_a, stride_l,
                         BLOCK_M, BLOCK_V, BLOCK_C, PREC) * sc[:, None]
            valid_k = rmask[:, None] & kmask[None, :] & (rows[:, None] != vcols[None, :])
            q = tl.exp(tl.where(valid_k, sk, float("-inf")) - lse[:, None])
            k = tl.load(v_ptr + r64[:, None] * stride_v + vcols[None, :],
                        mask=rmask[:, None] & kmask[None, :], other=0.0)
            tl.store(p1_ptr + r64 * stride_p + pid_t, tl.sum(qv * q, 1), mask=rmask)
            tl.store(p2_ptr + r64 * stride_p + pid_t, tl.sum(q * k, 1), mask=rmask)

    @triton.jit
    def _aug_logits(l_ptr, qv_ptr, r64, rmask, y, c1, c2, c0, b, C, stride_l, stride_qv,
                    BLOCK_C: tl.constexpr):
        """Columns c0..c0+BLOCK_C of L̃ = c1 L + c2 QL for a row block: (L̃, in-range mask,
        is-label mask)."""
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = rmask[:, None] & (cols[None, :] < C)
        is_y = cols[None, :] == y[:, None]
        lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
        ql = tl.load(qv_ptr + r64[:, None] * stride_qv + b + cols[None, :], mask=mask, other=0.0)
        return c1[:, None] * lv + c2[:, None] * ql, mask, is_y

    @triton.jit
    def _row_epilogue(l_ptr, y_ptr, qv_ptr, v_ptr, gh2_ptr, xg_ptr, rs_ptr, loss_ptr, d_ptr,
                      c1_ptr, c2_ptr, b, C, stride_l, stride_qv, stride_v, stride_d,
                      eta, delta, lam, inv_lam,
                      GRAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        """loss_i = −λ log softmax(Z̃_i)_{y_i}, Z̃ = (L̃ + δ(1−Y))/λ, L̃ = c1 L + c2 QL, where
        c1 = 1/n, c2 = ηr/n, r = 1/‖ĝ‖ (0 if ĝ = 0), n² = K_ii + 2ηr x·ĝ + η²[ĝ ≠ 0].
        With GRAD: D = s (softmax(Z̃) − Y) and the row factors c1, c2 for _grad_rows."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < b
        r64 = rows.to(tl.int64)
        y = tl.load(y_ptr + rows, mask=rmask, other=-1)
        gh2 = tl.load(gh2_ptr + rows, mask=rmask, other=0.0)
        xg = tl.load(xg_ptr + rows, mask=rmask, other=0.0)
        kii = tl.load(v_ptr + r64 * stride_v + rows, mask=rmask, other=1.0)
        tiny = 1.1754943508222875e-38
        moved = gh2 > 0
        r = tl.where(moved, tl.rsqrt(tl.maximum(gh2, tiny)), 0.0)
        n2 = kii + 2.0 * eta * r * xg + tl.where(moved, eta * eta, 0.0)
        c1 = tl.rsqrt(tl.maximum(n2, tiny))
        c2 = eta * r * c1
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        s = tl.zeros([BLOCK_M], dtype=tl.float32)   # Σ_{c≠y} e^{z̃_c − m}
        zy = tl.zeros([BLOCK_M], dtype=tl.float32)  # z̃_y
        for c0 in range(0, C, BLOCK_C):
            lt, mask, is_y = _aug_logits(l_ptr, qv_ptr, r64, rmask, y, c1, c2, c0, b, C,
                                         stride_l, stride_qv, BLOCK_C)
            zt = tl.where(mask, tl.where(is_y, lt, lt + delta) * inv_lam, float("-inf"))
            m_new = tl.maximum(m, tl.max(zt, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            e = tl.where(is_y, 0.0, tl.exp(zt - m_safe[:, None]))
            s = s * tl.exp(m - m_safe) + tl.sum(e, 1)
            zy += tl.sum(tl.where(is_y & mask, zt, 0.0), 1)
            m = m_new
        # −log p̃_y = log1p(Σ_{c≠y} e^{z̃_c − z̃_y}): no cancellation when p̃_y ≈ 1
        gap = tl.where(rmask, m - zy, 0.0)
        s_all = s + tl.exp(-gap)
        nll = tl.where(gap > 20.0, gap + tl.log(s_all), _log1p(s * tl.exp(tl.minimum(gap, 20.0))))
        tl.store(loss_ptr + rows, lam * nll, mask=rmask)
        if GRAD:
            lse = tl.where(rmask, m + tl.log(s_all), 0.0)
            dy = -s / tl.where(rmask, s_all, 1.0)  # p̃_y − 1 = −Σ_{c≠y} p̃_c
            rs = tl.load(rs_ptr + rows, mask=rmask, other=0.0)
            tl.store(c1_ptr + rows, c1, mask=rmask)
            tl.store(c2_ptr + rows, c2, mask=rmask)
            for c0 in range(0, C, BLOCK_C):
                lt, mask, is_y = _aug_logits(l_ptr, qv_ptr, r64, rmask, y, c1, c2, c0, b, C,
                                             stride_l, stride_qv, BLOCK_C)
                cols = c0 + tl.arange(0, BLOCK_C)
                zt = tl.where(mask & ~is_y, (lt + delta) * inv_lam, float("-inf"))
                d = tl.where(is_y, dy[:, None], tl.exp(zt - lse[:, None])) * rs[:, None]
                tl.store(d_ptr + r64[:, None] * stride_d + cols[None, :], d, mask=mask)

    @triton.jit
    def _grad_rows(a_ptr, l_ptr, sc_ptr, lse_ptr, d_ptr, c1_ptr, c2_ptr, r_ptr, b, C,
                   stride_a, stride_l, stride_d, stride_r,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_D: tl.constexpr, PREC: tl.constexpr):
        """R_j = c1_j D_j + Σ_i Q_ij c2_i D_i for a block of rows j and a class tile, with
        Q_ij = e^{sc_i A'_i·L_j − lse_i} (j ≠ i) recomputed block by block."""
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cmask = cols < b
        c64 = cols.to(tl.int64)
        dcols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = dcols < C
        acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        for i0 in range(0, b, BLOCK_M):
            rows = i0 + tl.arange(0, BLOCK_M)
            rmask = rows < b
            sc = tl.load(sc_ptr + rows, mask=rmask, other=0.0)
            lse = tl.load(lse_ptr + rows, mask=rmask, other=float("inf"))
            c2 = tl.load(c2_ptr + rows, mask=rmask, other=0.0)
            s = _scores(a_ptr, l_ptr, rows, cols, rmask, cmask, C, stride_a, stride_l,
                        BLOCK_M, BLOCK_N, BLOCK_C, PREC) * sc[:, None]
            valid = rmask[:, None] & cmask[None, :] & (rows[:, None] != cols[None, :])
            q = tl.exp(tl.where(valid, s, float("-inf")) - lse[:, None]) * c2[:, None]
            d = tl.load(d_ptr + rows[:, None].to(tl.int64) * stride_d + dcols[None, :],
                        mask=rmask[:, None] & dmask[None, :], other=0.0)
            acc += tl.dot(tl.trans(q), d, input_precision=PREC)
        c1 = tl.load(c1_ptr + cols, mask=cmask, other=0.0)
        mask = cmask[:, None] & dmask[None, :]
        dj = tl.load(d_ptr + c64[:, None] * stride_d + dcols[None, :], mask=mask, other=0.0)
        tl.store(r_ptr + c64[:, None] * stride_r + dcols[None, :], acc + c1[:, None] * dj,
                 mask=mask)


def _check(x, weight):
    if not AVAILABLE:
        raise ValueError(f"backend='triton' is not available: {UNAVAILABLE_REASON}")
    if x.dtype == torch.float64 or weight.dtype == torch.float64:
        raise TypeError("backend='triton' computes in float32 and does not take float64 inputs; "
                        "use backend='torch' or backend='cpp' for float64")
    if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for "
                         f"testing), got tensors on {x.device}; use backend='cpp' or 'torch' on "
                         "the CPU")


def sea_forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only=False,
                compute_grad=True):
    """Per-row losses ℓ(x̃_i) (b,) and dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (d×C; empty when not
    compute_grad), both float32 — the contract of `torch_sea.sea_forward`."""
    _check(x, weight)
    with torch.no_grad():
        if x.device.type == "cuda":
            with torch.cuda.device(x.device):
                return _forward(x, labels, weight, row_scale, alpha, eta, lam, delta,
                                negative_only, compute_grad, CONFIG)
        return _forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only,
                        compute_grad, CONFIG)


def _forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only, compute_grad,
             cfg: Config):
    f32 = torch.float32
    x, w = x.detach().to(f32), weight.detach().to(f32)
    labels = labels.to(torch.int64).contiguous()
    b, c = x.shape[0], w.shape[1]
    logits = x @ w                                         # L (b×C)
    v = torch.cat([x @ x.T, logits], dim=1)                # V = [K | L] (b×(b+C))

    a = torch.empty_like(logits)                           # A' (b×C)
    grid_rows = (triton.cdiv(b, cfg.row_m),)
    _row_prep[grid_rows](logits, labels, a, b, c, logits.stride(0), a.stride(0), float(delta),
                         1.0 / lam, NEG_ONLY=bool(negative_only), BLOCK_M=cfg.row_m,
                         BLOCK_C=cfg.row_c, num_warps=cfg.row_warps)

    if c <= 2 * b:
        g_norm2 = ((a @ (w.T @ w)) * a).sum(dim=1)
    else:
        g_norm2 = (a @ w.T).square().sum(dim=1)
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(torch.finfo(f32).tiny).rsqrt(), 0)
    sc = (inv_g / alpha).contiguous()                      # S_ij = sc_i a'_i·l_j

    nv = b + c
    n_tiles, n_ktiles = triton.cdiv(nv, cfg.block_v), triton.cdiv(b, cfg.block_v)
    qv = torch.empty(b, nv, dtype=f32, device=x.device)
    lse = torch.empty(b, dtype=f32, device=x.device)
    p1 = torch.empty(b, n_ktiles, dtype=f32, device=x.device)
    p2 = torch.empty_like(p1)
    _attention[(triton.cdiv(b, cfg.block_m), n_tiles)](
        a, logits, v, sc, qv, lse, p1, p2, b, c, nv,
        a.stride(0), logits.stride(0), v.stride(0), qv.stride(0), p1.stride(0),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_V=cfg.block_v,
        PREC=DOT_PRECISION, num_warps=cfg.num_warps)
    gh2, xg = p1.sum(dim=1), p2.sum(dim=1)                 # ‖ĝ_i‖², x_i·ĝ_i

    losses = torch.empty(b, dtype=f32, device=x.device)
    d = torch.empty_like(logits) if compute_grad else losses
    c1 = torch.empty(b, dtype=f32, device=x.device) if compute_grad else losses
    c2 = torch.empty_like(c1) if compute_grad else losses
    rs = row_scale.detach().to(device=x.device, dtype=f32).contiguous() if compute_grad else losses
    _row_epilogue[grid_rows](
        logits, labels, qv, v, gh2, xg, rs, losses, d, c1, c2, b, c,
        logits.stride(0), qv.stride(0), v.stride(0), d.stride(0),
        float(eta), float(delta), float(lam), 1.0 / lam,
        GRAD=bool(compute_grad), BLOCK_M=cfg.row_m, BLOCK_C=cfg.row_c, num_warps=cfg.row_warps)
    if not compute_grad:
        return losses, x.new_empty(0)

    r_mat = torch.empty_like(logits)                       # R (b×C)
    _grad_rows[(triton.cdiv(b, cfg.block_n), triton.cdiv(c, cfg.block_d))](
        a, logits, sc, lse, d, c1, c2, r_mat, b, c,
        a.stride(0), logits.stride(0), d.stride(0), r_mat.stride(0),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_D=cfg.block_d,
        PREC=DOT_PRECISION, num_warps=cfg.num_warps)
    return losses, x.T @ r_mat
