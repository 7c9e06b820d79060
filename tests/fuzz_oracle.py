"""An independent NumPy oracle for one SeA step, and the fuzzing harness built on it (issue #8).

Part 1 (`augment`, `loss_and_grad`) is the oracle: NumPy only (no torch, no Gram space, nothing
taken from the package), written from docs/design.md §1 and the "exact at every margin" numerics
spec (issue #8), row by row as the paper writes the step, but in the exact forms:

* direction a'_i: a'_c = softmax_{c≠y}(z_i)_c for c ≠ y, a'_y = −1 (a positive multiple of
  p_i − e_y, so the same ḡ_i, and it never rounds to 0 at a large margin); sea_neg: softmax(z_i);
* g_i = W a'_i, ḡ_i = g_i/‖g_i‖ (a zero g_i stays zero: S_i = 0, q_i uniform over j ≠ i);
* S_ij = x_jᵀḡ_i/α, S_ii = −∞ before a max-subtracted softmax over j (b = 1: q = 0);
* ĝ_i = Σ_j q_ij x_j formed directly, x̃_i = Π(x_i + η Π(ĝ_i)) (ĝ_i = 0: x̃_i = Π(x_i));
* augmented logits L̃ = X̃W, z̃ = (L̃ + δ(1 − Y))/λ, and with m' = max_{c≠y} z̃_c,
  s = Σ_{c≠y} e^{z̃_c − m'}, t = m' − z̃_y + log s: ℓ = λ softplus(t), σ = sigmoid(t),
  D_i = w_i σ (u − e_y) with u_c = e^{z̃_c − m'}/s (u_y = 0), dW = X̃ᵀD.

Every function takes `dtype` (the arithmetic precision): float64 is the oracle; the harness also
runs it in float32 (the dtype's own error of a correct direct computation) and in np.longdouble
(x86 80-bit extended) as the truth for float64 backends.

Part 2 is the harness shared by tests/test_fuzz.py, tests/test_fuzz_regressions.py and
benches/fuzz.py: building a case from parameters, handing it to a backend through the public ops
(non-contiguous layouts included), and the per-dtype acceptance bound

    ‖backend − truth‖ ≤ K_OWN · own + TOL[dtype] · scale + floor

where truth is the oracle on the inputs rounded to the dtype (float64 arithmetic for
float32/bf16/fp16, longdouble for float64), scale is ‖truth‖ (for dW ‖|X̃|ᵀ|D|‖, as dW = X̃ᵀD
may cancel), and own is the dtype's own error: the smaller of the errors of
`sea_kernels.reference` (paper-literal, computed in that dtype, the scheme of tests/helpers.py)
and of this oracle computed in that dtype. The smaller one is taken so that a defect of the
reference itself (p_y − 1 rounding to 0, log_softmax at p̃_y ≈ 1) cannot widen the tolerance.
floor lets values below the dtype's smallest normal number flush to zero.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

# --------------------------------------------------------------------------------------------
# Part 1: the oracle (NumPy only)
# --------------------------------------------------------------------------------------------

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


def _tempered(logits, mask, lam, delta, dtype):
    return ((logits + dtype(delta) * (~mask)) / dtype(lam)).astype(dtype)


def direction_rows(x, labels, w, lam, delta, direction="sea", dtype=np.float64):
    """a' (b×C): the exact direction of each row's p_i − e_y (or softmax(z_i) for sea_neg)."""
    x, y, w, mask = _prepare(x, labels, w, dtype)
    z = _tempered(x @ w, mask, lam, delta, dtype)
    if direction == "sea":
        u, _, _ = _other_softmax(z, mask)
        return np.where(mask, dtype(-1), u).astype(dtype)
    if direction == "sea_neg":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def projection(x, labels, w, alpha, lam, delta, direction="sea", dtype=np.float64):
    """Q (b×b): q_ij = softmax_{j≠i, x_j≠0}(x_jᵀḡ_i/α), q_ii = 0 and zero rows masked like the
    diagonal (exact: only Π(ĝ_i) is used); a row with no allowed j (b = 1) is q_i = 0."""
    a = direction_rows(x, labels, w, lam, delta, direction, dtype)
    x, _, w, _ = _prepare(x, labels, w, dtype)
    b = x.shape[0]
    if b == 1:
        return np.zeros((1, 1), dtype=dtype)
    gbar = _unit((a @ w.T).astype(dtype))
    s = (gbar @ x.T).astype(dtype) / dtype(alpha)
    np.fill_diagonal(s, -np.inf)
    s[:, ~(x != 0).any(axis=1)] = -np.inf
    mx = s.max(axis=1, keepdims=True)
    none = ~np.isfinite(mx[:, 0])
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0))
    tot = e.sum(axis=1, keepdims=True)
    q = e / np.where(tot > 0, tot, 1)
    q[none] = 0
    return q.astype(dtype)


def augment(x, labels, w, alpha, eta, lam, delta, direction="sea", dtype=np.float64):
    """X̃ (b×d): x̃_i = Π(x_i + η Π(ĝ_i)), ĝ = QX formed directly."""
    q = projection(x, labels, w, alpha, lam, delta, direction, dtype)
    x, _, _, _ = _prepare(x, labels, w, dtype)
    g_hat = (q @ x).astype(dtype)
    return _unit((x + dtype(eta) * _unit(g_hat)).astype(dtype))


def _softplus(t):
    return np.maximum(t, 0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t):
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1 / (1 + e), e / (1 + e))


def loss_and_grad(x, labels, w, alpha, eta, lam, delta, direction="sea", reduction="mean",
                  row_weights=None, dtype=np.float64):
    """(loss, dW, X̃). loss: the mean/sum of ℓ_i, or the (b,) rows for "none"; dW = X̃ᵀD with row
    weights 1/b (mean), 1 (sum) or `row_weights` ("none"; ones when not given)."""
    out = step(x, labels, w, alpha, eta, lam, delta, direction, reduction, row_weights, dtype)
    return out["loss"], out["dw"], out["x_aug"]


def step(x, labels, w, alpha, eta, lam, delta, direction="sea", reduction="mean",
         row_weights=None, dtype=np.float64):
    """`loss_and_grad` with its pieces, a dict: loss, dw, x_aug, rows (ℓ_i), t, d (D) and
    dw_abs = |X̃|ᵀ|D| (the size of the terms summed into dW: its rounding-error scale)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    x_aug = augment(x, labels, w, alpha, eta, lam, delta, direction, dtype)
    _, y, w, mask = _prepare(x, labels, w, dtype)
    b = x_aug.shape[0]
    z = _tempered((x_aug @ w).astype(dtype), mask, lam, delta, dtype)
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
                dw_abs=(np.abs(x_aug).T @ np.abs(dmat)).astype(dtype))


