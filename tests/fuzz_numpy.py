"""The independent NumPy oracle of one SeA step (issue #8), used by tests/fuzz_oracle.py.

NumPy only (no torch, no Gram space, nothing taken from the package), written from
docs/design.md §1 and the "exact at every margin" numerics spec (issue #8), row by row as the
paper writes the step, but in the exact forms:

* logits L = XW + 1bᵀ (b the optional bias, nn.Linear's), z_i = (l_i + δ(1 − e_y))/λ;
* direction a'_i: a'_c = softmax_{c≠y}(z_i)_c for c ≠ y, a'_y = −1 (a positive multiple of
  p_i − e_y, so the same ḡ_i, and it never rounds to 0 at a large margin); sea_neg: softmax(z_i);
* g_i = W a'_i (no bias term: ∂l_i/∂x_i = W), ḡ_i = g_i/‖g_i‖ (a zero g_i stays zero);
* S_ij = x_jᵀḡ_i/α, S_ij = −∞ for j = i and for zero rows x_j = 0 before a max-subtracted
  softmax over j (no allowed j: q_i = 0);
* ĝ_i = Σ_j q_ij x_j formed directly, x̃_i = Π(x_i + η Π(ĝ_i)) (ĝ_i = 0: x̃_i = Π(x_i));
* groups (group_size G): rows [kG, min((k+1)G, b)) are augmented alone — `augment` calls itself
  on each group's slice (a one-row group: x̃_i = Π(x_i)); G = None or G ≥ b is the whole batch;
* augmented logits L̃ = X̃W + 1bᵀ, z̃ = (L̃ + δ(1 − Y))/λ, and with m' = max_{c≠y} z̃_c,
  s = Σ_{c≠y} e^{z̃_c − m'}, t = m' − z̃_y + log s: ℓ = λ softplus(t), σ = sigmoid(t),
  D_i = w_i σ (u − e_y) with u_c = e^{z̃_c − m'}/s (u_y = 0), dW = X̃ᵀD, db = Σ_i D_i.

Every function takes `dtype` (the arithmetic precision): float64 is the oracle; the harness also
runs it in float32 (the dtype's own error of a correct direct computation) and in np.longdouble
(x86 80-bit extended) as the truth for float64 backends.
"""
from __future__ import annotations

import numpy as np

DIRECTIONS = ("sea", "sea_neg")
REDUCTIONS = ("mean", "sum", "none")


def _norms(v):
    """Row norms of v without overflow or underflow (scaled by the row maximum)."""
    m = np.abs(v).max(axis=1, keepdims=True)
    safe = np.where(m > 0, m, 1)
    return (m * np.sqrt(np.square(v / safe).sum(axis=1, keepdims=True)))


def _unit(v):
    """Π(v) row-wise; a zero row stays zero."""
    n = _norms(v)
    return np.where(n > 0, v / np.where(n > 0, n, 1), 0).astype(v.dtype)


def _other_softmax(z, mask):
    """u_c = e^{z_c − m'}/s over c ≠ y (u_y = 0), with m' = max_{c≠y} z_c, s the sum (≥ 1).
    Returns (u, m', s)."""
    zo = np.where(mask, -np.inf, z)
    m = zo.max(axis=1, keepdims=True)
    e = np.where(mask, 0, np.exp(np.where(mask, 0, zo - m)))
    s = e.sum(axis=1, keepdims=True)
    return e / s, m, s


def _prepare(x, labels, w, dtype):
    x = np.asarray(x, dtype=np.float64).astype(dtype)
    w = np.asarray(w, dtype=np.float64).astype(dtype)
    y = np.asarray(labels, dtype=np.int64)
    b, d = x.shape
    c = w.shape[1]
    if w.shape[0] != d or y.shape != (b,) or c < 2:
        raise ValueError(f"bad shapes x {x.shape}, labels {y.shape}, weight {w.shape}")
    mask = np.zeros((b, c), dtype=bool)
    mask[np.arange(b), y] = True
    return x, y, w, mask


def _bias(bias, c, dtype):
    """The bias as a (C,) array in dtype (zeros when None)."""
    if bias is None:
        return np.zeros(c, dtype=dtype)
    bias = np.asarray(bias, dtype=np.float64).astype(dtype)
    if bias.shape != (c,):
        raise ValueError(f"bias must have shape ({c},), got {bias.shape}")
    return bias


