"""The `torch` backend: the Gram-space stages of docs/design.md §2 as eager PyTorch, one function
per stage name of §5. Exact (float64 stays float64), runs on every device, takes every dtype.

What differs from the common formulation:

* eager: every stage is a few whole-matrix torch ops; Q (b×b) is stored (the fused kernels
  recompute it), and `attention` multiplies it once against the concatenation [K | L].
* `grad_norms` picks the cheaper of the two exact forms by shape: ‖g_i‖² = a'_iᵀ M a'_i with
  M = WᵀW (C×C) when C ≤ 2b, else the squared row norms of G' = A'Wᵀ (b×d).
* b = 1 takes Q = 0 directly (the softmax of an all −∞ row would be NaN).
* Groups (group_size G, op/groups.py): Q and K are kept as their diagonal blocks (`BlockDiag`,
  one batched GEMM per stack of equal-size groups), nothing outside the blocks is formed; the
  untrusted-row floor τ·max_j K_jj takes the max over the row's own group.
* Zero rows (x_j = 0) are masked out of every softmax like the diagonal (`projection`; exact,
  see reference.projection_weights); a row with no non-zero partner in its group has q_i = 0.
* bias b: A' from the logits L + 1bᵀ (`row_prep`) and L̃ + 1bᵀ in `row_epilogue`, but the
  scores S = A'Lᵀ and QL use L = XW (g_i = W a_i has no bias); db = Σ_i D_i.
* The untrusted rows of docs/design.md §3 (`untrusted_rows`: ‖ĝ_i‖² < τ·max_j K_jj, or n_i²
  cancelling) get x̃_i = Π(x_i + ηΠ(q_i X)) formed directly (`direct_x`, in `factors`): then
  L̃_i = x̃_iᵀW and their share of dW is x̃_i D_iᵀ (`add_direct_grad`); where g_i = W a'_i
  cancels, `grad_norms_and_rows` takes ‖g_i‖ and `projection_blocks` the scores S_i from g_i.
  `sea_augment` forms ĝ = QX anyway and normalises every
  row directly.
* No host sync (docs/design.md §3): which rows are untrusted, cancelling or zero is a bool mask
  (b,), never an index list. The direct forms are computed for every row (ĝ = QX and
  Π(x_i + ηΠ(ĝ_i)), G' = A'Wᵀ and G'X_groupᵀ, one batched GEMM each, as costly as K = XXᵀ) and
  taken by torch.where on the masked rows only, so every other row keeps its Gram-space numbers;
  `sea_forward` and `unmoved_forward` read no tensor value on the host.

Its stage functions are shared: the Triton host code uses `grad_norms_and_rows`, `factors`,
`weight_grad` and `add_direct_grad`, the batched engine `TAU`, `loss_terms` and `softplus`, the
fused op's double backward `loss_terms`, and `sea_augment` (the one place a b×d result is formed,
on request) reuses `row_prep`, `grad_norms_and_rows` and `projection_blocks`.
"""
from __future__ import annotations

import torch

from .groups import BlockDiag, group_blocks, join_rows, split_rows
from .input_grad import input_grad as input_grad_of
from .reference import one_hot
from .reference import unit as unit_rows


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


#: τ of docs/design.md §3: a row is untrusted in Gram space when ‖ĝ_i‖² < τ·max_j K_jj (and its
#: ‖g_i‖² and scores when ‖g_i‖² < τ·(Σ_c |a'_ic|‖w_c‖)²).
TAU = {torch.float32: 1e-2, torch.float64: 1e-2}


def logits_and_gram(x, w):
    """L = XW (b×C) and K = XXᵀ (b×b)."""
    return x @ w, x @ x.T


def gram_blocks(x, blocks):
    """The diagonal blocks of K = XXᵀ for the groups `blocks` (op/groups.py), as a BlockDiag."""
    return BlockDiag([torch.bmm(xp, xp.mT) for xp in split_rows(x, blocks)], blocks, x.shape[0])