# --------------------------------------------------------------------------------------------
# Part 2: the harness (cases, backends, the bound)
# --------------------------------------------------------------------------------------------

#: The structure of a case's features and weight.
KINDS = ("random", "clustered", "cancelling", "identical", "parallel_w")
LAYOUTS = ("contiguous", "transposed", "strided")
DTYPES = ("float32", "float64", "bfloat16", "float16")
#: Multiple of the dtype's own error allowed, and the relative tolerance on top (tests/helpers.py).
#: K_OWN = 8, not 2: in ill-conditioned cases (g = W a' cancelling, κ = ‖W‖‖a'‖/‖g‖ ≈ 7e3) the
#: Gram-space S = l_jᵀa'/(α‖g‖) takes its numerator and ‖g‖ from separately rounded products,
#: whose errors do not cancel as they do in ḡ = g/‖g‖: measured 6.4 × the direct error, linear in
#: κ. The defects found so far (κ²-conditioned norms, underflow, cancelling n²) are ≥ 20 × own.
K_OWN = 8.0
TOL = {"float64": 1e-10, "float32": 2e-5, "bfloat16": 3e-2, "float16": 5e-3}
#: Values this many times the dtype's smallest normal number may flush to zero.
FLOOR_TINY = 1e4
LONGDOUBLE_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


@dataclass(frozen=True)
class Case:
    """Parameters of one fuzz case; `build` turns them into float64 arrays."""
    b: int = 8
    d: int = 4
    c: int = 3
    alpha: float = 0.01
    eta: float = 0.8
    lam: float = 0.1
    delta: float = 0.0
    wscale: float = 1.0           # weight scale (random/parallel_w kinds)
    kind: str = "random"
    margin: float | None = None   # clustered kind: W scaled so that the smallest positive
    #                               margin l_y − max_{c≠y}(l_c + δ) is margin·λ
    duplicates: int = 0           # rows overwritten by copies of other rows
    one_class: bool = False       # every label equal
    unnormalised: bool = False    # rows scaled by 10^U(−3, 2)
    zero_rows: int = 0            # rows set to exactly zero
    zero_w: bool = False
    layout: str = "contiguous"    # of x and weight (labels strided with "strided")
    reduction: str = "mean"
    direction: str = "sea"
    dtype: str = "float32"
    seed: int = 0
    label_dtype: str = "int64"

    def short(self) -> str:
        keys = ("b", "d", "c", "alpha", "eta", "lam", "delta", "wscale", "kind", "margin",
                "duplicates", "one_class", "unnormalised", "zero_rows", "zero_w", "layout",
                "reduction", "direction", "dtype", "seed")
        base = Case()
        parts = []
        for k in keys:
            v = getattr(self, k)
            if k in ("b", "d", "c", "dtype", "kind", "seed") or v != getattr(base, k):
                parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        return " ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def _rows_unit(v):
    return _unit(v.astype(np.float64))


