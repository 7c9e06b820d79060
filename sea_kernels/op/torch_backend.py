"""The `torch` backend: SeA in Gram space, eager PyTorch (DESIGN.md §2). Exact, runs everywhere.

Never forms G, ĝ or X̃ (b×d). With L = XW, K = XXᵀ, A = P − Y:

    ‖g_i‖ = ‖W a_i‖                        from M = WᵀW (C ≤ 2b) or from A Wᵀ (C > 2b)
    S_ij  = (A Lᵀ)_ij / (α ‖g_i‖), S_ii = −∞,  Q = softmax_j(S)      (x_jᵀ g_i = l_jᵀ a_i)
    ‖ĝ_i‖² = (Q K Qᵀ)_ii,  x_iᵀ ĝ_i = (Q K)_ii,  r_i = 1/‖ĝ_i‖
    n_i   = ‖x_i + η r_i ĝ_i‖ = sqrt(K_ii + 2η r_i (QK)_ii + η²)
    L̃     = diag(1/n) (L + η diag(r) Q L)                         — the augmented logits
    D     = diag(s) (softmax(Z̃) − Y),  R = diag(1/n) D + η Qᵀ diag(r/n) D,  dW = Xᵀ R

where s are per-row loss weights (1/b for a mean). a_i is scaled by 1/max|a_i| before the norm:
S is invariant to that scale, and it keeps ‖g_i‖ from underflowing when p_i is nearly one-hot.
"""
from __future__ import annotations

import torch

from .reference import one_hot


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 inputs accumulate in fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _project(x, y, w, alpha, eta, lam, delta, negative_only):
    """Shared front half: returns L, K, Q, QL, r (= 1/‖ĝ‖, 0 if ĝ = 0) and 1/n."""
    b, c = x.shape[0], w.shape[1]
    logits = x @ w
    k = x @ x.T
    a = torch.softmax((logits + delta * (1 - y)) / lam, dim=1)
    if not negative_only:
        a = a - y
    amax = a.abs().amax(dim=1, keepdim=True)
    a = a / torch.where(amax > 0, amax, 1)
    if c <= 2 * b:
        g_norm2 = ((a @ (w.T @ w)) * a).sum(dim=1)
    else:
        g_norm2 = (a @ w.T).square().sum(dim=1)
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(torch.finfo(x.dtype).tiny).rsqrt(), 0)
    s = (a @ logits.T) * (inv_g / alpha)[:, None]
    if b == 1:
        q = torch.zeros_like(s)
    else:
        q = torch.softmax(s.fill_diagonal_(float("-inf")), dim=1)
    qkl = q @ torch.cat([k, logits], dim=1)
    qk, ql = qkl[:, :b], qkl[:, b:]
    gh_norm2 = (qk * q).sum(dim=1)
    moved = gh_norm2 > 0
    r = torch.where(moved, gh_norm2.clamp_min(torch.finfo(x.dtype).tiny).rsqrt(), 0)
    x_dot_gh = (q * k).sum(dim=1)
    n2 = k.diagonal() + 2 * eta * r * x_dot_gh + eta * eta * moved.to(x.dtype)
    inv_n = n2.clamp_min(torch.finfo(x.dtype).tiny).rsqrt()
    return logits, q, ql, r, inv_n


def sea_forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only=False,
                compute_grad=True):
    """Per-row losses ℓ(x̃_i) and dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W (empty when not compute_grad)."""
    ct = compute_dtype(x, weight)
    x, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    logits, q, ql, r, inv_n = _project(x, y, w, alpha, eta, lam, delta, negative_only)
    aug_logits = inv_n[:, None] * (logits + (eta * r)[:, None] * ql)
    log_p = torch.log_softmax((aug_logits + delta * (1 - y)) / lam, dim=1)
    losses = -lam * log_p.gather(1, labels[:, None])[:, 0]
    if not compute_grad:
        return losses, x.new_empty(0)
    d = row_scale.to(ct)[:, None] * (log_p.exp() - y)
    rows = inv_n[:, None] * d
    rows = torch.addmm(rows, q.T, (eta * r * inv_n)[:, None] * d)
    return losses, x.T @ rows


def sea_augment(x, labels, weight, alpha, eta, lam, delta, negative_only=False):
    """X̃ = diag(1/n)(X + η diag(r) Q X) — the one place a b×d result is formed, on request."""
    ct = compute_dtype(x, weight)
    xc, w = x.to(ct), weight.to(ct)
    y = one_hot(labels, w.shape[1], ct)
    _, q, _, r, inv_n = _project(xc, y, w, alpha, eta, lam, delta, negative_only)
    out = torch.addmm(xc, (eta * r)[:, None] * q, xc) * inv_n[:, None]
    return out.to(x.dtype)