def nonzero_rows(x):
    """Which rows of X are not exactly zero (b,) bool (always a mask: no host sync)."""
    return x.ne(0).any(dim=1)


def row_prep(logits, y, lam, delta, negative_only):
    """A' (b×C) from Z = (L + δ(1−Y))/λ: a'_c = softmax_{c≠y}(z)_c, a'_y = −1, which is
    (P − Y)/(1 − p_y) without forming the rounding p_y − 1 (docs/design.md §3); S depends only on
    the direction of a'_i and max|a'_i| = 1. negative_only: softmax(Z)/max row-wise."""
    z = (logits + delta * (1 - y)) / lam
    if negative_only:
        a = torch.softmax(z, dim=1)
        return a / a.amax(dim=1, keepdim=True)
    return torch.softmax(z.masked_fill(y.bool(), float("-inf")), dim=1) - y


def grad_norms(a, w):
    """‖g_i‖² = ‖W a'_i‖² (b,): from M = WᵀW when C ≤ 2b, else from A'Wᵀ; the rows where W a'_i
    cancels (`cancelling_rows`) take it from g_i = W a'_i directly."""
    return grad_norms_and_rows(a, w)[0]


def grad_norms_and_rows(a, w):
    """(‖g_i‖² (b,), the cancelling rows as a mask (b,) bool, G' = A'Wᵀ (b×d): every g_i = W a'_i,
    used for the masked rows only). a'_iᵀMa'_i (and the scores
    S_i = a'_iᵀL_jᵀ) carry an absolute error ≈ ε·(Σ_c |a'_ic|‖w_c‖)² (resp. ε·(Σ_c |a'_ic|‖w_c‖)
    ‖x_j‖) against ‖g_i‖² (resp. x_jᵀg_i): the rows with ‖g_i‖² < τ·(Σ_c |a'_ic|‖w_c‖)², where W's
    columns nearly cancel along a'_i (docs/design.md §3, the C++ grad_norms rule), get g_i
    directly: their ‖g_i‖² from it, and `projection_blocks` their scores from g_i X_groupᵀ.
    No host sync: G' is formed for every row (2bdC, the cost of L = XW) and torch.where keeps
    a'_iᵀMa'_i on the other rows."""
    b, c = a.shape
    g = a @ w.T
    direct = g.square().sum(dim=1)
    if c > 2 * b:
        g_norm2 = direct
        w_norms = w.square().sum(dim=0).sqrt()
    else:
        m = w.T @ w
        g_norm2 = ((a @ m) * a).sum(dim=1)
        w_norms = m.diagonal().clamp_min(0).sqrt()
    scale = (a.abs() @ w_norms).square()
    cancel = ~(g_norm2 >= TAU[g_norm2.dtype] * scale)
    return torch.where(cancel, direct, g_norm2), cancel, g


def scores(a, logits, g_norm2, alpha):
    """S = A'Lᵀ/(α‖g_i‖) (x_jᵀg_i = l_jᵀa'_i), per group; a zero g_i gives S_i = 0."""
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(_tiny(g_norm2)).rsqrt(), 0)
    return (a @ logits.mT) * (inv_g / alpha)[..., None]


def projection(a, logits, g_norm2, alpha, keep=None, s=None):
    """Q = softmax_{j≠i, x_j≠0}(S), S = `scores` (or the given s), for one group (a, logits
    (g, C)) or a stack of groups ((n, g, C) → (n, g, g)). S_ii = −∞, and S_ij = −∞ for the zero
    rows (keep[j] false; None: no zero row); a row with no allowed j (b = 1, or only zero
    partners) is Q_i = 0."""
    s = scores(a, logits, g_norm2, alpha) if s is None else s
    if logits.shape[-2] == 1:
        return torch.zeros_like(s)
    s.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
    if keep is None:
        return torch.softmax(s, dim=-1)
    q = torch.softmax(s.masked_fill_(~keep[..., None, :], float("-inf")), dim=-1)
    partners = keep.sum(dim=-1, keepdim=True) - keep.to(torch.int64)
    return q.masked_fill_((partners == 0)[..., None], 0)


