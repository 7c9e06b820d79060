"""The `torch` backend: the Gram-space stages of docs/design.md §2 as eager PyTorch, one function
per stage name of §5. Exact (float64 stays float64), runs on every device, takes every dtype.

What differs from the common formulation:

* eager: every stage is a few whole-matrix torch ops; Q (b×b) is stored (the fused kernels
  recompute it), and `attention` multiplies it once against the concatenation [K | L].
* `grad_norms` picks the cheaper of the two exact forms by shape: ‖g_i‖² = a'_iᵀ M a'_i with
  M = WᵀW (C×C) when C ≤ 2b, else the squared row norms of G' = A'Wᵀ (b×d).
* b = 1 takes Q = 0 directly (the softmax of an all −∞ row would be NaN).
* The untrusted rows of docs/design.md §3 (`untrusted_rows`: ‖ĝ_i‖² < τ·max_j K_jj, or n_i²
  cancelling) get x̃_i = Π(x_i + ηΠ(q_i X)) formed directly (`direct_rows`, in `factors`): then
  L̃_i = x̃_iᵀW and their share of dW is x̃_i D_iᵀ (`add_direct_grad`); `grad_norms` takes ‖g_i‖
  from g_i = W a'_i where a'ᵀMa' cancels. `sea_augment` forms ĝ = QX anyway and normalises every
  row directly.

Its stage functions are shared: the Triton host code uses `grad_norms`, `weight_grad`,
`untrusted_rows` and `add_direct_grad`, the batched engine `TAU`, `loss_terms` and `softplus`, the
fused op's double backward `loss_terms`, and `sea_augment` (the one place a b×d result is formed,
on request) reuses `row_prep`, `grad_norms` and `projection`.
"""
from __future__ import annotations

import torch

from .reference import one_hot
from .reference import unit as unit_rows


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 inputs accumulate in fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


#: τ of docs/design.md §3: a row is untrusted in Gram space when ‖ĝ_i‖² < τ·max_j K_jj (and its
#: ‖g_i‖² when a'_iᵀMa'_i < τ·max_c M_cc·‖a'_i‖₁²).
TAU = {torch.float32: 1e-2, torch.float64: 1e-2}


def logits_and_gram(x, w):
    """L = XW (b×C) and K = XXᵀ (b×b)."""
    return x @ w, x @ x.T


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
    """‖g_i‖² = ‖W a'_i‖² (b,): from M = WᵀW when C ≤ 2b, else from A'Wᵀ. a'_iᵀMa'_i has an
    absolute error ≈ ε·max_c M_cc·‖a'_i‖₁²; rows below τ times that scale (W's columns nearly
    cancel along a'_i, docs/design.md §3) take ‖g_i‖² from g_i = W a'_i directly."""
    b, c = a.shape
    if c > 2 * b:
        return (a @ w.T).square().sum(dim=1)
    m = w.T @ w
    g_norm2 = ((a @ m) * a).sum(dim=1)
    scale = m.diagonal().max() * a.abs().sum(dim=1).square()
    rows = torch.nonzero(g_norm2 < TAU[g_norm2.dtype] * scale).flatten()
    if rows.numel():
        g_norm2[rows] = (a[rows] @ w.T).square().sum(dim=1)
    return g_norm2


def projection(a, logits, g_norm2, alpha):
    """Q = softmax_{j≠i}(S), S = A'Lᵀ/(α‖g_i‖) (S_ii = −∞; a zero g_i gives S_i = 0; b = 1:
    Q = 0)."""
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(_tiny(g_norm2)).rsqrt(), 0)
    s = (a @ logits.T) * (inv_g / alpha)[:, None]
    if logits.shape[0] == 1:
        return torch.zeros_like(s)
    return torch.softmax(s.fill_diagonal_(float("-inf")), dim=1)


def attention(a, logits, k, g_norm2, alpha):
    """Q (`projection`) and from Q[K | L]: QL (b×C), ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij and
    x_iᵀĝ_i = Σ_j Q_ij K_ij. Returns (Q, QL, ‖ĝ‖², xᵀĝ)."""
    b = logits.shape[0]
    q = projection(a, logits, g_norm2, alpha)
    qkl = q @ torch.cat([k, logits], dim=1)
    qk, ql = qkl[:, :b], qkl[:, b:]
    return q, ql, (qk * q).sum(dim=1), (q * k).sum(dim=1)


def untrusted_rows(gh_norm2, n2, k_diag, eta):
    """Indices of the rows whose Gram-space row factors cannot be trusted (docs/design.md §3):
    ‖ĝ_i‖² = q_iᵀKq_i < τ·max_j K_jj (its absolute error is ≈ ε·max_j K_jj), or
    n_i² = K_ii + 2ηr x_iᵀĝ_i + η² < τ·(K_ii + η²) (it cancels) or below the smallest normal
    number (it underflowed, e.g. a zero row moved by a tiny η). τ = TAU[dtype]; one host sync on
    a GPU."""
    tau = TAU[gh_norm2.dtype]
    scale = k_diag + eta * eta * (gh_norm2 > 0).to(gh_norm2.dtype)
    bad = ((gh_norm2 < tau * k_diag.max()) | (n2 < tau * scale)
           | (n2 < torch.finfo(n2.dtype).tiny))
    return torch.nonzero(bad).flatten()