def build(case: Case):
    """(x (b×d), labels (b,), weight (d×C), row_weights (b,)) as float64 / int64 arrays."""
    rng = np.random.default_rng(case.seed)
    b, d, c = case.b, case.d, case.c
    y = rng.integers(0, c, b)
    if case.kind == "identical":
        x = np.tile(_rows_unit(rng.standard_normal((1, d))), (b, 1))
    elif case.kind == "cancelling":
        # rows in near-antipodal pairs: every ĝ_i nearly cancels when q is spread
        base = _rows_unit(rng.standard_normal((b, d)))
        x = base.copy()
        x[1::2] = -base[0:b - 1:2] + 10.0 ** rng.uniform(-4, -1) * rng.standard_normal(
            (len(x[1::2]), d))
        x = _rows_unit(x)
    elif case.kind == "clustered":
        mu = _rows_unit(rng.standard_normal((c, d)))
        if d >= c:
            mu = np.linalg.qr(rng.standard_normal((d, c)))[0].T
        x = _rows_unit(mu[y] + 0.2 * rng.standard_normal((b, d)))
    else:
        x = _rows_unit(rng.standard_normal((b, d)))
    if case.one_class:
        y = np.full(b, int(rng.integers(0, c)))
    if case.unnormalised:
        x = x * 10.0 ** rng.uniform(-3, 2, (b, 1))
    if case.duplicates and b > 1:
        for _ in range(case.duplicates):
            i, j = rng.integers(0, b, 2)
            x[i], y[i] = x[j], y[j]
    if case.zero_rows:
        x[rng.integers(0, b, case.zero_rows)] = 0
    if case.kind == "clustered":
        w = mu.T.copy() + 0.05 * rng.standard_normal((d, c))
        if case.margin is not None:
            logits = x @ w
            gap = logits[np.arange(b), y] - np.where(np.eye(c, dtype=bool)[y], -np.inf,
                                                     logits).max(axis=1)
            pos = gap[gap > 0]
            ref_gap = max(pos.min(), 1e-2) if pos.size else 1.0
            w = w * ((case.margin * case.lam + case.delta) / ref_gap)
        else:
            w = w * case.wscale
    elif case.kind == "parallel_w":
        # columns nearly equal: g = W a' nearly cancels (‖g‖ ≪ ‖W‖‖a'‖)
        col = rng.standard_normal((d, 1))
        w = case.wscale * (col + 10.0 ** rng.uniform(-4, -1) * rng.standard_normal((d, c)))
    else:
        w = case.wscale * rng.standard_normal((d, c))
    if case.zero_w:
        w = np.zeros((d, c))
    row_weights = rng.uniform(0.1, 1.1, b)
    return x, y.astype(np.int64), w, row_weights


# --- torch side ------------------------------------------------------------------------------

def torch_dtype(name):
    import torch
    return getattr(torch, name)


def compute_dtype_name(name):
    return "float64" if name == "float64" else "float32"


