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
* Exact at every margin (docs/design.md §3): A' from the softmax over c ≠ y, the loss as
  λ·softplus(t) and D = s·sigmoid(t)(U − Y), as the torch backend. Untrusted rows (‖ĝ_i‖² <
  τ·max_j K_jj, or n_i² cancelling) get x̃_i = Π(x_i + ηΠ(Q_j[rows] X)) directly per
  configuration (`_direct_rows`); their share of dW_kᵀ is added after the stacked GEMM. Where
  a'ᵀMa' cancels, ‖g_i‖ comes from W_k a'_i directly.
* No host sync. Both rare repairs are fixed-size work: `pick_rows` takes up to `rare_budget`
  flagged (configuration, row) pairs of a chunk by a top-k of the flags (every pair when k·b is
  small, else as many as an eighth of the chunk budget holds at C·d elements a row) and writes
  the repaired values through masks; flagged pairs beyond the budget keep the Gram-space value
  and are counted per configuration on the device (`Workspace.overflow`; the sweep engine reads
  the counts with its epoch's losses and warns for the configurations still training). Finite
  rows are picked first: a diverged configuration's NaN rows cannot crowd out the others. Zero
  rows: the caller passes `keep` (the engine knows its data).
* Groups (group_size G, op/groups.py): each group of G consecutive rows is projected alone, so
  the chunk work runs group by group on (k, C, G) slices with the group's K block (k·b·G
  instead of k·b²); a group of one row is not moved (x̃_i = Π(x_i)) and takes the η = 0 path.
* Zero rows of X are masked out of every softmax like the diagonal (exact, see
  reference.projection_weights); a row with no non-zero partner has q_i = 0.
* Chunks. The (k, b, b) tensors dominate memory (1,728 configurations × 256² × 4 B = 450 MB),
  so the η > 0 configurations run chunk_size at a time (auto_chunk_size from a byte budget),
  in reusable Workspace buffers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .groups import group_ranges