def projection_blocks(a, logits, g_norm2, alpha, keep, blocks, direct=None):
    """`projection` on every group of `blocks` (op/groups.py): Q as a BlockDiag. direct =
    (cancelling mask (b,), G' = A'Wᵀ (b×d), X) from `grad_norms_and_rows`: the masked rows'
    scores are x_jᵀg_i/(α‖g_i‖) over their group, formed from g_i directly (S = A'Lᵀ loses them
    when W a'_i cancels); G'X_groupᵀ is one batched GEMM per stack, taken by torch.where on the
    masked rows only (no host sync)."""
    keeps = split_rows(keep, blocks) if keep is not None else [None] * len(blocks)
    if direct is None:
        directs = [None] * len(blocks)
    else:
        cancel, g_all, x = direct
        directs = zip(split_rows(cancel, blocks), split_rows(g_all, blocks),
                      split_rows(x, blocks))
    parts = []
    for ap, lp, gp, mp, dp in zip(split_rows(a, blocks), split_rows(logits, blocks),
                                  split_rows(g_norm2, blocks), keeps, directs):
        s = None
        if dp is not None:
            cp, gr, xp = dp
            inv_g = gp.clamp_min(_tiny(gp)).rsqrt() / alpha
            s = torch.where(cp[..., None], torch.bmm(gr, xp.mT) * inv_g[..., None],
                            scores(ap, lp, gp, alpha))
        parts.append(projection(ap, lp, gp, alpha, mp, s))
    return BlockDiag(parts, blocks, a.shape[0])


def attention(a, logits, k, g_norm2, alpha, keep=None, direct=None):
    """Q (`projection`, per group: k is the BlockDiag of K's diagonal blocks, `gram_blocks`) and
    from Q[K | L] per block: QL (b×C), ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij and x_iᵀĝ_i = Σ_j Q_ij K_ij.
    Returns (Q as a BlockDiag, QL, ‖ĝ‖², xᵀĝ)."""
    q = projection_blocks(a, logits, g_norm2, alpha, keep, k.blocks, direct)
    ql, gh2 = [], []
    for qp, kp, lp in zip(q.parts, k.parts, split_rows(logits, k.blocks)):
        g = kp.shape[-1]
        qkl = torch.bmm(qp, torch.cat([kp, lp], dim=2))
        ql.append(qkl[:, :, g:])
        gh2.append((qkl[:, :, :g] * qp).sum(dim=2))
    return q, join_rows(ql), join_rows(gh2), q.row_sums(k)


def untrusted_rows(gh_norm2, n2, k_diag, eta, k_max=None):
    """The rows (a mask (b,) bool, no host sync) whose Gram-space row factors cannot be trusted
    (docs/design.md §3): ‖ĝ_i‖² = q_iᵀKq_i < τ·max_j K_jj (its absolute error is
    ≈ ε·max_j K_jj; k_max: that max per row, over the row's group, when the batch is grouped), or
    n_i² = K_ii + 2ηr x_iᵀĝ_i + η² < τ·(K_ii + η²) (it cancels) or below the smallest normal
    number (it underflowed, e.g. a zero row moved by a tiny η). τ = TAU[dtype]."""
    tau = TAU[gh_norm2.dtype]
    scale = k_diag + eta * eta * (gh_norm2 > 0).to(gh_norm2.dtype)
    k_max = k_diag.max() if k_max is None else k_max
    return ((gh_norm2 < tau * k_max) | (n2 < tau * scale)
            | (n2 < torch.finfo(n2.dtype).tiny))


def _pow2_above(v):
    """The power of two above each row's largest |entry| (b, 1); 1 for a zero row."""
    _, e = torch.frexp(torch.maximum(v.amax(dim=1, keepdim=True), -v.amin(dim=1, keepdim=True)))
    return torch.ldexp(torch.ones_like(v[:, :1]), e)


def _unit_scaled_(v):
    """Π(v) in place for rows already divided by `_pow2_above` (no norm under- or overflows);
    a zero row stays zero."""
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return v.div_(norm.masked_fill_(norm == 0, 1))


