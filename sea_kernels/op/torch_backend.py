"""The `torch` backend: the Gram-space stages of docs/design.md §2 as eager PyTorch, one function
per stage name of §5. Exact (float64 stays float64), runs on every device, takes every dtype.

What differs from the common formulation:

* eager: every stage is a few whole-matrix torch ops; Q (b×b) is stored (the fused kernels
  recompute it), and `attention` multiplies it once against the concatenation [K | L].
* `grad_norms` picks the cheaper of the two exact forms by shape: ‖g_i‖² = a'_iᵀ M a'_i with
  M = WᵀW (C×C) when C ≤ 2b, else the squared row norms of G' = A'Wᵀ (b×d).
* b = 1 takes Q = 0 directly (the softmax of an all −∞ row would be NaN).

Its stage functions are shared: the Triton host code uses `grad_norms` and `weight_grad`, and
`sea_augment` (the one place a b×d result is formed, on request) reuses the front stages.
"""
from __future__ import annotations

import torch

from .reference import one_hot


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 inputs accumulate in fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def logits_and_gram(x, w):
    """L = XW (b×C) and K = XXᵀ (b×b)."""
    return x @ w, x @ x.T


def row_prep(logits, y, lam, delta, negative_only):
    """A' = (softmax(Z) − Y)/max|·| row-wise, Z = (L + δ(1−Y))/λ (−Y dropped for negative_only).
    S is invariant to the row scale, which keeps ‖g_i‖ from underflowing when p_i is one-hot."""
    a = torch.softmax((logits + delta * (1 - y)) / lam, dim=1)
    if not negative_only:
        a = a - y
    amax = a.abs().amax(dim=1, keepdim=True)
    return a / torch.where(amax > 0, amax, 1)


def grad_norms(a, w):
    """‖g_i‖² = ‖W a'_i‖² (b,): from M = WᵀW when C ≤ 2b, else from A'Wᵀ."""
    b, c = a.shape
    if c <= 2 * b:
        return ((a @ (w.T @ w)) * a).sum(dim=1)
    return (a @ w.T).square().sum(dim=1)


def attention(a, logits, k, g_norm2, alpha):
    """Q = softmax_{j≠i}(S), S = A'Lᵀ/(α‖g_i‖) (S_ii = −∞; a zero g_i gives S_i = 0), and from
    Q[K | L]: QL (b×C), ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij and x_iᵀĝ_i = Σ_j Q_ij K_ij.
    Returns (Q, QL, ‖ĝ‖², xᵀĝ)."""
    b = logits.shape[0]
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(_tiny(g_norm2)).rsqrt(), 0)
    s = (a @ logits.T) * (inv_g / alpha)[:, None]
    if b == 1:
        q = torch.zeros_like(s)
    else:
        q = torch.softmax(s.fill_diagonal_(float("-inf")), dim=1)
    qkl = q @ torch.cat([k, logits], dim=1)
    qk, ql = qkl[:, :b], qkl[:, b:]
    return q, ql, (qk * q).sum(dim=1), (q * k).sum(dim=1)


def row_factors(gh_norm2, x_dot_gh, k_diag, eta):
    """r = 1/‖ĝ_i‖ (0 for ĝ_i = 0: x_i is not moved) and 1/n_i, n_i² = K_ii + 2ηr xᵀĝ + η²."""
    moved = gh_norm2 > 0
    r = torch.where(moved, gh_norm2.clamp_min(_tiny(gh_norm2)).rsqrt(), 0)
    n2 = k_diag + 2 * eta * r * x_dot_gh + eta * eta * moved.to(gh_norm2.dtype)
    return r, n2.clamp_min(_tiny(n2)).rsqrt()


def row_epilogue(logits, ql, gh_norm2, x_dot_gh, k_diag, y, labels, row_scale, eta, lam, delta,
                 compute_grad=True):
    """r, 1/n (`row_factors`), L̃ = diag(1/n)(L + η diag(r) QL), the per-row losses
    −λ log softmax((L̃ + δ(1−Y))/λ)_{y_i} and D = diag(s)(P̃ − Y) (None without compute_grad).
    Returns (losses, D, r, 1/n)."""
    r, inv_n = row_factors(gh_norm2, x_dot_gh, k_diag, eta)
    aug_logits = inv_n[:, None] * (logits + (eta * r)[:, None] * ql)
    log_p = torch.log_softmax((aug_logits + delta * (1 - y)) / lam, dim=1)
    losses = -lam * log_p.gather(1, labels[:, None])[:, 0]
    d = row_scale.to(logits.dtype)[:, None] * (log_p.exp() - y) if compute_grad else None
    return losses, d, r, inv_n


def grad_rows(d, q, r, inv_n, eta):
    """R = diag(1/n) D + Qᵀ diag(ηr/n) D (b×C)."""
    rows = inv_n[:, None] * d
    return torch.addmm(rows, q.T, (eta * r * inv_n)[:, None] * d)


def weight_grad(x, rows):
    """dW = XᵀR (d×C)."""
    return x.T @ rows


def _front(x, y, w, alpha, lam, delta, negative_only):
    """logits_and_gram → row_prep → grad_norms → attention: (L, K, Q, QL, ‖ĝ‖², xᵀĝ)."""
    logits, k = logits_and_gram(x, w)
    a = row_prep(logits, y, lam, delta, negative_only)
    q, ql, gh_norm2, x_dot_gh = attention(a, logits, k, grad_norms(a, w), alpha)
    return logits, k, q, ql, gh_norm2, x_dot_gh


def sea_forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only=False,
                compute_grad=True):
    """Per-row losses ℓ(x̃_i) and dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (empty when not compute_grad), in
    compute_dtype(x, weight) — the contract of docs/design.md §5."""
    ct = compute_dtype(x, weight)
    x, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits, k, q, ql, gh_norm2, x_dot_gh = _front(x, y, w, alpha, lam, delta, negative_only)
    losses, d, r, inv_n = row_epilogue(logits, ql, gh_norm2, x_dot_gh, k.diagonal(), y, labels,
                                       row_scale, eta, lam, delta, compute_grad)
    if not compute_grad:
        return losses, x.new_empty(0)
    return losses, weight_grad(x, grad_rows(d, q, r, inv_n, eta))


def sea_augment(x, labels, weight, alpha, eta, lam, delta, negative_only=False):
    """X̃ = diag(1/n)(X + η diag(r) Q X) — the one place a b×d result is formed, on request."""
    ct = compute_dtype(x, weight)
    xc, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    _, k, q, _, gh_norm2, x_dot_gh = _front(xc, y, w, alpha, lam, delta, negative_only)
    r, inv_n = row_factors(gh_norm2, x_dot_gh, k.diagonal(), eta)
    out = torch.addmm(xc, (eta * r)[:, None] * q, xc) * inv_n[:, None]
    return out.to(x.dtype)
