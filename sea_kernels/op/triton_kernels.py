"""The @triton.jit kernels of the `triton` backend (the host side is op/triton_backend.py).

Imported only where triton is importable (triton_backend imports it inside a try). Whether the
kernels run compiled or in Triton's interpreter is fixed when this module is imported: with
TRITON_INTERPRET=1 set by then, every kernel is an interpreter function that runs on CPU tensors.

Three launched kernels, one per row block, named after what they produce (docs/design.md §5):

    _prep    A' = (softmax(Z) − Y)/(1 − p_y) of Z = (L + 1bᵀ + δ(1−Y))/λ (exact at any margin:
             softmax over c ≠ y, −1 at y; NEG_ONLY: softmax(Z)/max); with USE_M also
             ‖g_i‖² = a'_iᵀ M a'_i (M = WᵀW) and its rounding scale (Σ_c |a'_ic|‖w_c‖)²;
             kd_j = ‖x_j‖² and the flags nz_j = [x_j ≠ 0] (from K_jj, X itself read only for a
             block with some K_jj = 0; QX: no K, both from X); zeroes the dW buffer of `_stats`
    _probs   S_ij = sc_i a'_i·l_j once per (row block, key block) of the row block's groups,
             sc_i = 1/(α‖g_i‖), masked to `_allowed` (j ≠ i, same group, x_j ≠ 0); the raw S is
             written into the b×G buffer Q, then Q_ij = e^{S_ij − m_i}/z_i in place (two passes
             over the stored row, no recomputation). The cancelling rows (‖g_i‖² < τ·scale) take
             ‖g_i‖ and S_i from g_i = W a'_i directly (in-kernel, only in a block that has one)
    _stats   QK (for ‖ĝ_i‖² = Σ_k (QK)_ik Q_ik), xᵀĝ = Σ_k Q_ik K_ik (QX, d < G: both from
             ĝ = QX tile by tile, no K) and QL (b×C) from the stored Q; the row factors
             c1 = 1/n, c2 = ηr/n; the untrusted rows of docs/design.md §3 (‖ĝ_i‖² <
             τ·max_group K_jj, n² cancelling or underflowing) formed directly in-kernel (ĝ_i =
             q_i X in fp64 dots, x̃_i, QL_i = x̃_iW, their dW share by atomics; masked work, only
             in a block that has one: no host sync); then the loss epilogue of
             L̃ = cl1 L + cl2 QL + 1bᵀ: the losses λ·softplus(t) and D1, D2 (and D) for
             R = D1 + Qᵀ D2

Layout: Q and K are b×G (row i, local column j − G⌊i/G⌋): the block-diagonal part only, O(b·G)
memory (G = b for the whole batch). A tile over global key columns reads them through
`_bd_load` (zero outside the row's group), so a row block that meets two groups is exact.

Dots: every tl.dot runs on tensor cores. fp32 operands use input_precision PREC ("tf32x3":
three TF32 products, the hi·hi + hi·lo + lo·hi split, ≈ fp32 accuracy); the scores S are always
formed from fp32 A' and L (their 1/α amplification wants fp32 accuracy), the value-side dots
(QK, QL, q_i X) cast Q to the values' dtype (bf16/fp16 inputs stay in their dtype, fp32
accumulation; VEMU: the interpreter, which cannot dot bf16, rounds the operands instead).
Classes below the smallest dot tile (C < 16, SMALL_C) are reduced with exact FMA loops, not padded.
"""
import triton
import triton.language as tl


@triton.jit
def _operand(t, DT: tl.constexpr, EMU: tl.constexpr):
    """t as a dot operand of dtype DT (EMU: rounded to DT but kept fp32 — the interpreter)."""
    if EMU:
        return t.to(DT).to(tl.float32)
    return t.to(DT)