from .reference import one_hot
from .torch_backend import TAU, direct_rows, loss_terms, softplus

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
    return max(1, budget // max(1, chunk_bytes_per_config(b, d, c, dtype)))


def chunk_bytes_per_config(b: int, d: int, c: int, dtype: torch.dtype) -> int:
    """One η > 0 configuration's share of a chunk's working set: (3b² + 8bC [+ bd when C > 2b]
    [+ bd when d < b]) elements."""
    esize = torch.finfo(dtype).bits // 8
    return (3 * b * b + (b * d if c > 2 * b else 0) + (b * d if d < b else 0)
            + 8 * b * c) * esize


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

    def overflow(self, device, k: int) -> torch.Tensor:
        """The device counters (k,) int64 of each configuration's rare rows beyond the fixed
        budget (`pick_rows`); new zeros when k or the device changed."""
        t = self._buffers.get("overflow")
        if t is None or t.device != torch.device(device) or t.numel() != k:
            t = self._buffers["overflow"] = torch.zeros(k, dtype=torch.int64, device=device)
        return t


def rare_budget(rows: int, c: int, d: int, dtype: torch.dtype, max_chunk_bytes: int | None,
                device_type: str) -> int:
    """Rows of a chunk that the rare paths (cancelling a'ᵀMa', untrusted rows) repair per step, a
    fixed number so that no host sync decides it: every row when `rows` (k·b) are few, else as
    many as one eighth of the chunk budget holds at C·d elements a row (a gathered W_k), ≥ 4."""
    budget = DEFAULT_MAX_CHUNK_BYTES.get(device_type, DEFAULT_MAX_CHUNK_BYTES["cuda"]) \
        if max_chunk_bytes is None else int(max_chunk_bytes)
    per_row = c * d * (torch.finfo(dtype).bits // 8)
    return max(1, min(rows, max(4, budget // 8 // max(1, per_row))))


def pick_rows(bad: torch.Tensor, m: int, overflow: torch.Tensor | None, first=None):
    """(config j, row i, valid) of up to m flagged entries of bad (k, b), fixed size m (no host
    sync: top-k of the flags, those also in `first` (k, b) bool before the others); `valid` marks
    the picks that are flagged. Each configuration's flagged entries left out are added to
    `overflow` (k,) (device counters the caller reads when it syncs anyway)."""
    flat = bad.reshape(-1).to(torch.int32)
    if first is not None:
        flat = flat * (1 + first.reshape(-1).to(torch.int32))
    m = min(m, flat.numel())
    val, idx = torch.topk(flat, m, sorted=False)
    b = bad.shape[1]
    j, valid = idx // b, val > 0
    if overflow is not None:
        picked = torch.zeros_like(overflow).index_add_(0, j, valid.to(overflow.dtype))
        overflow += bad.sum(dim=1) - picked
    return j, idx % b, valid


def _empty(ws, name, shape, like):
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return ws.get(name, shape, like.dtype, like.device)


def _tiny(dtype):
    return torch.finfo(dtype).tiny


def sea_rows_chunk(logits_t, weight_t, y_t, labels, k_gram, k_diag, row_scale, alpha, eta, lam,
                   delta, x, ws: Workspace | None = None, keep: torch.Tensor | None = None,
                   budget: int | None = None, overflow: torch.Tensor | None = None):
    """Rows Rᵀ (k, C, b) with dW_k = X R_k (+ the direct terms), and per-row losses (k, b), for a
    chunk of η > 0 configurations, in the transposed layout (class axis in the middle: the
    row-wise softmaxes over C are then contiguous along b, and every bmm has the fast M = C shape
    on CPU).

    logits_t (k, C, b) = (X W_k)ᵀ; weight_t (k, C, d) = W_kᵀ (rows of the stacked W_allᵀ);
    y_t (C, b) one-hot; labels (b,); k_gram (b, b) = X Xᵀ, or None when d < b (then ‖ĝ_i‖² and
    x_iᵀĝ_i come from ĝ = Q X, 2b²d, instead of Q K, 2b³); k_diag (b,) = ‖x_i‖²; row_scale (b,);
    alpha, eta, lam, delta (k, 1); x (b×d); ws: scratch buffers (two (k, b, b) ones); keep (b,)
    bool: the non-zero rows (None: all), the others masked out of Q like the diagonal.
    Mirrors the stages of op/torch_backend.py (row_prep … grad_rows), the untrusted rows of
    docs/design.md §3 included, as fixed-size work with no host sync: up to `budget` rows of
    each rare kind (None: all k·b) are picked by `pick_rows` and repaired with masked writes;
    overflow (k,): each configuration's count of flagged rows left out, added to.
    Returns (Rᵀ, losses, direct) with direct a list of (configurations in the chunk (m,),
    (m, C, d) terms to add to their dW_kᵀ).
    """
    kc, c, b = logits_t.shape
    dt = logits_t.dtype
    tiny = _tiny(dt)
    not_y, ymask = 1 - y_t, y_t.bool()
    delta, lam = delta[:, :, None], lam[:, :, None]
    z = (logits_t + delta * not_y) / lam
    a = torch.softmax(z.masked_fill(ymask, float("-inf")), dim=1) - y_t   # A' exactly (§3)
    del z
    if c <= 2 * b:
        m = torch.bmm(weight_t, weight_t.transpose(1, 2))                   # (k, C, C) = W_kᵀW_k
        g_norm2 = (torch.bmm(m, a) * a).sum(dim=1)                          # a_iᵀ M a_i, (k, b)
        w_norms = m.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()            # ‖w_c‖, (k, C)
        del m
    else:
        g_norm2 = torch.bmm(weight_t.transpose(1, 2), a).square().sum(dim=1)  # ‖W_k a_i‖²
        w_norms = weight_t.square().sum(dim=2).sqrt()
    # W_k a'_i cancels (§3, torch_backend.grad_norms_and_rows): ‖g_i‖² and the scores S_i direct
    bad = ~(g_norm2 >= TAU[dt] * (w_norms[:, :, None] * a.abs()).sum(dim=1) ** 2)
    m = kc * b if budget is None else budget
    # finite scores first: a diverged configuration's NaN rows (flagged too) come last
    cj, ci, cvalid = pick_rows(bad, m, overflow, torch.isfinite(g_norm2))
    # g_i = W_j a'_i for the picks: Σ_c a'_ic (W_jᵀ)_c, a weighted sum of gathered rows of W_allᵀ
    cols = torch.arange(c, device=x.device)
    g = torch.nn.functional.embedding_bag(cj[:, None] * c + cols, weight_t.reshape(kc * c, -1),
                                          per_sample_weights=a[cj, :, ci], mode="sum")   # (m, d)
    g_norm2[cj, ci] = torch.where(cvalid, g.square().sum(dim=1), g_norm2[cj, ci])
    inv_g = torch.where(g_norm2 > 0, g_norm2.clamp_min(tiny).rsqrt(), 0)
    s = _empty(ws, "bb0", (kc, b, b), logits_t)
    torch.bmm((a * (inv_g / alpha)[:, None, :]).transpose(1, 2), logits_t, out=s)  # (k, b, b)
    s_direct = (g @ x.T) * (inv_g[cj, ci] / alpha[cj, 0])[:, None]    # S_ij = x_jᵀg_i/(α‖g_i‖)
    s[cj, ci] = torch.where(cvalid[:, None], s_direct, s[cj, ci])
    q = _empty(ws, "bb1", (kc, b, b), logits_t)
    if b == 1:
        q.zero_()
    else:
        s.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
        if keep is not None:                                       # zero rows: q_ij = 0
            s.masked_fill_(~keep[None, None, :], float("-inf"))
        torch.ops.aten._softmax.out(s, 2, False, out=q)
        if keep is not None:                                       # no non-zero partner: q_i = 0
            partners = keep.sum() - keep.to(torch.int64)
            q.masked_fill_((partners == 0)[None, :, None], 0)
    if k_gram is not None:
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
    c1 = n2.clamp_min(tiny).rsqrt()                                # 1/n
    c2 = eta * r * c1                                              # ηr/n
    uj, ui, uvalid, x_aug = _direct_rows(x, weight_t, q, gh_norm2, n2, ql_t, k_diag, eta, c1,
                                         c2, m, overflow)
    aug = c1[:, None, :] * logits_t + c2[:, None, :] * ql_t
    losses, d = _loss_rows((aug + delta * not_y) / lam, ymask, y_t, lam, row_scale)
    rows = c1[:, None, :] * d
    c2[uj, ui] = torch.where(uvalid, 0, c2[uj, ui])               # their share from x̃ directly:
    terms = torch.where(uvalid[:, None, None], d[uj, :, ui][:, :, None] * x_aug[:, None, :], 0)
    rows.baddbmm_(c2[:, None, :] * d, q)                           # + (Qᵀ D')ᵀ = D'ᵀ Q
    return rows, losses, [(uj, terms)]


def _direct_rows(x, weight_t, q, gh_norm2, n2, ql_t, k_diag, eta, c1, c2, m, overflow):
    """The untrusted rows of docs/design.md §3 (‖ĝ_i‖² < τ·max_j K_jj, or n_i² < τ(K_ii + η²) or
    underflowing, as torch_backend.untrusted_rows), up to m of them (`pick_rows`, no host sync):
    x̃_i = Π(x_i + ηΠ(Q_j[i] X)) directly; they get c1 = 0, c2 = 1 and (QL)_i ← W_jᵀx̃_i
    (written in place). Returns (j, i, valid, x̃ (m, d))."""
    moved = (gh_norm2 > 0).to(gh_norm2.dtype)
    tau = TAU[gh_norm2.dtype]
    bad = ((gh_norm2 < tau * k_diag.max()) | (n2 < tau * (k_diag + eta * eta * moved))
           | (n2 < _tiny(n2.dtype)))
    j, i, valid = pick_rows(bad, m, overflow)
    x_aug = direct_rows(x, q[j, i], i, eta[j])                     # (m, d)
    w_rows = weight_t[j]                                            # (m, C, d) gathered W_jᵀ
    ql_t[j, :, i] = torch.where(valid[:, None], torch.bmm(w_rows, x_aug[:, :, None])[:, :, 0],
                                ql_t[j, :, i])
    c1[j, i] = torch.where(valid, 0, c1[j, i])
    c2[j, i] = torch.where(valid, 1, c2[j, i])
    return j, i, valid, x_aug


def _loss_rows(z, ymask, y_t, lam, row_scale):
    """Per-row losses λ·softplus(t) (k, b) and D = s·sigmoid(t)(U − Y) (k, C, b) from the
    tempered augmented logits z (k, C, b) — torch_backend.loss_terms along the class axis."""
    t, u = loss_terms(z, ymask)
    losses = lam[:, :, 0] * softplus(t)
    return losses, (row_scale * torch.sigmoid(t))[:, None, :] * (u - y_t)


def sea_rows_baseline(logits_t, y_t, labels, k_diag, row_scale, lam, delta):
    """η = 0: x̃_i = x_i/‖x_i‖ exactly; rows Rᵀ (k, C, b) and losses (k, b), no b×b work."""
    lam = lam[:, :, None]
    inv_n = k_diag.clamp_min(_tiny(logits_t.dtype)).rsqrt()
    z = (inv_n * logits_t + delta[:, :, None] * (1 - y_t)) / lam
    losses, d = _loss_rows(z, y_t.bool(), y_t, lam, row_scale)
    return inv_n * d, losses


def batched_sea_grad(x, labels, weight_t, hyper: Hyper, num_classes: int, *, n_baseline: int = 0,
                     chunk_size: int | None = None, max_chunk_bytes: int | None = None,
                     logits_t: torch.Tensor | None = None, row_scale: torch.Tensor | None = None,
                     workspace: Workspace | None = None, group_size: int | None = None,
                     keep="auto", x_gemm: torch.Tensor | None = None):
    """∂(mean_i ℓ(x̃_i))/∂W_k for k stacked configurations, and their mean losses.

    The weights are stored transposed and stacked: weight_t = W_allᵀ (kC × d), rows kC:(k+1)C
    holding W_kᵀ — so X W_all, W_kᵀ W_k and the gradient are all plain (batched) GEMMs on
    contiguous blocks. x (b×d) in the compute dtype; labels (b,) int64; hyper: (k,) tensors. The
    first n_baseline configurations must have η = 0 (they take the cheap exact path); the rest
    are processed chunk_size at a time (auto from max_chunk_bytes when None). logits_t =
    weight_t xᵀ (kC × b) may be passed when already computed. workspace: reusable scratch
    buffers (then the returned gradient lives in it and is overwritten by the next call).
    group_size G (None: the whole batch): groups of G consecutive rows projected alone.
    keep: the non-zero rows of x as a (b,) bool tensor, None when the caller knows there is no
    zero row, or "auto": checked here (one host sync; the sweep engine knows it from its data).
    x_gemm: x in a 16-bit input dtype (bf16/fp16) for the two stacked GEMMs L_allᵀ = W_allᵀXᵀ and
    dW_allᵀ = R_allᵀX (tensor cores, fp32 accumulation; W_allᵀ and R_allᵀ rounded to it), the
    rest in x's dtype; None: every GEMM in x's dtype (float32 ones follow torch's allow_tf32).
    Returns (dW_allᵀ (kC × d), mean loss per configuration (k,)).
    """
    b, dim = x.shape
    c = num_classes
    if c < 2:
        raise ValueError(f"num_classes must be at least 2 classes (columns of each W_k), got {c}")
    kt = weight_t.shape[0] // c
    dt = x.dtype
    ws = workspace
    if logits_t is None:
        logits_t = _stacked_mm(weight_t, x.T if x_gemm is None else x_gemm.T, ws, "logits", x)
    if row_scale is None:
        row_scale = torch.full((b,), 1.0 / b, dtype=dt, device=x.device)
    y_t = one_hot(labels, c, dt).T
    lg = logits_t.view(kt, c, b)
    rows_all = _empty(ws, "rows", (kt, c, b), x)
    losses = torch.empty(kt, dtype=dt, device=x.device)
    direct = []
    overflow = None if ws is None else ws.overflow(x.device, kt)
    if isinstance(keep, str):                                   # "auto": zero rows, masked out
        keep = x.ne(0).any(dim=1)
        keep = None if bool(keep.all()) else keep
    ranges = group_ranges(b, group_size)
    if len(ranges) > 1:
        return _grouped(x, labels, weight_t, hyper, c, ranges, keep, n_baseline, chunk_size,
                        max_chunk_bytes, lg, y_t, row_scale, rows_all, losses, ws, x_gemm,
                        overflow)
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
            budget = rare_budget((hi - lo) * b, c, dim, dt, max_chunk_bytes, x.device.type)
            rows_all[lo:hi], loss, fixes = sea_rows_chunk(lg[lo:hi], w3[lo:hi], y_t, labels,
                                                          k_gram, k_diag, row_scale, alpha, eta,
                                                          lam, delta, x, ws, keep, budget,
                                                          None if overflow is None
                                                          else overflow[lo:hi])
            losses[lo:hi] = loss.mean(dim=1)
            direct += [(lo + j, term) for j, term in fixes]
    grad_t = _stacked_mm(rows_all.view(kt * c, b), x if x_gemm is None else x_gemm, ws, "grad", x)
    g3 = grad_t.view(kt, c, dim)
    for j, term in direct:                 # untrusted rows' share of dW_jᵀ, from x̃ directly
        g3.index_add_(0, j, term.to(g3.dtype))
    return grad_t, losses


def _stacked_mm(a, b, ws, name, like):
    """a @ b in b's dtype (a cast to it: the stacked GEMMs of a 16-bit input), returned in the
    dtype of `like` in the workspace buffer `name`."""
    out = _empty(ws, name, (a.shape[0], b.shape[1]), like)
    if b.dtype == out.dtype:
        return torch.mm(a, b, out=out)
    return out.copy_(torch.mm(a.to(b.dtype), b))


def _grouped(x, labels, weight_t, hyper, c, ranges, keep, n_baseline, chunk_size,
             max_chunk_bytes, lg, y_t, row_scale, rows_all, losses, ws, x_gemm=None,
             overflow=None):
    """`batched_sea_grad` for a batch cut into groups (`ranges`): every group's rows (k, C, g)
    through `sea_rows_chunk` with the group's own K block, k_diag and mask, groups of one row
    (and the η = 0 configurations) through `sea_rows_baseline`; then the one stacked GEMM."""
    b, dim = x.shape
    kt = lg.shape[0]
    w3 = weight_t.view(kt, c, dim)
    row_loss = torch.empty(kt, b, dtype=x.dtype, device=x.device)
    direct = []
    for g0, g1 in ranges:
        xs, g = x[g0:g1], g1 - g0
        k_gram = xs @ xs.T if n_baseline < kt and g > 1 and dim >= g else None
        k_diag = k_gram.diagonal() if k_gram is not None else (xs * xs).sum(dim=1)
        sub = (slice(None), slice(None), slice(g0, g1))
        ys, scale = y_t[:, g0:g1], row_scale[g0:g1]
        base = kt if g == 1 else n_baseline                     # one row: ĝ = 0, x̃ = Π(x)
        if base:
            _, _, lam, delta = hyper.rows(0, base)
            rows_all[:base][sub], row_loss[:base, g0:g1] = sea_rows_baseline(
                lg[:base][sub], ys, labels[g0:g1], k_diag, scale, lam, delta)
        if base == kt:
            continue
        size = chunk_size or auto_chunk_size(g, dim, c, x.dtype, max_chunk_bytes,
                                             x.device.type)
        ks = None if keep is None else keep[g0:g1]
        for lo in range(base, kt, size):
            hi = min(kt, lo + size)
            alpha, eta, lam, delta = hyper.rows(lo, hi)
            budget = rare_budget((hi - lo) * g, c, dim, x.dtype, max_chunk_bytes,
                                 x.device.type)
            rows, loss, fixes = sea_rows_chunk(lg[lo:hi][sub], w3[lo:hi], ys, labels[g0:g1],
                                               k_gram, k_diag, scale, alpha, eta, lam, delta,
                                               xs, ws, ks, budget,
                                               None if overflow is None else overflow[lo:hi])
            rows_all[lo:hi][sub], row_loss[lo:hi, g0:g1] = rows, loss
            direct += [(lo + j, term) for j, term in fixes]
    losses.copy_(row_loss.mean(dim=1))
    grad_t = _stacked_mm(rows_all.view(kt * c, b), x if x_gemm is None else x_gemm, ws, "grad", x)
    g3 = grad_t.view(kt, c, dim)
    for j, term in direct:                 # untrusted rows' share of dW_jᵀ, from x̃ directly
        g3.index_add_(0, j, term.to(g3.dtype))
    return grad_t, losses