def direct_x(x, gh, eta):
    """x̃_i = Π(x_i + η Π(ĝ_i)) from the rows x and their ĝ = QX (overwritten), paper-literal:
    every Π is `reference.unit`'s (each row divided by a power of two first: a tiny ĝ_i keeps its
    direction; ‖x_i + ηĝ̂_i‖ loses only ε/n_i), computed in place."""
    v = _unit_scaled_(gh.div_(_pow2_above(gh))).mul_(eta).add_(x)       # x + ηΠ(ĝ)
    return _unit_scaled_(v.div_(_pow2_above(v)))


def direct_rows(x, q_rows, rows, eta):
    """`direct_x` for the rows with indices `rows` (q_rows = their rows of Q, dense (m, b)). The
    caller sets their L̃_i = x̃_iᵀW and takes their share of dW from x̃_i."""
    return direct_x(x[rows], q_rows @ x, eta)


def row_factors(gh_norm2, x_dot_gh, k_diag, eta):
    """r = 1/‖ĝ_i‖ (0 for ĝ_i = 0: x_i is not moved) and n_i² = K_ii + 2ηr xᵀĝ + η²[ĝ_i ≠ 0]."""
    moved = gh_norm2 > 0
    r = torch.where(moved, gh_norm2.clamp_min(_tiny(gh_norm2)).rsqrt(), 0)
    return r, k_diag + 2 * eta * r * x_dot_gh + eta * eta * moved.to(gh_norm2.dtype)


def softplus(t):
    """log(1 + e^t) = max(t, 0) + log1p(e^{−|t|}): no overflow, no cancellation."""
    return t.clamp_min(0) + torch.log1p(torch.exp(-t.abs()))


def loss_terms(z, ymask):
    """(t, u) of the loss along dim 1 (docs/design.md §3), z the tempered margin logits, ymask the
    label positions: with m' = max_{c≠y} z_c and s = Σ_{c≠y} e^{z_c − m'} (≥ 1, never subnormal),
    t = m' − z_y + log s = log Σ_{c≠y} e^{z_c − z_y} and u = e^{z − m'}/s off the label, 0 at it.
    Then ℓ = λ·softplus(t), 1 − p_y = sigmoid(t) and P − Y = sigmoid(t)(u − Y), exactly."""
    others = z.masked_fill(ymask, float("-inf"))
    m = others.amax(dim=1, keepdim=True)
    if torch.is_grad_enabled() and z.requires_grad:
        e = torch.exp(others - m)
        s = e.sum(dim=1, keepdim=True)
        zy = z.masked_fill(~ymask, 0).sum(dim=1, keepdim=True)
        return (m - zy + s.log()).squeeze(1), e / s
    # the same numbers without autograd, in place on `others` (on the CPU each fresh b×C buffer
    # costs its page faults)
    zy = z.masked_fill(~ymask, 0).sum(dim=1, keepdim=True)
    e = others.sub_(m).exp_()
    s = e.sum(dim=1, keepdim=True)
    return (m - zy + s.log()).squeeze(1), e.div_(s)


def row_epilogue(logits, ql, c1, c2, y, row_scale, lam, delta, compute_grad=True, bias=None):
    """L̃ = diag(c1) L + diag(c2) QL (c1 = 1/n, c2 = ηr/n; + 1bᵀ with a bias), the per-row
    losses λ·softplus(t_i) (`loss_terms` of Z̃ = (L̃ + δ(1−Y))/λ) and
    D = diag(s)(P̃ − Y) = diag(s·sigmoid(t))(U − Y) (None without compute_grad).
    Returns (losses, D)."""
    aug_logits = c1[:, None] * logits + c2[:, None] * ql
    if bias is not None:
        aug_logits = aug_logits + bias
    return losses_and_d(aug_logits, y, row_scale, lam, delta, compute_grad)