def laid_out(arr, dtype, layout):
    """A torch tensor with the values of `arr` (float64) in `dtype` and the given memory layout:
    contiguous, a transposed view of a contiguous transpose, or a stride-2 view of a larger
    buffer (both dimensions)."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(torch_dtype(dtype))
    if layout == "contiguous":
        return t
    if layout == "transposed":
        return t.T.contiguous().T
    if layout == "strided":
        big = torch.zeros(2 * t.shape[0], 2 * t.shape[1], dtype=t.dtype)
        big[::2, ::2] = t
        return big[::2, ::2]
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def labels_tensor(y, layout, label_dtype="int64"):
    import torch
    t = torch.from_numpy(np.asarray(y)).to(getattr(torch, label_dtype))
    if layout == "strided":
        big = torch.zeros(2 * len(y), dtype=t.dtype)
        big[::2] = t
        return big[::2]
    return t


@dataclass
class Inputs:
    """The torch inputs of a case and their values rounded to its dtype (float64 arrays)."""
    x: object
    labels: object
    weight: object
    row_weights: object      # (b,) tensor in the compute dtype
    x_r: np.ndarray
    w_r: np.ndarray
    y: np.ndarray
    rw_r: np.ndarray


def inputs(case: Case, arrays=None) -> Inputs:
    x, y, w, rw = build(case) if arrays is None else arrays
    if case.dtype == "float16" and np.abs(w).max() > 3e4:  # keep the weight finite in fp16
        w = w * (3e4 / np.abs(w).max())
    xt = laid_out(x, case.dtype, case.layout)
    wt = laid_out(w, case.dtype, case.layout)
    yt = labels_tensor(y, case.layout, case.label_dtype)
    rwt = laid_out(rw[None, :], compute_dtype_name(case.dtype), "contiguous")[0]
    return Inputs(xt, yt, wt, rwt, xt.double().numpy(), wt.double().numpy(), np.asarray(y),
                  rwt.double().numpy())


def hyper(case: Case) -> dict:
    return dict(alpha=case.alpha, eta=case.eta, lam=case.lam, delta=case.delta)


def run_backend(case: Case, inp: Inputs, backend: str):
    """(loss, dW) from sea_kernels.fused_sea(backend=...) and autograd, as float64 arrays. For
    "none" the gradient is that of Σ_i w_i ℓ_i with the case's row weights."""
    import torch

    import sea_kernels
    dev = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    w = inp.weight.detach().to(dev).clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(inp.x.to(dev), inp.labels.to(dev), w, reduction=case.reduction,
                                 direction=case.direction, backend=backend, **hyper(case))
    rw = inp.row_weights.to(device=dev, dtype=loss.dtype)
    total = loss if case.reduction != "none" else (loss * rw).sum()
    (grad,) = torch.autograd.grad(total, w)
    return loss.detach().double().cpu().numpy(), grad.double().cpu().numpy()


def run_augment(case: Case, inp: Inputs):
    import sea_kernels
    out = sea_kernels.sea_augment(inp.x, inp.labels, inp.weight, direction=case.direction,
                                  **hyper(case))
    return out.double().numpy()


def run_reference(case: Case, inp: Inputs):
    """sea_kernels.reference (paper-literal) computed in the case's compute dtype on the rounded
    inputs: (loss, dW, X̃) as float64 arrays."""
    import torch

    from sea_kernels import reference
    ct = torch_dtype(compute_dtype_name(case.dtype))
    x = torch.from_numpy(inp.x_r).to(ct)
    w = torch.from_numpy(inp.w_r).to(ct).requires_grad_(True)
    y = torch.from_numpy(inp.y).long()
    kw = dict(direction=case.direction, **hyper(case))
    rows = reference.sea_loss(x, y, w, reduction="none", **kw)
    if case.reduction == "mean":
        loss = rows.mean()
    elif case.reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows
    total = loss if case.reduction != "none" else (
        rows * torch.from_numpy(inp.rw_r).to(ct)).sum()
    (grad,) = torch.autograd.grad(total, w)
    x_aug = reference.augment(x, y, w.detach(), **kw)
    return (loss.detach().double().numpy(), grad.double().numpy(),
            x_aug.double().numpy())


def run_oracle(case: Case, inp: Inputs, dtype, details=False):
    out = step(inp.x_r, inp.y, inp.w_r, case.alpha, case.eta, case.lam, case.delta,
               case.direction, case.reduction, inp.rw_r, dtype=dtype)
    return out if details else (out["loss"], out["dw"], out["x_aug"])


@dataclass
class Metric:
    """One compared quantity: err = ‖got − truth‖, bound = K·own + TOL·scale + floor."""
    name: str
    err: float
    own: float
    scale: float
    bound: float
    finite: bool
    floor: float = 0.0

    @property
    def ok(self) -> bool:
        return self.finite and self.err <= self.bound

    @property
    def rel(self) -> float:
        """Error relative to the scale (to the floor where the truth is below it: flushed)."""
        return self.err / max(self.scale, self.floor, 1e-300)

    @property
    def ratio(self) -> float:
        """err / bound: ≤ 1 passes."""
        return self.err / self.bound if self.bound > 0 else (0.0 if self.err == 0 else math.inf)

    def __str__(self):
        flag = "" if self.finite else " NON-FINITE"
        return (f"{self.name}: err {self.err:.3g} (rel {self.rel:.3g}) bound {self.bound:.3g} "
                f"(own {self.own:.3g}, scale {self.scale:.3g}){flag}")


def _norm(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.square(a).sum())) if a.size else 0.0