@triton.jit
def _bd_load(ptr, stride, rows, cols, rmask, cmask, G):
    """Tile [rows, cols] (global column indices) of a block-diagonal b×b matrix stored as b×G
    (row i, column j − G⌊i/G⌋), zero outside the row's group; fp32."""
    gs = (rows // G) * G
    same = gs[:, None] == ((cols // G) * G)[None, :]
    mask = rmask[:, None] & cmask[None, :] & same
    offs = rows[:, None].to(tl.int64) * stride + (cols[None, :] - gs[:, None])
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _span(first, last, G, b, ALIGN: tl.constexpr):
    """[lo, hi): the rows of the groups of rows first..last (groups of G consecutive rows), lo
    rounded down to a multiple of ALIGN."""
    lo = (first // G) * G
    return (lo // ALIGN) * ALIGN, tl.minimum((last // G + 1) * G, b)


@triton.jit
def _allowed(rows, cols, rmask, col_ok, G):
    """Q_ij may be non-zero: i < b, j ≠ i, j in i's group, col_ok_j (j < b and x_j ≠ 0)."""
    same = (rows // G)[:, None] == (cols // G)[None, :]
    return rmask[:, None] & col_ok[None, :] & same & (rows[:, None] != cols[None, :])


@triton.jit
def _log1p(u):
    """log(1 + u) for u ≥ 0 to a few fp32 ulps: Taylor series below 0.1, above it Kahan's
    log(w)·u/(w − 1), w = fl(1 + u), which cancels the rounding of 1 + u."""
    t = tl.minimum(u, 0.1)
    series = t * (1.0 - t * (1.0 / 2 - t * (1.0 / 3 - t * (1.0 / 4 - t * (
        1.0 / 5 - t * (1.0 / 6 - t * (1.0 / 7 - t * (1.0 / 8 - t / 9))))))))
    w = 1.0 + tl.maximum(u, 0.1)
    return tl.where(u < 0.1, series, tl.log(w) * (tl.maximum(u, 0.1) / (w - 1.0)))


@triton.jit
def _z_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta, inv_lam,
            HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr):
    """Columns c0.. of Z = (L + 1bᵀ + δ(1−Y))/λ (−∞ outside): (z, in-range mask, is-label)."""
    cols = c0 + tl.arange(0, BLOCK_C)
    mask = rmask[:, None] & (cols[None, :] < C)
    is_y = cols[None, :] == y[:, None]
    lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask,
                 other=0.0).to(tl.float32)
    if HAS_BIAS:
        lv += tl.load(bias_ptr + cols, mask=cols < C, other=0.0)[None, :]
    z = tl.where(mask, tl.where(is_y, lv, lv + delta) * inv_lam, float("-inf"))
    return z, mask, is_y


@triton.jit
def _a_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta, inv_lam, m_safe, inv_s,
            minus_one, NEG_ONLY: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr):
    """Columns c0.. of A' (0 outside), given the row max m' and 1/s of `_prep`'s first pass."""
    z, mask, is_y = _z_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta, inv_lam,
                            HAS_BIAS, BLOCK_C)
    if NEG_ONLY:
        a = tl.exp(z - m_safe[:, None])
    else:  # z_y may exceed m' by any margin: it is not exponentiated
        e = tl.exp(tl.where(is_y, float("-inf"), z) - m_safe[:, None])
        a = tl.where(is_y, minus_one[:, None], e * inv_s[:, None])
    return tl.where(mask, a, 0.0), mask


@triton.jit
def _prep(l_ptr, bias_ptr, y_ptr, m_ptr, k_ptr, x_ptr, a_ptr, g2_ptr, s2_ptr, nz_ptr, kd_ptr,
          zero_ptr,
          n_zero, zero_chunk, b, C, D, G, stride_l, stride_m, stride_k, stride_x, stride_a,
          delta, inv_lam,
          NEG_ONLY: tl.constexpr, HAS_BIAS: tl.constexpr, USE_M: tl.constexpr,
          SMALL_C: tl.constexpr, QX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
          BLOCK_CD: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    """A' (stored fp32): a'_c = e^{z_c−m'}/s (c ≠ y), a'_y = −1 with m' = max_{c≠y} z_c and
    s = Σ_{c≠y} e^{z_c−m'} ≥ 1, i.e. (P − Y)/(1 − p_y) exactly at every margin (NEG_ONLY:
    e^{z_c − max_c z_c}). USE_M: ‖g_i‖² = a'_iᵀ M a'_i (class tiles of BLOCK_CD, a dot per
    pair of tiles; SMALL_C: exact FMA loops over the C² entries) and s2_i = (Σ_c |a'_ic|
    √M_cc)². kd_i = ‖x_i‖² (K_ii; QX, no K: from x_i) and nz_i = 1.0 iff x_i ≠ 0 (K_ii > 0, else
    a scan of x_i). Each program also zeroes
    its chunk of the n_zero floats at zero_ptr (the dW buffer `_stats` adds to)."""
    z0 = tl.program_id(0) * zero_chunk
    z1 = tl.minimum(z0 + zero_chunk, n_zero)
    for o in range(z0, z1, BLOCK_M * BLOCK_C):
        offs = o + tl.arange(0, BLOCK_M * BLOCK_C)
        tl.store(zero_ptr + offs, tl.zeros([BLOCK_M * BLOCK_C], dtype=tl.float32), mask=offs < z1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    y = tl.load(y_ptr + rows, mask=rmask, other=-1)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # max over c ≠ y (over all c if NEG_ONLY)
    s = tl.zeros([BLOCK_M], dtype=tl.float32)          # Σ_{c≠y} e^{z_c − m}
    for c0 in range(0, C, BLOCK_C):
        z, mask, is_y = _z_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta,
                                inv_lam, HAS_BIAS, BLOCK_C)
        if not NEG_ONLY:
            z = tl.where(is_y, float("-inf"), z)
        m_new = tl.maximum(m, tl.max(z, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        e = tl.where(is_y, 0.0, tl.exp(z - m_safe[:, None]))
        s = s * tl.exp(m - m_safe) + tl.sum(e, 1)
        m = m_new
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    inv_s = tl.where(s > 0, 1.0 / tl.maximum(s, 1.0), 0.0)  # s ≥ 1 (unused if NEG_ONLY)
    minus_one = tl.where(s > 0, -1.0, 0.0)  # s = 0 only without a class c ≠ y (C = 1): a' = 0
    s_abs = tl.zeros([BLOCK_M], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        a, mask = _a_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta, inv_lam,
                          m_safe, inv_s, minus_one, NEG_ONLY, HAS_BIAS, BLOCK_C)
        cols = c0 + tl.arange(0, BLOCK_C)
        tl.store(a_ptr + r64[:, None] * stride_a + cols[None, :], a, mask=mask)
        if USE_M:
            wn = tl.sqrt(tl.maximum(tl.load(m_ptr + cols.to(tl.int64) * (stride_m + 1),
                                            mask=cols < C, other=0.0), 0.0))
            s_abs += tl.sum(tl.abs(a) * wn[None, :], 1)
    if USE_M:
        g2 = tl.zeros([BLOCK_M], dtype=tl.float32)
        if SMALL_C:   # a'ᵀMa' by exact FMA loops over the stored A' (C < 16)
            tl.debug_barrier()
            for c in range(0, C):
                t = tl.zeros([BLOCK_M], dtype=tl.float32)
                for c2 in range(0, C):
                    t += tl.load(m_ptr + c * stride_m + c2) * tl.load(
                        a_ptr + r64 * stride_a + c2, mask=rmask, other=0.0)
                g2 += t * tl.load(a_ptr + r64 * stride_a + c, mask=rmask, other=0.0)
        else:
            for c1 in range(0, C, BLOCK_CD):
                acc = tl.zeros([BLOCK_M, BLOCK_CD], dtype=tl.float32)
                cc1 = c1 + tl.arange(0, BLOCK_CD)
                for c0 in range(0, C, BLOCK_CD):
                    a0, _ = _a_tile(l_ptr, bias_ptr, r64, rmask, y, c0, C, stride_l, delta,
                                    inv_lam, m_safe, inv_s, minus_one, NEG_ONLY, HAS_BIAS,
                                    BLOCK_CD)
                    cc0 = c0 + tl.arange(0, BLOCK_CD)
                    mt = tl.load(m_ptr + cc0[:, None].to(tl.int64) * stride_m + cc1[None, :],
                                 mask=(cc0[:, None] < C) & (cc1[None, :] < C), other=0.0)
                    acc += tl.dot(a0, mt, input_precision=PREC)
                a1, _ = _a_tile(l_ptr, bias_ptr, r64, rmask, y, c1, C, stride_l, delta,
                                inv_lam, m_safe, inv_s, minus_one, NEG_ONLY, HAS_BIAS, BLOCK_CD)
                g2 += tl.sum(acc * a1, 1)
        tl.store(g2_ptr + rows, g2, mask=rmask)
        tl.store(s2_ptr + rows, s_abs * s_abs, mask=rmask)
    if QX:
        kd = tl.zeros([BLOCK_M], dtype=tl.float32)
        nz = rmask & False
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            xv = tl.load(x_ptr + r64[:, None] * stride_x + dd[None, :],
                         mask=rmask[:, None] & (dd[None, :] < D), other=0.0).to(tl.float32)
            kd += tl.sum(xv * xv, 1)
            nz = nz | (tl.max(tl.abs(xv), 1) > 0)
    else:
        kd = tl.load(k_ptr + r64 * stride_k + rows % G, mask=rmask, other=1.0).to(tl.float32)
        nz = kd > 0
        if tl.min(tl.where(rmask, kd, 1.0)) <= 0:   # a K_ii = 0 in the block: x_i may be tiny
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + tl.arange(0, BLOCK_D)
                xv = tl.load(x_ptr + r64[:, None] * stride_x + dd[None, :],
                             mask=rmask[:, None] & (dd[None, :] < D), other=0.0)
                nz = nz | (tl.max(tl.abs(xv.to(tl.float32)), 1) > 0)
    tl.store(kd_ptr + rows, kd, mask=rmask)
    tl.store(nz_ptr + rows, nz.to(tl.float32), mask=rmask)


@triton.jit
def _key_ok(nz_ptr, cols, limit):
    """j < limit and nz_j > 0 (x_j is not a zero row)."""
    cmask = cols < limit
    return cmask & (tl.load(nz_ptr + cols, mask=cmask, other=0.0) > 0)


@triton.jit
def _g_tile(a_ptr, w_ptr, r64, rmask, d0, C, D, stride_a, stride_w,
            BLOCK_M: tl.constexpr, BLOCK_CD: tl.constexpr, BLOCK_D: tl.constexpr,
            PREC: tl.constexpr):
    """Columns d0.. of G' = A'Wᵀ for a row block (g_i = W a'_i), fp32."""
    dd = d0 + tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_CD):
        cc = c0 + tl.arange(0, BLOCK_CD)
        a = tl.load(a_ptr + r64[:, None] * stride_a + cc[None, :],
                    mask=rmask[:, None] & (cc[None, :] < C), other=0.0)
        wt = tl.load(w_ptr + dd[None, :].to(tl.int64) * stride_w + cc[:, None],
                     mask=(cc[:, None] < C) & (dd[None, :] < D), other=0.0).to(tl.float32)
        acc += tl.dot(a, wt, input_precision=PREC)
    return acc


@triton.jit
def _probs(a_ptr, l_ptr, x_ptr, w_ptr, g2_ptr, s2_ptr, nz_ptr, q_ptr, b, C, D, G, inv_alpha,
           tau, stride_a, stride_l, stride_x, stride_w, stride_q,
           SMALL_C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
           BLOCK_CD: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    """Q (b×G, fp32) = softmax_j(S_i·) over the `_allowed` j, S_ij = sc_i a'_i·l_j computed once
    per (row block, key block) and stored raw, then normalised in place with the row's m and z
    (online over the key blocks). A row without an allowed j gets Q_i = 0. The cancelling rows
    (‖g_i‖² < τ s2_i or not finite) take ‖g_i‖² and S_i = x_jᵀg_i·sc_i from g_i = W a'_i."""
    r0 = tl.program_id(0) * BLOCK_M
    rows = r0 + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    lo, hi = _span(r0, tl.minimum(r0 + BLOCK_M, b) - 1, G, b, BLOCK_N)
    g2 = tl.load(g2_ptr + rows, mask=rmask, other=1.0)
    cancel = rmask & ~(g2 >= tau * tl.load(s2_ptr + rows, mask=rmask, other=0.0))
    any_cancel = tl.max(cancel.to(tl.int32)) > 0
    if any_cancel:
        g2d = tl.zeros([BLOCK_M], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            gt = _g_tile(a_ptr, w_ptr, r64, rmask, d0, C, D, stride_a, stride_w,
                         BLOCK_M, BLOCK_CD, BLOCK_D, PREC)
            g2d += tl.sum(gt * gt, 1)
        g2 = tl.where(cancel, g2d, g2)
    sc = tl.where(g2 > 0, tl.rsqrt(tl.maximum(g2, 1.1754943508222875e-38)), 0.0) * inv_alpha
    gs = (rows // G) * G
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    z = tl.zeros([BLOCK_M], dtype=tl.float32)
    for j0 in range(lo, hi, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < hi
        c64 = cols.to(tl.int64)
        s = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        if SMALL_C:   # C < 16: exact FMA loop over the classes
            for c in range(0, C):
                av = tl.load(a_ptr + r64 * stride_a + c, mask=rmask, other=0.0)
                lv = tl.load(l_ptr + c64 * stride_l + c, mask=cmask, other=0.0)
                s += av[:, None] * lv.to(tl.float32)[None, :]
        else:
            for c0 in range(0, C, BLOCK_CD):
                cc = c0 + tl.arange(0, BLOCK_CD)
                av = tl.load(a_ptr + r64[:, None] * stride_a + cc[None, :],
                             mask=rmask[:, None] & (cc[None, :] < C), other=0.0)
                lt = tl.load(l_ptr + c64[None, :] * stride_l + cc[:, None],
                             mask=(cc[:, None] < C) & cmask[None, :], other=0.0)
                s += tl.dot(av, lt.to(tl.float32), input_precision=PREC)
        if any_cancel:
            sd = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                gt = _g_tile(a_ptr, w_ptr, r64, rmask, d0, C, D, stride_a, stride_w,
                             BLOCK_M, BLOCK_CD, BLOCK_D, PREC)
                dd = d0 + tl.arange(0, BLOCK_D)
                xt = tl.load(x_ptr + c64[None, :] * stride_x + dd[:, None],
                             mask=(dd[:, None] < D) & cmask[None, :], other=0.0)
                sd += tl.dot(gt, xt.to(tl.float32), input_precision=PREC)
            s = tl.where(cancel[:, None], sd, s)
        s = s * sc[:, None]
        valid = _allowed(rows, cols, rmask, _key_ok(nz_ptr, cols, hi), G)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        z = z * tl.exp(m - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
        m = m_new
        same = gs[:, None] == ((cols // G) * G)[None, :]
        tl.store(q_ptr + r64[:, None] * stride_q + (cols[None, :] - gs[:, None]), s,
                 mask=rmask[:, None] & cmask[None, :] & same)
    tl.debug_barrier()   # the raw S of this block, stored above, is read back below
    m_safe = tl.where(z > 0, m, 0.0)
    inv_z = tl.where(z > 0, 1.0 / tl.where(z > 0, z, 1.0), 0.0)
    for j0 in range(0, G, BLOCK_N):
        jl = j0 + tl.arange(0, BLOCK_N)
        mask = rmask[:, None] & (jl[None, :] < G) & ((gs[:, None] + jl[None, :]) < b)
        ptrs = q_ptr + r64[:, None] * stride_q + jl[None, :]
        s = tl.load(ptrs, mask=mask, other=float("-inf"))
        tl.store(ptrs, tl.exp(s - m_safe[:, None]) * inv_z[:, None], mask=mask)


@triton.jit
def _nrm2_step(mx, ssq, v):
    """One tile of a row-wise ‖v‖ without under/overflow (as LAPACK's nrm2): the running
    (max |v_k|, Σ (v_k/max)²); ‖v‖ = max·√Σ."""
    new = tl.maximum(mx, tl.max(tl.abs(v), 1))
    safe = tl.where(new > 0, new, 1.0)
    ratio = mx / safe
    u = v / safe[:, None]
    return new, ssq * ratio * ratio + tl.sum(u * u, 1)


@triton.jit
def _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, c1, c2, c0, C, stride_l, stride_ql,
                HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr):
    """Columns c0..c0+BLOCK_C of L̃ = c1 L + c2 QL + 1bᵀ for a row block: (L̃, in-range mask,
    is-label mask)."""
    cols = c0 + tl.arange(0, BLOCK_C)
    mask = rmask[:, None] & (cols[None, :] < C)
    is_y = cols[None, :] == y[:, None]
    lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask,
                 other=0.0).to(tl.float32)
    ql = tl.load(ql_ptr + r64[:, None] * stride_ql + cols[None, :], mask=mask, other=0.0)
    lt = c1[:, None] * lv + c2[:, None] * ql
    if HAS_BIAS:
        lt += tl.load(bias_ptr + cols, mask=cols < C, other=0.0)[None, :]
    return lt, mask, is_y


@triton.jit
def _qv_tile(q_ptr, v_ptr, rows, rmask, lo, hi, v0, V, G, stride_q, stride_v,
             VDT: tl.constexpr, VEMU: tl.constexpr, BLOCK_M: tl.constexpr,
             BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, PREC: tl.constexpr):
    """Columns v0.. of Q V (fp32) for a row block, V (b×V) dense, over the keys [lo, hi)."""
    vv = v0 + tl.arange(0, BLOCK_V)
    acc = tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32)
    for j0 in range(lo, hi, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < hi
        q = _bd_load(q_ptr, stride_q, rows, cols, rmask, cmask, G)
        v = tl.load(v_ptr + cols[:, None].to(tl.int64) * stride_v + vv[None, :],
                    mask=cmask[:, None] & (vv[None, :] < V), other=0.0)
        acc += tl.dot(_operand(q, VDT, VEMU), _operand(v, VDT, VEMU), input_precision=PREC)
    return acc


@triton.jit
def _gh_tile(q_ptr, x_ptr, rows, rmask, lo, hi, d0, D, G, stride_q, stride_x,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Columns d0.. of ĝ = Q X for a row block, in float64 (products exact, sums in fp64: the
    untrusted rows' ĝ_i cancels, and the fp32 sums' rounding would be amplified by
    Σ_j q_ij‖x_j‖/‖ĝ_i‖); rounded to fp32."""
    dd = d0 + tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float64)
    for j0 in range(lo, hi, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < hi
        q = _bd_load(q_ptr, stride_q, rows, cols, rmask, cmask, G)
        xv = tl.load(x_ptr + cols[:, None].to(tl.int64) * stride_x + dd[None, :],
                     mask=cmask[:, None] & (dd[None, :] < D), other=0.0)
        acc += tl.dot(q.to(tl.float64), xv.to(tl.float64))
    return acc.to(tl.float32)


@triton.jit
def _stats(q_ptr, k_ptr, kd_ptr, l_ptr, x_ptr, w_ptr, y_ptr, bias_ptr, rs_ptr, ql_ptr, loss_ptr,
           d_ptr,
           d1_ptr, d2_ptr, c_ptr, xa_ptr, dwc_ptr, b, C, D, G, eta, tau, delta, lam, inv_lam,
           stride_q, stride_k, stride_l, stride_x, stride_w, stride_ql, stride_d, stride_xa,
           GRAD: tl.constexpr, WRITE_D: tl.constexpr, HAS_BIAS: tl.constexpr, QX: tl.constexpr,
           VDT: tl.constexpr, VEMU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
           BLOCK_V: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
           PREC: tl.constexpr):
    """For a row block: ‖ĝ_i‖² = Σ_k (QK)_ik Q_ik, x_iᵀĝ_i = Σ_k Q_ik K_ik (QX, for d < G: both
    from ĝ = QX formed tile by tile, no K), K_ii = kd_i, QL (stored fp32),
    r = 1/‖ĝ_i‖, n² = K_ii + 2ηr xᵀĝ + η²[ĝ_i ≠ 0], c1 = 1/n, c2 = ηr/n. The untrusted rows
    (‖ĝ_i‖² < τ·max_{j∈group} K_jj, n² < τ(K_ii + η²[ĝ_i ≠ 0]) or < tiny) are formed directly,
    as the torch backend does: ĝ_i = q_i X, v_i = x_i + ηĝ_i/‖ĝ_i‖ (stored at xa), x̃_i = v_i/‖v_i‖
    (norms without under/overflow), QL_i ← x̃_iW with L̃ factors (0, 1), their dW share x̃_i D_iᵀ
    added to dwc (atomics) and R factors (0, 0). c_ptr (4, b): c1, c2 (X̃ = c1 X + c2 QX), and
    the L̃ factors cl1, cl2. Then, from L̃ = cl1 L + cl2 QL + 1bᵀ,
    Z̃ = (L̃ + δ(1−Y))/λ, m' = max_{c≠y} z̃_c, s = Σ_{c≠y} e^{z̃_c − m'}, t = m' − z̃_y + log s:
    loss_i = λ·softplus(t); GRAD: D = s_i·sigmoid(t)·(e^{z̃_c − m'}/s off the label, −1 at it),
    stored as D1 = cl1 D and D2 = c2 D (0 for the untrusted rows; WRITE_D: D too)."""
    r0 = tl.program_id(0) * BLOCK_M
    rows = r0 + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    lo, hi = _span(r0, tl.minimum(r0 + BLOCK_M, b) - 1, G, b, BLOCK_N)
    p1 = tl.zeros([BLOCK_M], dtype=tl.float32)
    p2 = tl.zeros([BLOCK_M], dtype=tl.float32)
    kd = tl.load(kd_ptr + rows, mask=rmask, other=0.0)
    kmax = tl.zeros([BLOCK_M], dtype=tl.float32)
    gs = (rows // G) * G
    for k0 in range(lo, hi, BLOCK_N):
        kc = k0 + tl.arange(0, BLOCK_N)
        kmask = kc < hi
        kdiag = tl.load(kd_ptr + kc, mask=kmask, other=0.0)
        same = gs[:, None] == ((kc // G) * G)[None, :]
        kmax = tl.maximum(kmax, tl.max(tl.where(same & kmask[None, :], kdiag[None, :], 0.0), 1))
        if not QX:
            acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            for j0 in range(lo, hi, BLOCK_N):
                jc = j0 + tl.arange(0, BLOCK_N)
                jmask = jc < hi
                q = _bd_load(q_ptr, stride_q, rows, jc, rmask, jmask, G)
                kt = _bd_load(k_ptr, stride_k, jc, kc, jmask, kmask, G)
                acc += tl.dot(_operand(q, VDT, VEMU), _operand(kt, VDT, VEMU),
                              input_precision=PREC)
            qk = _bd_load(q_ptr, stride_q, rows, kc, rmask, kmask, G)
            kk = _bd_load(k_ptr, stride_k, rows, kc, rmask, kmask, G)
            p1 += tl.sum(acc * qk, 1)
            p2 += tl.sum(qk * kk, 1)
    if QX:
        for d0 in range(0, D, BLOCK_D):
            gh = _qv_tile(q_ptr, x_ptr, rows, rmask, lo, hi, d0, D, G, stride_q, stride_x,
                          VDT, VEMU, BLOCK_M, BLOCK_N, BLOCK_D, PREC)
            dd = d0 + tl.arange(0, BLOCK_D)
            xv = tl.load(x_ptr + r64[:, None] * stride_x + dd[None, :],
                         mask=rmask[:, None] & (dd[None, :] < D), other=0.0).to(tl.float32)
            p1 += tl.sum(gh * gh, 1)
            p2 += tl.sum(xv * gh, 1)
    for c0 in range(0, C, BLOCK_V):
        qv = _qv_tile(q_ptr, l_ptr, rows, rmask, lo, hi, c0, C, G, stride_q, stride_l,
                      VDT, VEMU, BLOCK_M, BLOCK_N, BLOCK_V, PREC)
        cc = c0 + tl.arange(0, BLOCK_V)
        tl.store(ql_ptr + r64[:, None] * stride_ql + cc[None, :], qv,
                 mask=rmask[:, None] & (cc[None, :] < C))
    tiny = 1.1754943508222875e-38
    moved = (p1 > 0).to(tl.float32)
    r = tl.where(p1 > 0, tl.rsqrt(tl.maximum(p1, tiny)), 0.0)
    n2 = kd + 2 * eta * r * p2 + eta * eta * moved
    bad = rmask & ((p1 < tau * kmax) | (n2 < tau * (kd + eta * eta * moved)) | (n2 < tiny))
    c1 = tl.rsqrt(tl.maximum(n2, tiny))
    inv_nd = tl.zeros([BLOCK_M], dtype=tl.float32)   # 1/‖v_i‖ of the untrusted rows, else 0
    any_bad = tl.max(bad.to(tl.int32)) > 0
    if any_bad:   # ĝ_i = q_i X: ‖ĝ_i‖, v_i = x_i + ηrĝ_i (stored), n_i = ‖v_i‖, L̃_i = v_iW/n_i
        gmax = tl.zeros([BLOCK_M], dtype=tl.float32)
        gssq = tl.zeros([BLOCK_M], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            gh = _gh_tile(q_ptr, x_ptr, rows, rmask, lo, hi, d0, D, G, stride_q, stride_x,
                          BLOCK_M, BLOCK_N, BLOCK_D)
            gmax, gssq = _nrm2_step(gmax, gssq, gh)
        gn = gmax * tl.sqrt(gssq)
        rd = tl.where(gn > 0, 1.0 / tl.where(gn > 0, gn, 1.0), 0.0)
        vmax = tl.zeros([BLOCK_M], dtype=tl.float32)
        vssq = tl.zeros([BLOCK_M], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            gh = _gh_tile(q_ptr, x_ptr, rows, rmask, lo, hi, d0, D, G, stride_q, stride_x,
                          BLOCK_M, BLOCK_N, BLOCK_D)
            dd = d0 + tl.arange(0, BLOCK_D)
            dm = rmask[:, None] & (dd[None, :] < D)
            xv = tl.load(x_ptr + r64[:, None] * stride_x + dd[None, :], mask=dm,
                         other=0.0).to(tl.float32)
            v = xv + (eta * rd)[:, None] * gh
            tl.store(xa_ptr + r64[:, None] * stride_xa + dd[None, :], v, mask=dm & bad[:, None])
            vmax, vssq = _nrm2_step(vmax, vssq, v)
        nd = vmax * tl.sqrt(vssq)
        inv_nd = tl.where(bad & (nd > 0), 1.0 / tl.where(nd > 0, nd, 1.0), 0.0)
        r = tl.where(bad, rd, r)
        c1 = tl.where(bad, inv_nd, c1)
        tl.debug_barrier()   # v and this block's QL, stored above, are read/overwritten below
        for c0 in range(0, C, BLOCK_V):
            cc = c0 + tl.arange(0, BLOCK_V)
            acc = tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + tl.arange(0, BLOCK_D)
                va = tl.load(xa_ptr + r64[:, None] * stride_xa + dd[None, :],
                             mask=(rmask & bad)[:, None] & (dd[None, :] < D), other=0.0)
                wt = tl.load(w_ptr + dd[:, None].to(tl.int64) * stride_w + cc[None, :],
                             mask=(dd[:, None] < D) & (cc[None, :] < C), other=0.0)
                acc += tl.dot(_operand(va * inv_nd[:, None], VDT, VEMU), _operand(wt, VDT, VEMU),
                              input_precision=PREC)
            tl.store(ql_ptr + r64[:, None] * stride_ql + cc[None, :], acc,
                     mask=(rmask & bad)[:, None] & (cc[None, :] < C))
    c1 = tl.where(rmask, c1, 0.0)
    c2 = eta * r * c1
    cl1 = tl.where(bad, 0.0, c1)    # L̃ = cl1 L + cl2 QL (QL_i = x̃_iW for the untrusted rows)
    cl2 = tl.where(bad, 1.0, c2)
    tl.store(c_ptr + rows, c1, mask=rmask)
    tl.store(c_ptr + b + rows, c2, mask=rmask)
    tl.store(c_ptr + 2 * b + rows, cl1, mask=rmask)
    tl.store(c_ptr + 3 * b + rows, cl2, mask=rmask)
    tl.debug_barrier()   # QL, stored above, is read back below
    y = tl.load(y_ptr + rows, mask=rmask, other=-1)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # m' = max_{c≠y} z̃_c
    s = tl.zeros([BLOCK_M], dtype=tl.float32)          # Σ_{c≠y} e^{z̃_c − m'}
    zy = tl.zeros([BLOCK_M], dtype=tl.float32)         # z̃_y
    for c0 in range(0, C, BLOCK_C):
        lt, mask, is_y = _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, cl1, cl2, c0, C,
                                     stride_l, stride_ql, HAS_BIAS, BLOCK_C)
        zy += tl.sum(tl.where(is_y & mask, lt * inv_lam, 0.0), 1)
        zt = tl.where(mask & ~is_y, (lt + delta) * inv_lam, float("-inf"))
        m_new = tl.maximum(m, tl.max(zt, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(zt - m_safe[:, None]), 1)
        m = m_new
    valid = rmask & (s > 0)  # s = 0 only for padding rows (or C = 1: no class c ≠ y)
    s_safe = tl.where(valid, s, 1.0)
    m_safe = tl.where(valid, m, 0.0)
    t = tl.where(valid, m_safe - zy + tl.log(s_safe), float("-inf"))
    e_t = tl.exp(-tl.abs(t))                   # e^{−|t|} ∈ [0, 1]
    tl.store(loss_ptr + rows, lam * (tl.maximum(t, 0.0) + _log1p(e_t)), mask=rmask)
    if GRAD:
        sig = tl.where(t >= 0, 1.0 / (1.0 + e_t), e_t / (1.0 + e_t))  # sigmoid(t) = 1 − p̃_y
        scale = tl.load(rs_ptr + rows, mask=rmask, other=0.0) * sig
        inv_s = scale / s_safe
        for c0 in range(0, C, BLOCK_C):
            lt, mask, is_y = _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, cl1, cl2, c0,
                                         C, stride_l, stride_ql, HAS_BIAS, BLOCK_C)
            cols = c0 + tl.arange(0, BLOCK_C)
            zt = tl.where(mask & ~is_y, (lt + delta) * inv_lam, float("-inf"))
            d = tl.where(mask, tl.where(is_y, -scale[:, None],
                                        tl.exp(zt - m_safe[:, None]) * inv_s[:, None]), 0.0)
            offs = r64[:, None] * stride_d + cols[None, :]
            tl.store(d1_ptr + offs, cl1[:, None] * d, mask=mask)
            tl.store(d2_ptr + offs, tl.where(bad, 0.0, c2)[:, None] * d, mask=mask)
            if WRITE_D:
                tl.store(d_ptr + offs, d, mask=mask)
            if any_bad:   # the untrusted rows' share of dW, x̃_i D_iᵀ, from their x̃ directly
                for d0 in range(0, D, BLOCK_D):
                    dd = d0 + tl.arange(0, BLOCK_D)
                    va = tl.load(xa_ptr + r64[:, None] * stride_xa + dd[None, :],
                                 mask=(rmask & bad)[:, None] & (dd[None, :] < D), other=0.0)
                    part = tl.dot(tl.trans(va * inv_nd[:, None]), d, input_precision=PREC)
                    tl.atomic_add(dwc_ptr + dd[:, None].to(tl.int64) * C + cols[None, :], part,
                                  mask=(dd[:, None] < D) & (cols[None, :] < C))