def losses_and_d(aug_logits, y, row_scale, lam, delta, compute_grad=True):
    """The per-row losses λ·softplus(t_i) (`loss_terms` of Z̃ = (L̃ + δ(1−Y))/λ, L̃ with its
    bias) and D = diag(s·sigmoid(t))(U − Y) (None without compute_grad). Returns (losses, D)."""
    plain = lam == 1 and delta == 0          # cross-entropy: Z̃ = L̃ and ℓ = softplus(t), exactly
    t, u = loss_terms(aug_logits if plain else (aug_logits + delta * (1 - y)) / lam, y.bool())
    losses = softplus(t) if plain else lam * softplus(t)
    if not compute_grad:
        return losses, None
    coef = (row_scale.to(aug_logits.dtype) * torch.sigmoid(t))[:, None]
    return losses, u.mul_(coef).addcmul_(y, coef, value=-1)      # u is loss_terms' own tensor


def grad_rows(d, q, c1, c2, rows=None):
    """R = diag(c1) D + Qᵀ diag(c2) D (b×C; q a b×b tensor or a BlockDiag), with c2 = 0 for the
    untrusted rows (`rows`, a mask (b,) bool; their c1 is 0 already: `add_direct_grad` adds
    their share)."""
    if rows is not None:
        c2 = c2.masked_fill(rows, 0)
    if isinstance(q, BlockDiag):
        return (c1[:, None] * d).add_(q.t_matmul(c2[:, None] * d))
    return torch.addmm(c1[:, None] * d, q.T, c2[:, None] * d)


def weight_grad(x, rows):
    """dW = XᵀR (d×C)."""
    return x.T @ rows


def add_direct_grad(dw, x_aug_rows, d_rows):
    """dW += X̃_rowsᵀ D_rows: the untrusted rows' share of X̃ᵀD, from their x̃ directly (x_aug_rows
    zero outside those rows, as `factors` returns it, with every row's D)."""
    return dw.addmm_(x_aug_rows.T, d_rows)


def factors(x, w, q_x, ql, gh_norm2, x_dot_gh, k_diag, eta, k_max=None, force=None):
    """The row factors c1 = 1/n, c2 = ηr/n of L̃ = diag(c1) L + diag(c2) QL; for the untrusted rows
    of §3 (and the rows of the mask `force`, e.g. Triton's cancelling rows) x̃_i is formed
    directly (`direct_x`; q_x(mask) = ĝ = QX (b×d), of which only the masked rows are used) and
    they get c1 = 0, c2 = 1, (QL)_i ← x̃_iᵀW (ql is written in place; k_max as in
    `untrusted_rows`). No host sync: x̃ is formed for every row and kept by torch.where on the
    masked ones. Returns (c1, c2, the untrusted rows as a mask (b,) bool, X̃_direct (b×d): their
    x̃, zero on every other row)."""
    r, n2 = row_factors(gh_norm2, x_dot_gh, k_diag, eta)
    c1 = n2.clamp_min(_tiny(n2)).rsqrt()
    c2 = eta * r * c1
    rows = untrusted_rows(gh_norm2, n2, k_diag, eta, k_max)
    if force is not None:
        rows = rows | force
    x_aug = direct_x(x, q_x(rows), eta).masked_fill_(~rows[:, None], 0)
    ql.copy_(torch.where(rows[:, None], x_aug @ w, ql))
    return c1.masked_fill(rows, 0), c2.masked_fill(rows, 1), rows, x_aug


def _group_max(k_diag, blocks):
    """max_j K_jj over each row's group (b,), or None for one group (the global max)."""
    if len(blocks) == 1 and blocks[0][1] == 1:
        return None
    return join_rows([kd.amax(dim=1, keepdim=True).expand_as(kd)
                      for kd in split_rows(k_diag, blocks)])


