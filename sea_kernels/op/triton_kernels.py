"""The @triton.jit kernels of the `triton` backend (the host side is op/triton_backend.py).

Imported only where triton is importable (triton_backend imports it inside a try). Whether the
kernels run compiled or in Triton's interpreter is fixed when this module is imported: with
TRITON_INTERPRET=1 set by then, every kernel is an interpreter function that runs on CPU tensors.

Four launched kernels, named after the stages of docs/design.md §5, and three device helpers:

    _row_prep      A' = (softmax(Z) − Y)/max|·| row-wise; with s_i = Σ_{c≠y} e^{z_c−m}:
                   a'_c = e^{z_c−m}/s_i, a'_y = −1 (no cancelling 1 − p_y)
    _attention     online softmax over key blocks j of S_ij = sc_i a'_i·l_j (S_ii = −∞) against
                   the values V = [K | L], one program per (row block, value tile): QV, lse, and
                   per-tile partials of ‖ĝ_i‖² and x_iᵀĝ_i (no atomics)
    _row_epilogue  r, 1/n, L̃ (class tiles, twice: max/sum pass, then D), loss via log1p, D
    _grad_rows     R_j = D_j/n_j + Σ_i Q_ij (ηr_i/n_i) D_i, Q recomputed from A', L and lse
    _scores        S tile = A'[rows] L[cols]ᵀ over class tiles (tl.dot)
    _log1p         log(1 + u), Taylor series below 0.1
    _aug_logits    a class tile of L̃ = c1 L + c2 QL

Every tile accumulates in fp32; `PREC` is tl.dot's input_precision (the host passes "ieee").
"""
import triton
import triton.language as tl


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
