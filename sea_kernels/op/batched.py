"""SeA steps for many linear classifiers at once, sharing one mini-batch (docs/design.md §4).

For every configuration k (its own W_k, α_k, η_k, λ_k, δ_k) the same function as the `torch`
backend's `sea_forward`, with the stages of docs/design.md §5 batched over configurations.
What differs from one classifier at a time:

* Transposed, stacked layout. W_all = [W_1 | … | W_k] is stored transposed (kC × d, W_kᵀ in rows
  kC:(k+1)C) and every per-configuration tensor has the class axis before the batch axis:
  L_allᵀ = W_allᵀXᵀ (kC × b) and dW_allᵀ = R_allᵀX are ONE GEMM each, the row softmaxes over C
  are contiguous along b, and the bmm's have the fast M = C shape on CPU ((QL)ᵀ = LᵀQᵀ,
  (QᵀD')ᵀ = D'ᵀQ).
* K = XXᵀ is computed once per batch and shared by all configurations; QK = [Q_1; …; Q_k]K is
  one (kb × b)·(b × b) GEMM (the 2b³ term, the only one that does not shrink with C). When
  d < b, ĝ = [Q_1; …; Q_k]X (2b²d) is cheaper and gives ‖ĝ_i‖² and x_iᵀĝ_i instead.
* The η = 0 block. Configurations with η = 0 are the exact baseline: every term with Q is
  multiplied by η = 0 and vanishes exactly (n_i² = K_ii), so they skip the b×b work:
  L̃ = L/‖x‖, R = D/‖x‖ — what the torch backend evaluates at η = 0.
* Chunks. The (k, b, b) tensors dominate memory (1,728 configurations × 256² × 4 B = 450 MB),
  so the η > 0 configurations run chunk_size at a time (auto_chunk_size from a byte budget),
  in reusable Workspace buffers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Default budget for a chunk's (chunk, b, b) working set: cache-sized is fastest on a CPU; on a
# GPU larger chunks mean fewer kernel launches.
DEFAULT_MAX_CHUNK_BYTES = {"cpu": 16 * 2 ** 20, "cuda": 1024 * 2 ** 20}


@dataclass
class Hyper:
    """Per-configuration hyper-parameters as (k,) tensors in the compute dtype."""
    alpha: torch.Tensor
    eta: torch.Tensor
    lam: torch.Tensor
    delta: torch.Tensor

    def take(self, index) -> "Hyper":
        return Hyper(self.alpha[index], self.eta[index], self.lam[index], self.delta[index])

    def rows(self, lo: int, hi: int):
        """(α, η, λ, δ) of configurations lo:hi, shaped (k, 1) for broadcasting over (k, b)."""
        return tuple(t[lo:hi, None] for t in (self.alpha, self.eta, self.lam, self.delta))


def auto_chunk_size(b: int, d: int, c: int, dtype: torch.dtype, max_chunk_bytes: int | None,
                    device_type: str = "cpu") -> int:
    """Configurations per chunk so that the chunk's (k, b, b) [and (k, b, d) when C > 2b or
    d < b] working set stays within max_chunk_bytes (None: DEFAULT_MAX_CHUNK_BYTES for the
    device type; at least one configuration)."""
    if max_chunk_bytes is None:
        budget = DEFAULT_MAX_CHUNK_BYTES.get(device_type, DEFAULT_MAX_CHUNK_BYTES["cuda"])
    else:
        budget = int(max_chunk_bytes)
    esize = torch.finfo(dtype).bits // 8
    per_config = (3 * b * b + (b * d if c > 2 * b else 0) + (b * d if d < b else 0)
                  + 8 * b * c) * esize
    return max(1, budget // max(1, per_config))


class Workspace:
    """Reusable scratch buffers, one per name, grown on demand and never shrunk.

    Fresh multi-megabyte tensors every step cost page faults (the allocator hands large blocks
    back to the OS): the (k, b, b) chunk buffers and the (kC × d) gradient are reused instead.
    `get` returns a tensor of the requested shape that aliases the previous call's for that name.
    """

    def __init__(self):
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape, dtype, device) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= int(s)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(n, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[:n].view(shape)

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _empty(ws, name, shape, like):
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return ws.get(name, shape, like.dtype, like.device)


def _tiny(dtype):
    return torch.finfo(dtype).tiny


def sea_rows_chunk(logits_t, weight_t, y_t, labels, k_gram, k_diag, row_scale, alpha, eta, lam,
                   delta, x=None, ws: Workspace | None = None):
    """Rows Rᵀ (k, C, b) with dW_k = X R_k, and per-row losses (k, b), for a chunk of η > 0
    configurations, in the transposed layout (class axis in the middle: the row-wise softmaxes
    over C are then contiguous along b, and every bmm has the fast M = C shape on CPU).

    logits_t (k, C, b) = (X W_k)ᵀ; weight_t (k, C, d) = W_kᵀ (rows of the stacked W_allᵀ);
    y_t (C, b) one-hot; labels (b,); k_gram (b, b) = X Xᵀ; k_diag (b,) = ‖x_i‖²; row_scale (b,);
    alpha, eta, lam, delta (k, 1); x (b×d), needed only when d < b (then ‖ĝ_i‖² and x_iᵀĝ_i come
    from ĝ = Q X, 2b²d, instead of Q K, 2b³); ws: scratch buffers (two (k, b, b) ones).
    Mirrors the stages of op/torch_backend.py (row_prep … grad_rows).
    """
    kc, c, b = logits_t.shape
    dt = logits_t.dtype
    tiny = _tiny(dt)
    not_y = 1 - y_t
    delta, lam = delta[:, :, None], lam[:, :, None]
    a = torch.softmax((logits_t + delta * not_y) / lam, dim=1)
    a = a - y_t
    amax = a.abs().amax(dim=1, keepdim=True)
    a = a / torch.where(amax > 0, amax, 1)
    if c <= 2 * b:
        m = torch.bmm(weight_t, weight_t.transpose(1, 2))                   # (k, C, C) = W_kᵀW_k
        g_norm2 = (torch.bmm(m, a) * a).sum(dim=1)                          # a_iᵀ M a_i, (k, b)
    else:
        g_norm2 = torch.bmm(weight_t.transpose(1, 2), a).square().sum(dim=1)  # ‖W_k a_i‖²
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(tiny).rsqrt(), 0)
    s = _empty(ws, "bb0", (kc, b, b), logits_t)
    torch.bmm((a * (inv_g / alpha)[:, None, :]).transpose(1, 2), logits_t, out=s)  # (k, b, b)
    q = _empty(ws, "bb1", (kc, b, b), logits_t)
    if b == 1:
        q.zero_()
    else:
        s.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
        torch.ops.aten._softmax.out(s, 2, False, out=q)
    if x is None or x.shape[1] >= b:
        qk = s                                                     # S is dead: reuse its buffer
        torch.mm(q.view(kc * b, b), k_gram, out=qk.view(kc * b, b))  # the 2b³ GEMM, K shared
        x_dot_gh = qk.diagonal(dim1=1, dim2=2).clone()             # (QK)_ii = Σ_j Q_ij K_ij
        gh_norm2 = qk.mul_(q).sum(dim=2)                           # ‖ĝ_i‖² = Σ_j (QK)_ij Q_ij
        del qk
    else:                                                          # d < b: ĝ = Q X is cheaper
        gh = torch.mm(q.view(kc * b, b), x).view(kc, b, -1)       # 2b²d
        x_dot_gh = (gh * x).sum(dim=2)
        gh_norm2 = gh.square_().sum(dim=2)
        del gh
    ql_t = torch.bmm(logits_t, q.transpose(1, 2))                  # (Q L)ᵀ = Lᵀ Qᵀ, (k, C, b)
    moved = gh_norm2 > 0
    r = torch.where(moved, gh_norm2.clamp_min(tiny).rsqrt(), 0)
    n2 = k_diag + 2 * eta * r * x_dot_gh + eta * eta * moved.to(dt)
    inv_n = n2.clamp_min(tiny).rsqrt()
    aug = inv_n[:, None, :] * (logits_t + (eta * r)[:, None, :] * ql_t)
    log_p = torch.log_softmax((aug + delta * not_y) / lam, dim=1)
    losses = -lam[:, :, 0] * log_p.gather(1, labels.view(1, 1, b).expand(kc, 1, b))[:, 0, :]
    d = row_scale * (log_p.exp() - y_t)
    rows = inv_n[:, None, :] * d
    rows.baddbmm_((eta * r * inv_n)[:, None, :] * d, q)             # + (Qᵀ D')ᵀ = D'ᵀ Q
    return rows, losses


def sea_rows_baseline(logits_t, y_t, labels, k_diag, row_scale, lam, delta):
    """η = 0: x̃_i = x_i/‖x_i‖ exactly; rows Rᵀ (k, C, b) and losses (k, b), no b×b work."""
    kc, _, b = logits_t.shape
    lam = lam[:, :, None]
    inv_n = k_diag.clamp_min(_tiny(logits_t.dtype)).rsqrt()
    log_p = torch.log_softmax((inv_n * logits_t + delta[:, :, None] * (1 - y_t)) / lam, dim=1)
    losses = -lam[:, :, 0] * log_p.gather(1, labels.view(1, 1, b).expand(kc, 1, b))[:, 0, :]
    return inv_n * (row_scale * (log_p.exp() - y_t)), losses


def batched_sea_grad(x, labels, weight_t, hyper: Hyper, num_classes: int, *, n_baseline: int = 0,
                     chunk_size: int | None = None, max_chunk_bytes: int | None = None,
                     logits_t: torch.Tensor | None = None, row_scale: torch.Tensor | None = None,
                     workspace: Workspace | None = None):
    """∂(mean_i ℓ(x̃_i))/∂W_k for k stacked configurations, and their mean losses.

    The weights are stored transposed and stacked: weight_t = W_allᵀ (kC × d), rows kC:(k+1)C
    holding W_kᵀ — so X W_all, W_kᵀ W_k and the gradient are all plain (batched) GEMMs on
    contiguous blocks. x (b×d) in the compute dtype; labels (b,) int64; hyper: (k,) tensors. The
    first n_baseline configurations must have η = 0 (they take the cheap exact path); the rest
    are processed chunk_size at a time (auto from max_chunk_bytes when None). logits_t =
    weight_t xᵀ (kC × b) may be passed when already computed. workspace: reusable scratch
    buffers (then the returned gradient lives in it and is overwritten by the next call).
    Returns (dW_allᵀ (kC × d), mean loss per configuration (k,)).
    """
    b, dim = x.shape
    c = num_classes
    kt = weight_t.shape[0] // c
    dt = x.dtype
    ws = workspace
    if logits_t is None:
        logits_t = torch.mm(weight_t, x.T, out=_empty(ws, "logits", (kt * c, b), x))
    if row_scale is None:
        row_scale = torch.full((b,), 1.0 / b, dtype=dt, device=x.device)
    y_t = torch.nn.functional.one_hot(labels, c).to(dt).T
    lg = logits_t.view(kt, c, b)
    rows_all = _empty(ws, "rows", (kt, c, b), x)
    losses = torch.empty(kt, dtype=dt, device=x.device)
    k_gram = x @ x.T if n_baseline < kt and dim >= b else None  # d < b: chunks use ĝ = Q X
    k_diag = k_gram.diagonal() if k_gram is not None else (x * x).sum(dim=1)
    if n_baseline:
        _, _, lam, delta = hyper.rows(0, n_baseline)
        rows_all[:n_baseline], loss = sea_rows_baseline(lg[:n_baseline], y_t, labels, k_diag,
                                                        row_scale, lam, delta)
        losses[:n_baseline] = loss.mean(dim=1)
    if n_baseline < kt:
        if chunk_size is None:
            chunk_size = auto_chunk_size(b, dim, c, dt, max_chunk_bytes, x.device.type)
        w3 = weight_t.view(kt, c, dim)
        for lo in range(n_baseline, kt, chunk_size):
            hi = min(kt, lo + chunk_size)
            alpha, eta, lam, delta = hyper.rows(lo, hi)
            rows_all[lo:hi], loss = sea_rows_chunk(lg[lo:hi], w3[lo:hi], y_t, labels, k_gram,
                                                   k_diag, row_scale, alpha, eta, lam, delta,
                                                   x if dim < b else None, ws)
            losses[lo:hi] = loss.mean(dim=1)
    grad_t = torch.mm(rows_all.view(kt * c, b), x, out=_empty(ws, "grad", (kt * c, dim), x))
    return grad_t, losses