def _tempered(logits, mask, lam, delta, dtype):
    return ((logits + dtype(delta) * (~mask)) / dtype(lam)).astype(dtype)


def _logits(x, w, bias, dtype):
    """XW + 1bᵀ in dtype (the product rounded first, as a backend's GEMM + bias)."""
    return ((x @ w).astype(dtype) + _bias(bias, w.shape[1], dtype)).astype(dtype)


def group_ranges(b, group_size=None):
    """The row range [lo, hi) of every group: [kG, min((k+1)G, b)); None or G ≥ b: [(0, b)]."""
    g = b if group_size is None or group_size >= b else int(group_size)
    if g < 1:
        raise ValueError(f"group_size must be None or ≥ 1, got {group_size!r}")
    return [(lo, min(lo + g, b)) for lo in range(0, b, g)]


def direction_rows(x, labels, w, lam, delta, direction="sea", dtype=np.float64, bias=None):
    """a' (b×C): the exact direction of each row's p_i − e_y (or softmax(z_i) for sea_neg),
    z_i from the logits x_iᵀW + b."""
    x, y, w, mask = _prepare(x, labels, w, dtype)
    z = _tempered(_logits(x, w, bias, dtype), mask, lam, delta, dtype)
    if direction == "sea":
        u, _, _ = _other_softmax(z, mask)
        return np.where(mask, dtype(-1), u).astype(dtype)
    if direction == "sea_neg":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _projection_alone(x, labels, w, alpha, lam, delta, direction, dtype, bias):
    """Q of one group (the whole slice given)."""
    a = direction_rows(x, labels, w, lam, delta, direction, dtype, bias)
    x, _, w, _ = _prepare(x, labels, w, dtype)
    b = x.shape[0]
    gbar = _unit((a @ w.T).astype(dtype))
    s = (gbar @ x.T).astype(dtype) / dtype(alpha)
    blocked = np.eye(b, dtype=bool) | (x == 0).all(axis=1)[None, :]
    s = np.where(blocked, -np.inf, s)
    dead = blocked.all(axis=1, keepdims=True)
    e = np.exp(s - np.where(dead, 0, s.max(axis=1, keepdims=True)))
    return np.where(dead, 0, e / np.where(dead, 1, e.sum(axis=1, keepdims=True))).astype(dtype)


def projection(x, labels, w, alpha, lam, delta, direction="sea", dtype=np.float64,
               group_size=None, bias=None):
    """Q (b×b): q_ij = softmax_{j≠i, x_j≠0}(x_jᵀḡ_i/α), q_ii = 0. Zero rows x_j = 0 are left out
    like the diagonal (exact: they add nothing to ĝ_i and only Π(ĝ_i) is used; kept in, a zero
    row's score 0 takes all of q_i once the others underflow e^s); a row with no allowed j
    (b = 1, or only zero partners) is 0. With group_size each group's block is its own slice's
    Q, zero outside the diagonal blocks."""
    b = np.asarray(x).shape[0]
    q = np.zeros((b, b), dtype=dtype)
    y = np.asarray(labels)
    for lo, hi in group_ranges(b, group_size):
        q[lo:hi, lo:hi] = _projection_alone(np.asarray(x)[lo:hi], y[lo:hi], w, alpha, lam,
                                            delta, direction, dtype, bias)
    return q


def augment(x, labels, w, alpha, eta, lam, delta, direction="sea", dtype=np.float64,
            group_size=None, bias=None):
    """X̃ (b×d): x̃_i = Π(x_i + η Π(ĝ_i)), ĝ = QX formed directly; each group alone."""
    return augment_parts(x, labels, w, alpha, eta, lam, delta, direction, dtype, group_size,
                         bias)["x_aug"]