def metric(name, got, truth, lows, dtype, natural, out_dtype=None, scale=None):
    """The comparison of `got` with `truth` (np arrays), own = the smallest error among `lows`
    (the same quantity computed in the dtype by other correct-in-principle means; non-finite
    ones are ignored). scale: the size TOL is relative to (default ‖truth‖; for dW the norm of
    |X̃|ᵀ|D|, since dW = X̃ᵀD may cancel and its rounding error is relative to its terms).
    floor: FLOOR_TINY × the compute dtype's smallest normal × `natural` (the quantity's natural
    size), plus the rounding of subnormal results to `out_dtype`."""
    got = np.asarray(got, dtype=np.float64)
    truth_ld = np.asarray(truth)
    truth = truth_ld.astype(np.float64)
    finite = bool(np.isfinite(got).all())
    err = _norm(got.astype(np.longdouble) - truth_ld) if finite else math.inf
    owns = [_norm(np.asarray(low, dtype=np.longdouble) - truth_ld) for low in lows
            if np.isfinite(np.asarray(low, dtype=np.float64)).all()]
    own = min(owns) if owns else math.inf
    scale = _norm(truth) if scale is None else max(float(scale), _norm(truth))
    tiny = float(np.finfo(np.float64 if dtype == "float64" else np.float32).tiny)
    import torch
    sub = float(torch.finfo(torch_dtype(out_dtype or dtype)).smallest_normal) * 2.0 ** -10
    floor = FLOOR_TINY * tiny * max(natural, 1.0) + sub * math.sqrt(max(truth.size, 1))
    return Metric(name, float(err), float(own), scale, K_OWN * own + TOL[dtype] * scale + floor,
                  finite, floor)


@dataclass
class Truths:
    """Everything about a case that does not depend on the backend under test."""
    case: Case
    inp: Inputs
    truth: tuple
    lows: list = field(default_factory=list)
    dw_scale: float = 0.0     # ‖|X̃|ᵀ|D|‖ of the truth


def truths(case: Case, arrays=None) -> Truths:
    inp = inputs(case, arrays)
    hi = np.longdouble if case.dtype == "float64" and LONGDOUBLE_WIDER else np.float64
    lo = np.float64 if case.dtype == "float64" else np.float32
    details = run_oracle(case, inp, hi, details=True)
    truth = (details["loss"], details["dw"], details["x_aug"])
    lows = [run_reference(case, inp), run_oracle(case, inp, lo)]
    if hi is np.float64 and case.dtype == "float64":  # no wider type: the oracle is the truth
        lows = lows[:1]
    return Truths(case, inp, truth, lows, _norm(details["dw_abs"]))


def _natural(case: Case, inp: Inputs, what: str) -> float:
    b = case.b
    if what == "loss":
        return case.lam * (b if case.reduction != "mean" else 1)
    if what == "dW":
        return float(np.abs(inp.rw_r).sum()) if case.reduction == "none" else (
            1.0 if case.reduction == "mean" else float(b))
    return float(b)


def check_backend(tr: Truths, backend: str) -> list[Metric]:
    """Metrics for loss and dW of `backend` (raises whatever the backend raises)."""
    case = tr.case
    loss, grad = run_backend(case, tr.inp, backend)
    return [metric("loss", loss, tr.truth[0], [low[0] for low in tr.lows], case.dtype,
                   _natural(case, tr.inp, "loss"), compute_dtype_name(case.dtype)),
            metric("dW", grad, tr.truth[1], [low[1] for low in tr.lows], case.dtype,
                   _natural(case, tr.inp, "dW"), scale=tr.dw_scale)]


def check_augment(tr: Truths) -> Metric:
    case = tr.case
    got = run_augment(case, tr.inp)
    return metric("x_aug", got, tr.truth[2], [low[2] for low in tr.lows], case.dtype,
                  _natural(case, tr.inp, "x_aug"))


def failures(metrics: list[Metric]) -> list[str]:
    return [str(m) for m in metrics if not m.ok]


def assert_close(case: Case, backend: str, arrays=None, augment_too: bool = False):
    """Run `backend` on `case` and assert every metric within its bound (pytest helper)."""
    tr = truths(case, arrays)
    metrics = check_backend(tr, backend)
    if augment_too:
        metrics.append(check_augment(tr))
    bad = failures(metrics)
    assert not bad, f"{backend} on {case.short()}:\n  " + "\n  ".join(bad)
    return metrics


__all__ = ["augment", "loss_and_grad", "step", "projection", "direction_rows", "Case", "build",
           "truths", "check_backend", "check_augment", "assert_close", "replace", "KINDS",
           "LAYOUTS", "DTYPES", "Metric"]