def _projected(x, y, w, alpha, lam, delta, negative_only, group_size, bias):
    """logits_and_gram (K per group) → row_prep (A' from L + 1bᵀ) → grad_norms → attention:
    (L, K blocks, Q, QL, ‖ĝ‖², xᵀĝ)."""
    blocks = group_blocks(x.shape[0], group_size)
    logits, k = x @ w, gram_blocks(x, blocks)
    a = row_prep(logits if bias is None else logits + bias, y, lam, delta, negative_only)
    g_norm2, cancel, g_all = grad_norms_and_rows(a, w)
    q, ql, gh_norm2, x_dot_gh = attention(a, logits, k, g_norm2, alpha, nonzero_rows(x),
                                          (cancel, g_all, x))
    return logits, k, q, ql, gh_norm2, x_dot_gh


def _front(x, y, w, alpha, eta, lam, delta, negative_only, group_size=None, bias=None):
    """`_projected` → row factors (`factors`): (L, Q, QL, c1, c2, the untrusted rows' mask,
    their x̃ (b×d, zero on the other rows))."""
    return _front_gh(x, y, w, alpha, eta, lam, delta, negative_only, group_size, bias)[:7]


def _front_gh(x, y, w, alpha, eta, lam, delta, negative_only, group_size=None, bias=None,
              keep_gh=False):
    """`_front` and ĝ = QX, formed once (`factors` overwrites it with the direct x̃; keep_gh:
    it works on a copy and ĝ is returned last, else None)."""
    logits, k, q, ql, gh_norm2, x_dot_gh = _projected(x, y, w, alpha, lam, delta, negative_only,
                                                      group_size, bias)
    k_diag = k.diagonal()
    gh = q.matmul(x)
    c1, c2, rows, x_aug = factors(x, w, lambda _: gh.clone() if keep_gh else gh, ql, gh_norm2,
                                  x_dot_gh, k_diag, eta, _group_max(k_diag, k.blocks))
    return logits, q, ql, c1, c2, rows, x_aug, (gh if keep_gh else None)


def sea_forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None,
                input_grad=False):
    """The backend contract (op/dispatch.py, docs/design.md §5): per-row losses ℓ(x̃_i) (b,),
    dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (d×C) and db = Σ_i D_i (C,), in row_scale's dtype (the compute
    dtype); dW and db empty without compute_grad, db also without a bias; input_grad: also
    dX (b×d, `_gram_input_grad`). hyper: op.call.Hyper (group_size G: groups of G consecutive
    rows projected alone; None: the whole batch)."""
    ct = row_scale.dtype
    x, w = x.to(ct), weight.to(ct)
    bias = None if bias is None else bias.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits, q, ql, c1, c2, rows, x_aug, gh = _front_gh(
        x, y, w, hyper.alpha, hyper.eta, hyper.lam, hyper.delta, hyper.negative_only,
        hyper.group_size, bias, keep_gh=input_grad)
    losses, d = row_epilogue(logits, ql, c1, c2, y, row_scale, hyper.lam, hyper.delta,
                             compute_grad or input_grad, bias)
    dx = (_gram_input_grad(x, w, d, logits, gh, ql, c1, c2, rows, x_aug, hyper.eta),) \
        if input_grad else ()
    if not compute_grad:
        return (losses, x.new_empty(0), x.new_empty(0)) + dx
    dw = add_direct_grad(weight_grad(x, grad_rows(d, q, c1, c2, rows)), x_aug, d)
    return (losses, dw, (x.new_empty(0) if bias is None else d.sum(dim=0))) + dx


def _gram_input_grad(x, w, d, logits, gh, ql, c1, c2, rows, x_aug, eta):
    """dX of `sea_forward` (op/input_grad.py): X̃ = diag(c1) X + diag(c2) QX and L̃ − 1bᵀ =
    diag(c1) L + diag(c2) QL, the untrusted rows (the mask `rows`) with their x̃ as formed (their
    c1 = 0, c2 = 1 and (QL)_i = x̃_iᵀW) and 1/n_i, n_i = x̃_i·(x_i + ηΠ(q_i X)) (0 where n_i = 0),
    kept by torch.where: no host sync. gh: ĝ = QX, as `_front_gh` formed it."""
    xt = torch.where(rows[:, None], x_aug, c1[:, None] * x + c2[:, None] * gh)
    n = (x_aug * (x + eta * unit_rows(gh))).sum(dim=1)
    inv_n = torch.where(rows, torch.where(n > 0, 1 / n.masked_fill(n == 0, 1), 0), c1)
    return input_grad_of(d, w, c1[:, None] * logits + c2[:, None] * ql, xt, inv_n)