def augment_parts(x, labels, w, alpha, eta, lam, delta, direction="sea", dtype=np.float64,
                  group_size=None, bias=None):
    """`augment` with its pieces, a dict of (b,)-row arrays: x_aug, g_norm = ‖ĝ_i‖,
    g_abs = Σ_j q_ij ‖x_j‖ (the size of the terms summed into ĝ_i) and partners (the number of
    j with q_ij > 0)."""
    x = np.asarray(x)
    y = np.asarray(labels)
    parts = group_ranges(x.shape[0], group_size)
    if len(parts) > 1:
        outs = [augment_parts(x[lo:hi], y[lo:hi], w, alpha, eta, lam, delta, direction, dtype,
                              None, bias) for lo, hi in parts]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    q = _projection_alone(x, y, w, alpha, lam, delta, direction, dtype, bias)
    x, _, _, _ = _prepare(x, y, w, dtype)
    g_hat = (q @ x).astype(dtype)
    return dict(x_aug=_unit((x + dtype(eta) * _unit(g_hat)).astype(dtype)),
                g_norm=_norms(g_hat)[:, 0], g_abs=(q @ _norms(x)).astype(dtype)[:, 0],
                partners=(q > 0).sum(axis=1))


def _softplus(t):
    return np.maximum(t, 0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t):
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1 / (1 + e), e / (1 + e))


def loss_and_grad(x, labels, w, alpha, eta, lam, delta, direction="sea", reduction="mean",
                  row_weights=None, dtype=np.float64, group_size=None, bias=None):
    """(loss, dW, X̃). loss: the mean/sum of ℓ_i, or the (b,) rows for "none"; dW = X̃ᵀD with row
    weights 1/b (mean), 1 (sum) or `row_weights` ("none"; ones when not given)."""
    out = step(x, labels, w, alpha, eta, lam, delta, direction, reduction, row_weights, dtype,
               group_size, bias)
    return out["loss"], out["dw"], out["x_aug"]