def direct_rows(x, q_rows, rows, eta):
    """x̃_i = Π(x_i + η Π(ĝ_i)), ĝ_i = q_i X, formed directly for the untrusted `rows` (q_rows =
    their rows of Q), paper-literal (Π = `reference.unit`, rescaled by a power of two first: a
    tiny ĝ_i keeps its direction; ‖x_i + ηĝ̂_i‖ loses only ε/n_i). The caller sets their
    L̃_i = x̃_iᵀW and takes their share of dW from x̃_i."""
    return unit_rows(x[rows] + eta * unit_rows(q_rows @ x))


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
    e = torch.exp(others - m)
    s = e.sum(dim=1, keepdim=True)
    zy = z.masked_fill(~ymask, 0).sum(dim=1, keepdim=True)
    return (m - zy + s.log()).squeeze(1), e / s


def row_epilogue(logits, ql, c1, c2, y, row_scale, lam, delta, compute_grad=True):
    """L̃ = diag(c1) L + diag(c2) QL (c1 = 1/n, c2 = ηr/n), the per-row losses λ·softplus(t_i)
    (`loss_terms` of Z̃ = (L̃ + δ(1−Y))/λ) and D = diag(s)(P̃ − Y) = diag(s·sigmoid(t))(U − Y)
    (None without compute_grad). Returns (losses, D)."""
    aug_logits = c1[:, None] * logits + c2[:, None] * ql
    t, u = loss_terms((aug_logits + delta * (1 - y)) / lam, y.bool())
    losses = lam * softplus(t)
    if not compute_grad:
        return losses, None
    return losses, (row_scale.to(logits.dtype) * torch.sigmoid(t))[:, None] * (u - y)


def grad_rows(d, q, c1, c2, rows=None):
    """R = diag(c1) D + Qᵀ diag(c2) D (b×C), with c2 = 0 for the untrusted `rows` (their c1 is 0
    already: `add_direct_grad` adds their share)."""
    if rows is not None and rows.numel():
        c2 = c2.index_fill(0, rows, 0)
    return torch.addmm(c1[:, None] * d, q.T, c2[:, None] * d)


def weight_grad(x, rows):
    """dW = XᵀR (d×C)."""
    return x.T @ rows


def add_direct_grad(dw, x_aug_rows, d_rows):
    """dW += X̃_rowsᵀ D_rows: the untrusted rows' share of X̃ᵀD, from their x̃ directly."""
    return dw.addmm_(x_aug_rows.T, d_rows)


def factors(x, w, q_rows, ql, gh_norm2, x_dot_gh, k_diag, eta):
    """The row factors c1 = 1/n, c2 = ηr/n of L̃ = diag(c1) L + diag(c2) QL; for the untrusted rows
    of §3 x̃_i is formed directly (`direct_rows`, q_rows(rows) = those rows of Q) and they get
    c1 = 0, c2 = 1, (QL)_i ← x̃_iᵀW (ql is written in place). Returns (c1, c2, untrusted rows,
    their x̃ or None)."""
    r, n2 = row_factors(gh_norm2, x_dot_gh, k_diag, eta)
    c1 = n2.clamp_min(_tiny(n2)).rsqrt()
    c2 = eta * r * c1
    rows = untrusted_rows(gh_norm2, n2, k_diag, eta)
    if not rows.numel():
        return c1, c2, rows, None
    x_aug = direct_rows(x, q_rows(rows), rows, eta)
    ql[rows] = x_aug @ w
    c1[rows], c2[rows] = 0, 1
    return c1, c2, rows, x_aug


def _front(x, y, w, alpha, eta, lam, delta, negative_only):
    """logits_and_gram → row_prep → grad_norms → attention → row factors (`factors`):
    (L, Q, QL, c1, c2, untrusted rows, their x̃)."""
    logits, k = logits_and_gram(x, w)
    a = row_prep(logits, y, lam, delta, negative_only)
    q, ql, gh_norm2, x_dot_gh = attention(a, logits, k, grad_norms(a, w), alpha)
    c1, c2, rows, x_aug = factors(x, w, lambda rows: q[rows], ql, gh_norm2, x_dot_gh,
                                  k.diagonal(), eta)
    return logits, q, ql, c1, c2, rows, x_aug


def sea_forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only=False,
                compute_grad=True):
    """Per-row losses ℓ(x̃_i) and dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (empty when not compute_grad), in
    compute_dtype(x, weight) — the contract of docs/design.md §5."""
    ct = compute_dtype(x, weight)
    x, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits, q, ql, c1, c2, rows, x_aug = _front(x, y, w, alpha, eta, lam, delta, negative_only)
    losses, d = row_epilogue(logits, ql, c1, c2, y, row_scale, lam, delta, compute_grad)
    if not compute_grad:
        return losses, x.new_empty(0)
    dw = weight_grad(x, grad_rows(d, q, c1, c2, rows))
    return losses, dw if x_aug is None else add_direct_grad(dw, x_aug, d[rows])


def sea_augment(x, labels, weight, alpha, eta, lam, delta, negative_only=False):
    """X̃ = Π(X + η Π(ĝ)), ĝ = Q X — the one place a b×d result is formed, on request; every row is
    then normalised from its vectors directly (`reference.unit`, §3), as the reference writes
    it."""
    ct = compute_dtype(x, weight)
    xc, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits = xc @ w
    a = row_prep(logits, y, lam, delta, negative_only)
    gh = unit_rows(projection(a, logits, grad_norms(a, w), alpha) @ xc)
    return unit_rows(xc + eta * gh).to(x.dtype)
