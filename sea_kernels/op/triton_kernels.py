"""The @triton.jit kernels of the `triton` backend (the host side is op/triton_backend.py).

Imported only where triton is importable (triton_backend imports it inside a try). Whether the
kernels run compiled or in Triton's interpreter is fixed when this module is imported: with
TRITON_INTERPRET=1 set by then, every kernel is an interpreter function that runs on CPU tensors.

Four launched kernels, named after the stages of docs/design.md §5, and five device helpers:

    _row_prep      A' = (softmax(Z) − Y)/(1 − p_y) of Z = (L + 1bᵀ + δ(1−Y))/λ: with
                   m' = max_{c≠y} z_c and s_i = Σ_{c≠y} e^{z_c−m'} ≥ 1, a'_c = e^{z_c−m'}/s_i,
                   a'_y = −1 (exact at any margin); NEG_ONLY: softmax(Z)/max
    _attention     online softmax over key blocks j of S_ij = sc_i a'_i·l_j (S_ij = −∞ unless
                   `_allowed`) against the values V = [K | L], one program per (row block, value
                   tile); K tiles give per-tile partials of ‖ĝ_i‖² and x_iᵀĝ_i (no atomics), L
                   tiles QL; the row max m_i and 1/z_i (z_i = Σ_j e^{S_ij − m_i})
    _row_epilogue  L̃ from the host's row factors 1/n, ηr/n (class tiles, twice: max/sum pass
                   over c ≠ y, then D), the loss λ·softplus(t), D = s·sigmoid(t)·(U − Y)
    _grad_rows     R_j = D_j/n_j + Σ_i Q_ij (ηr_i/n_i) D_i, Q recomputed from A', L, m and 1/z
    _scores        S tile = A'[rows] L[cols]ᵀ over class tiles (tl.dot)
    _span          the key range [lo, hi) of the groups a block of rows lies in
    _allowed       Q_ij may be non-zero: j ≠ i, j in i's group, x_j ≠ 0
    _log1p         log(1 + u), u ≥ 0: Taylor series below 0.1, Kahan's form above
    _aug_logits    a class tile of L̃ = c1 L + c2 QL + 1bᵀ

Groups (docs/design.md §3): rows are cut into consecutive groups of G (the host passes G = b for
the whole batch) and row i attends only to the other non-zero rows of its own group, so a row
block visits only the key tiles of [lo, hi) = the groups it intersects, masked per element
(any G); `_grad_rows` likewise. Zero rows (x_j = 0: nz_j = 0) are masked like the diagonal: they add
nothing to ĝ_i, and kept in with S_ij = 0 they would take all of q_i once the other scores are
below the fp32 exp range. A row with no allowed partner gets m = 1/z = 0, Q_i = 0.

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
def _span(first, last, G, b, ALIGN: tl.constexpr):
    """[lo, hi): the rows of the groups of rows first..last (groups of G consecutive rows), lo
    rounded down to a multiple of ALIGN (the tiles stay where the whole batch puts them)."""
    lo = (first // G) * G
    return (lo // ALIGN) * ALIGN, tl.minimum((last // G + 1) * G, b)


@triton.jit
def _allowed(rows, cols, rmask, col_ok, G):
    """Q_ij may be non-zero: i < b, j ≠ i, j in i's group, col_ok_j (j < b and x_j ≠ 0)."""
    same = (rows // G)[:, None] == (cols // G)[None, :]
    return rmask[:, None] & col_ok[None, :] & same & (rows[:, None] != cols[None, :])


@triton.jit
def _key_ok(nz_ptr, cols, limit):
    """j < limit and nz_j > 0 (x_j is not a zero row; nz is 1.0/0.0 from the host)."""
    cmask = cols < limit
    return cmask & (tl.load(nz_ptr + cols, mask=cmask, other=0.0) > 0)


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
def _row_prep(l_ptr, bias_ptr, y_ptr, a_ptr, b, C, stride_l, stride_a, delta, inv_lam,
              NEG_ONLY: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """A' from Z = (L + 1bᵀ + δ(1−Y))/λ (bias_ptr: b, zeros without a bias):
    a'_c = e^{z_c−m'}/s (c ≠ y), a'_y = −1 with m' = max_{c≠y} z_c and s = Σ_{c≠y} e^{z_c−m'} ≥ 1,
    i.e. (P − Y)/(1 − p_y) exactly at every margin. NEG_ONLY: softmax(Z)/max = e^{z_c − max_c z_c}.
    """
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    y = tl.load(y_ptr + rows, mask=rmask, other=-1)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # max over c ≠ y (over all c if NEG_ONLY)
    s = tl.zeros([BLOCK_M], dtype=tl.float32)          # Σ_{c≠y} e^{z_c − m}
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = rmask[:, None] & (cols[None, :] < C)
        is_y = cols[None, :] == y[:, None]
        lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
        lv += tl.load(bias_ptr + cols, mask=cols < C, other=0.0)[None, :]
        z = tl.where(mask, tl.where(is_y, lv, lv + delta) * inv_lam, float("-inf"))
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
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = rmask[:, None] & (cols[None, :] < C)
        is_y = cols[None, :] == y[:, None]
        lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
        lv += tl.load(bias_ptr + cols, mask=cols < C, other=0.0)[None, :]
        z = tl.where(mask, tl.where(is_y, lv, lv + delta) * inv_lam, float("-inf"))
        if NEG_ONLY:
            a = tl.exp(z - m_safe[:, None])
        else:  # z_y may exceed m' by any margin: it is not exponentiated
            e = tl.exp(tl.where(is_y, float("-inf"), z) - m_safe[:, None])
            a = tl.where(is_y, minus_one[:, None], e * inv_s[:, None])
        tl.store(a_ptr + r64[:, None] * stride_a + cols[None, :], a, mask=mask)


@triton.jit
def _attention(a_ptr, l_ptr, v_ptr, nz_ptr, sc_ptr, ql_ptr, m_ptr, iz_ptr, p1_ptr, p2_ptr, b, C,
               G, NKT, stride_a, stride_l, stride_v, stride_ql, stride_p,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
               BLOCK_V: tl.constexpr, PREC: tl.constexpr):
    """(QV)[i, tile] = Σ_j Q_ij V[j, tile], Q = softmax_j(sc_i A'_i·L_j) over the `_allowed` j
    (the other non-zero rows of i's group: nz_j > 0), V = [K | L].

    Also m_i = max_j S_ij and 1/z_i, so that Q_ij = e^{S_ij − m_i}/z_i is recomputed to
    ≈ ε(1 + |S_ij − m_i|) (a single lse = m + log z would put its rounding, ε·|m| with |m| up to
    ‖x‖/α, into every Q_ij of the row alike); m_i = 0 and 1/z_i = 0 when row i has no allowed j
    (Q_i = 0). Value tiles pid < NKT are K columns from the group range (their QK tile stays in
    registers): partials p1 = Σ_k (QK)_ik Q_ik and p2 = Σ_k Q_ik K_ik; the others are L columns,
    stored as QL (b×C). pid 0 (never past the groups) stores m and 1/z.
    """
    pid_t = tl.program_id(1)
    r0 = tl.program_id(0) * BLOCK_M
    rows = r0 + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    last = tl.minimum(r0 + BLOCK_M, b) - 1
    lo, hi = _span(r0, last, G, b, BLOCK_N)
    if pid_t < NKT:   # K columns k of the groups of this row block
        klo, _ = _span(r0, last, G, b, BLOCK_V)
        v0 = klo + pid_t * BLOCK_V
        v_end = hi
        j_end = tl.where(v0 < hi, hi, lo)  # a tile past the groups (NKT is a bound): no work
    else:             # L columns, at b + c in V
        v0 = b + (pid_t - NKT) * BLOCK_V
        v_end = b + C
        j_end = hi
    vcols = v0 + tl.arange(0, BLOCK_V)
    vmask = vcols < v_end
    sc = tl.load(sc_ptr + rows, mask=rmask, other=0.0)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    z = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32)
    for j0 in range(lo, j_end, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < hi
        s = _scores(a_ptr, l_ptr, rows, cols, rmask, cmask, C, stride_a, stride_l,
                    BLOCK_M, BLOCK_N, BLOCK_C, PREC) * sc[:, None]
        valid = _allowed(rows, cols, rmask, _key_ok(nz_ptr, cols, hi), G)
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
    m_fin = tl.where(z > 0, m, 0.0)
    if pid_t == 0:
        tl.store(m_ptr + rows, m_fin, mask=rmask)
        tl.store(iz_ptr + rows, inv_z, mask=rmask)
    if pid_t < NKT:
        sk = _scores(a_ptr, l_ptr, rows, vcols, rmask, vmask, C, stride_a, stride_l,
                     BLOCK_M, BLOCK_V, BLOCK_C, PREC) * sc[:, None]
        valid_k = _allowed(rows, vcols, rmask, _key_ok(nz_ptr, vcols, hi), G)
        q = tl.exp(tl.where(valid_k, sk, float("-inf")) - m_fin[:, None]) * inv_z[:, None]
        k = tl.load(v_ptr + r64[:, None] * stride_v + vcols[None, :],
                    mask=rmask[:, None] & vmask[None, :], other=0.0)
        tl.store(p1_ptr + r64 * stride_p + pid_t, tl.sum(qv * q, 1), mask=rmask)
        tl.store(p2_ptr + r64 * stride_p + pid_t, tl.sum(q * k, 1), mask=rmask)
    else:
        tl.store(ql_ptr + r64[:, None] * stride_ql + (vcols - b)[None, :], qv,
                 mask=rmask[:, None] & vmask[None, :])


@triton.jit
def _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, c1, c2, c0, C, stride_l, stride_ql,
                BLOCK_C: tl.constexpr):
    """Columns c0..c0+BLOCK_C of L̃ = c1 L + c2 QL + 1bᵀ for a row block: (L̃, in-range mask,
    is-label mask)."""
    cols = c0 + tl.arange(0, BLOCK_C)
    mask = rmask[:, None] & (cols[None, :] < C)
    is_y = cols[None, :] == y[:, None]
    lv = tl.load(l_ptr + r64[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
    ql = tl.load(ql_ptr + r64[:, None] * stride_ql + cols[None, :], mask=mask, other=0.0)
    bias = tl.load(bias_ptr + cols, mask=cols < C, other=0.0)
    return c1[:, None] * lv + c2[:, None] * ql + bias[None, :], mask, is_y


@triton.jit
def _row_epilogue(l_ptr, y_ptr, ql_ptr, bias_ptr, c1_ptr, c2_ptr, rs_ptr, loss_ptr, d_ptr, b, C,
                  stride_l, stride_ql, stride_d, delta, lam, inv_lam,
                  GRAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """loss_i = λ·softplus(t_i), t = m' − z̃_y + log s = log Σ_{c≠y} e^{z̃_c − z̃_y} with
    m' = max_{c≠y} z̃_c and s = Σ_{c≠y} e^{z̃_c − m'} ≥ 1, Z̃ = (L̃ + δ(1−Y))/λ, L̃ = c1 L + c2 QL + 1bᵀ
    with the row factors c1 = 1/n, c2 = ηr/n from the host. With GRAD:
    D = s_i·sigmoid(t)·(e^{z̃_c − m'}/s off the label, −1 at it) = s_i (P̃ − Y) exactly."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < b
    r64 = rows.to(tl.int64)
    y = tl.load(y_ptr + rows, mask=rmask, other=-1)
    c1 = tl.load(c1_ptr + rows, mask=rmask, other=0.0)
    c2 = tl.load(c2_ptr + rows, mask=rmask, other=0.0)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # m' = max_{c≠y} z̃_c
    s = tl.zeros([BLOCK_M], dtype=tl.float32)          # Σ_{c≠y} e^{z̃_c − m'}
    zy = tl.zeros([BLOCK_M], dtype=tl.float32)         # z̃_y
    for c0 in range(0, C, BLOCK_C):
        lt, mask, is_y = _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, c1, c2, c0, C,
                                     stride_l, stride_ql, BLOCK_C)
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
        rs = tl.load(rs_ptr + rows, mask=rmask, other=0.0)
        scale = rs * sig
        inv_s = scale / s_safe
        for c0 in range(0, C, BLOCK_C):
            lt, mask, is_y = _aug_logits(l_ptr, ql_ptr, bias_ptr, r64, rmask, y, c1, c2, c0, C,
                                         stride_l, stride_ql, BLOCK_C)
            cols = c0 + tl.arange(0, BLOCK_C)
            zt = tl.where(mask & ~is_y, (lt + delta) * inv_lam, float("-inf"))
            d = tl.where(is_y, -scale[:, None], tl.exp(zt - m_safe[:, None]) * inv_s[:, None])
            tl.store(d_ptr + r64[:, None] * stride_d + cols[None, :], d, mask=mask)


@triton.jit
def _grad_rows(a_ptr, l_ptr, nz_ptr, sc_ptr, m_ptr, iz_ptr, d_ptr, c1_ptr, c2_ptr, r_ptr, b, C, G,
               stride_a, stride_l, stride_d, stride_r,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
               BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    """R_j = c1_j D_j + Σ_i Q_ij c2_i D_i for a block of rows j and a class tile, with
    Q_ij = e^{sc_i A'_i·L_j − m_i}/z_i (`_allowed` i, j) recomputed block by block over the rows i
    of the groups of the block."""
    c0 = tl.program_id(0) * BLOCK_N
    cols = c0 + tl.arange(0, BLOCK_N)
    cmask = cols < b
    c64 = cols.to(tl.int64)
    col_ok = _key_ok(nz_ptr, cols, b)
    dcols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = dcols < C
    lo, hi = _span(c0, tl.minimum(c0 + BLOCK_N, b) - 1, G, b, BLOCK_M)
    acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for i0 in range(lo, hi, BLOCK_M):
        rows = i0 + tl.arange(0, BLOCK_M)
        rmask = rows < hi
        sc = tl.load(sc_ptr + rows, mask=rmask, other=0.0)
        mx = tl.load(m_ptr + rows, mask=rmask, other=0.0)
        iz = tl.load(iz_ptr + rows, mask=rmask, other=0.0)
        c2 = tl.load(c2_ptr + rows, mask=rmask, other=0.0)
        s = _scores(a_ptr, l_ptr, rows, cols, rmask, cmask, C, stride_a, stride_l,
                    BLOCK_M, BLOCK_N, BLOCK_C, PREC) * sc[:, None]
        valid = _allowed(rows, cols, rmask, col_ok, G)
        q = tl.exp(tl.where(valid, s, float("-inf")) - mx[:, None]) * (iz * c2)[:, None]
        d = tl.load(d_ptr + rows[:, None].to(tl.int64) * stride_d + dcols[None, :],
                    mask=rmask[:, None] & dmask[None, :], other=0.0)
        acc += tl.dot(tl.trans(q), d, input_precision=PREC)
    c1 = tl.load(c1_ptr + cols, mask=cmask, other=0.0)
    mask = cmask[:, None] & dmask[None, :]
    dj = tl.load(d_ptr + c64[:, None] * stride_d + dcols[None, :], mask=mask, other=0.0)
    tl.store(r_ptr + c64[:, None] * stride_r + dcols[None, :], acc + c1[:, None] * dj,
             mask=mask)