def normalized_rows(x):
    """Π(X) as `reference.unit` computes it (each row divided by the power of two above its
    largest entry, exact, then by its norm: none under- or overflows; a zero row stays zero),
    with one b×d buffer and no host sync. Where nothing under- or overflows it is X/‖x_i‖ to the
    bit (numerator and norm scaled by one power of two)."""
    return _unit_scaled_(x / _pow2_above(x))


def unmoved_forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None,
                    input_grad=False):
    """The backend contract for η = 0, where no row moves and no b×b work is needed: x̃ = Π(x)
    (`normalized_rows`, a zero row stays zero), L̃ = X̃W + 1bᵀ, the losses and D of
    `losses_and_d`, dW = X̃ᵀD and db = Σ_i D_i. The fused op runs it for every backend when η is
    0 (op/fused.py `_forward`); `hyper`'s α, the direction and the group size do not matter.
    input_grad: also dX = (γ − β x̃)/‖x‖ (op/input_grad.py; 0 on zero rows)."""
    ct = row_scale.dtype
    x_aug, w = normalized_rows(x.to(ct)), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits = x_aug @ w if bias is None else torch.addmm(bias.to(ct), x_aug, w)
    losses, d = losses_and_d(logits, y, row_scale, hyper.lam, hyper.delta,
                             compute_grad or input_grad)
    dx = ()
    if input_grad:
        norm = torch.linalg.vector_norm(x.to(ct), dim=1)
        inv_n = torch.where(norm > 0, 1 / norm.masked_fill(norm == 0, 1), 0)
        dx = (input_grad_of(d, w, logits if bias is None else logits - bias.to(ct), x_aug,
                            inv_n),)
    if not compute_grad:
        return (losses, x_aug.new_empty(0), x_aug.new_empty(0)) + dx
    return (losses, x_aug.T @ d, (x_aug.new_empty(0) if bias is None else d.sum(dim=0))) + dx


def sea_direction(x, labels, weight, hyper, dtype, bias=None):
    """U = Π(ĝ), ĝ = Q X (b×d, in `dtype`, no gradient): the unit direction each row moves
    along, Q block-diagonal with a group size, A' from XW + 1bᵀ with a bias, zero rows of X left
    out of every span (`projection`). It does not depend on η; `sea_augment` is Π(X + ηU) and
    `op.linear` takes U as the constant of the step."""
    xc, w = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    y = one_hot(labels, w.shape[1], dtype)
    blocks = group_blocks(xc.shape[0], hyper.group_size)
    logits = xc @ w
    a = row_prep(logits if bias is None else logits + bias, y, hyper.lam, hyper.delta,
                 hyper.negative_only)
    g_norm2, cancel, g_all = grad_norms_and_rows(a, w)
    q = projection_blocks(a, logits, g_norm2, hyper.alpha, nonzero_rows(xc), blocks,
                          (cancel, g_all, xc))
    return unit_rows(q.matmul(xc))


def sea_augment(x, labels, weight, hyper, dtype, bias=None):
    """X̃ = Π(X + η Π(ĝ)), ĝ = Q X (`sea_direction`), computed in `dtype` (the compute dtype,
    op/call.py) and returned in x's dtype — the one place a b×d result is formed, on request;
    every row is then normalised from its vectors directly (`reference.unit`, §3), as the
    reference writes it."""
    xc = x.to(dtype)
    if hyper.eta == 0:                  # no row moves: Π(X), no direction (no b×b work)
        return unit_rows(xc).to(x.dtype)
    u = sea_direction(xc, labels, weight, hyper, dtype, bias)
    return unit_rows(xc + hyper.eta * u).to(x.dtype)