def step(x, labels, w, alpha, eta, lam, delta, direction="sea", reduction="mean",
         row_weights=None, dtype=np.float64, group_size=None, bias=None):
    """`loss_and_grad` with its pieces, a dict: loss, dw, x_aug, rows (ℓ_i), t, d (D),
    dw_abs = |X̃|ᵀ|D| (the size of the terms summed into dW: its rounding-error scale),
    db = Σ_i D_i (∂loss/∂b; None without a bias), db_abs = Σ_i |D_i|, and for the harness's
    error propagation u, sigma (σ_i), weights (w_i), logit_abs = |X̃||W| + 1|b|ᵀ (the size of
    the terms summed into each logit) and `augment_parts`' g_norm, g_abs, partners. The row
    weights are global (1/b for "mean" whatever the groups)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    parts = augment_parts(x, labels, w, alpha, eta, lam, delta, direction, dtype, group_size,
                          bias)
    x_aug = parts["x_aug"]
    _, y, w, mask = _prepare(x, labels, w, dtype)
    b = x_aug.shape[0]
    z = _tempered(_logits(x_aug, w, bias, dtype), mask, lam, delta, dtype)
    u, m, s = _other_softmax(z, mask)
    t = (m[:, 0] - z[np.arange(b), y] + np.log(s[:, 0])).astype(dtype)
    rows = (dtype(lam) * _softplus(t)).astype(dtype)
    sigma = _sigmoid(t).astype(dtype)
    if reduction == "mean":
        weights = np.full(b, 1 / b, dtype=dtype)
        loss = rows.sum(dtype=dtype) / dtype(b)
    elif reduction == "sum":
        weights = np.ones(b, dtype=dtype)
        loss = rows.sum(dtype=dtype)
    else:
        weights = (np.ones(b) if row_weights is None else
                   np.asarray(row_weights, dtype=np.float64)).astype(dtype)
        loss = rows
    dmat = ((weights * sigma)[:, None] * (u - mask)).astype(dtype)
    return dict(loss=np.asarray(loss, dtype=dtype), dw=(x_aug.T @ dmat).astype(dtype),
                x_aug=x_aug, rows=rows, t=t, d=dmat,
                dw_abs=(np.abs(x_aug).T @ np.abs(dmat)).astype(dtype),
                db=None if bias is None else dmat.sum(axis=0, dtype=dtype),
                db_abs=np.abs(dmat).sum(axis=0, dtype=dtype), u=u, sigma=sigma, weights=weights,
                logit_abs=(np.abs(x_aug) @ np.abs(w) + np.abs(_bias(bias, w.shape[1], dtype))
                           ).astype(dtype), g_norm=parts["g_norm"], g_abs=parts["g_abs"],
                partners=parts["partners"])


# --- what the compute dtype cannot decide (the harness's allowances, from `step`'s pieces) ---

def propagated_logit_rounding(parts, labels, unit, lam, delta, reduction):
    """The RMS first-order error of loss, dW and db when every augmented logit is rounded once
    with unit roundoff `unit`: δz_ic = u·((|X̃||W|)_ic + |b_c| + δ)/λ, independent. Every
    implementation forms these logits in the compute dtype; at large logits over a small λ with
    nearly equal columns of W it is the dominant error, and one implementation's particular
    rounding can be 10× below it. With v = u − e_y, σ, w_i of `step`: ∂ℓ_i/∂z_ic = λσ_i v_c,
    ∂D_i/∂z_ic = w_i(σ(1 − σ) v_c v + σ u_c(e_c − u)) (J_ic), ∂dW/∂z_ic = x̃_i ⊗ J_ic,
    ∂db/∂z_ic = J_ic; each norm is √Σ_ic ‖∂·/∂z_ic‖² δz_ic². Returns {loss, dW, db}."""
    dz = unit * (np.asarray(parts["logit_abs"], np.float64) + delta) / lam
    u = np.asarray(parts["u"], np.float64)
    b, c = u.shape
    v = u - np.eye(c)[np.asarray(labels)]
    sig = np.asarray(parts["sigma"], np.float64)[:, None]
    wts = np.asarray(parts["weights"], np.float64)[:, None]
    ju = u[:, :, None] * (np.eye(c)[None] - u[:, None, :])         # [i, c, k] = ∂u_ik/∂z_ic
    jac = wts[:, :, None] * ((sig * (1 - sig))[:, :, None] * v[:, :, None] * v[:, None, :]
                             + sig[:, :, None] * ju)
    jn2 = np.square(jac).sum(axis=2) * np.square(dz)             # (b, C): ‖J_ic‖² δz_ic²
    x_n2 = np.square(np.asarray(parts["x_aug"], np.float64)).sum(axis=1, keepdims=True)
    loss_w = 1.0 if reduction != "mean" else 1 / b               # "none": each row its own
    dl = np.square(lam * sig * loss_w * v) * np.square(dz)
    return dict(loss=float(np.sqrt(dl.sum())), dW=float(np.sqrt((x_n2 * jn2).sum())),
                db=float(np.sqrt(jn2.sum())))


def cancelled_rows(parts, unit):
    """(b,) bool: the rows whose ĝ_i = Σ_j q_ij x_j cancels to within the rounding of its sum,
    ‖ĝ_i‖ ≤ 2(n_i + 1)·u·Σ_j q_ij‖x_j‖ (n_i partners) — e.g. exactly, with W = 0 (q uniform)
    and d = 1 rows ±1 balanced in a group. Π(ĝ_i) jumps at ĝ_i = 0 (Π(0) = 0, x̃_i = Π(x_i)), so
    the dtype cannot decide x̃_i there: every Π(x_i + ηv), ‖v‖ ≤ 1, is a correct answer."""
    n = np.asarray(parts["partners"], np.float64)
    g_abs = np.asarray(parts["g_abs"], np.float64)
    tau = 2 * (n + 1) * unit
    return (n > 0) & (g_abs > 0) & (np.asarray(parts["g_norm"], np.float64) <= tau * g_abs)


def admissible(got_row, x_row, eta, tol) -> bool:
    """Whether got_row = Π(x_row + ηv) for some ‖v‖ ≤ 1 (to tol): a unit vector within
    arcsin(η/‖x‖) of Π(x) (any unit vector, or 0 for x = 0, when η ≥ ‖x‖)."""
    norm = float(np.linalg.norm(got_row))
    xn = float(np.linalg.norm(x_row))
    if xn == 0 and norm <= tol:
        return True
    if abs(norm - 1) > tol:
        return False
    if eta >= xn:
        return True
    cos = float(np.dot(got_row, x_row)) / (norm * xn)
    return float(np.arccos(min(1.0, max(-1.0, cos)))) <= float(np.arcsin(eta / xn)) + tol
