"""The fuzzing harness of the public ops against the independent NumPy oracle (issue #8).

The oracle itself (`augment`, `loss_and_grad`, `step`, `projection`, `direction_rows`: NumPy only,
no Gram space, groups by projecting each group alone, the bias in the logits but not in g_i) is
tests/fuzz_numpy.py, re-exported here. This module is the harness shared by tests/test_fuzz.py,
tests/test_backends_agree.py (the table of tests/cases.py) and benches/fuzz.py: building a case
from parameters (group_size and bias included), handing it to a backend through the public ops
(non-contiguous layouts included), and the per-dtype acceptance bound

    ‖backend − truth‖ ≤ K_OWN · own + TOL[dtype] · scale + floor   (K_OWN: see `k_own`)

where truth is the oracle on the inputs rounded to the dtype (float64 arithmetic for
float32/bf16/fp16, longdouble for float64), scale is ‖truth‖ (for dW ‖|X̃|ᵀ|D|‖, as dW = X̃ᵀD
may cancel; for db = Σ_i D_i likewise ‖Σ_i |D_i|‖), and own is the dtype's own error: the smaller
of the errors of `sea_kernels.reference` (paper-literal, computed in that dtype, the scheme of
tests/helpers.py) and of the oracle computed in that dtype. The smaller one is taken so that a
defect of the reference itself (p_y − 1 rounding to 0, log_softmax at p̃_y ≈ 1) cannot widen the
tolerance. floor lets values below the dtype's smallest normal number flush to zero.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from fuzz_numpy import (  # noqa: F401  (the oracle, re-exported)
    DIRECTIONS,
    REDUCTIONS,
    _unit,
    admissible,
    augment,
    cancelled_rows,
    direction_rows,
    group_ranges,
    loss_and_grad,
    projection,
    propagated_logit_rounding,
    step,
)

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
    group_size: int | None = None  # rows projected together (None: the whole batch)
    bias: float | None = None     # None: no bias; else b = bias·N(0, 1)^C (the clustered kind
    #                               with a margin: in the units of the unscaled W, scaled with it)
    weight_dtype: str | None = None  # the weight's (and bias') dtype when not `dtype` (half x
    #                                  with a float32 weight); the bound is still `dtype`'s

    def short(self) -> str:
        keys = ("b", "d", "c", "alpha", "eta", "lam", "delta", "wscale", "kind", "margin",
                "duplicates", "one_class", "unnormalised", "zero_rows", "zero_w", "layout",
                "reduction", "direction", "dtype", "seed", "group_size", "bias", "weight_dtype")
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
    """(x (b×d), labels (b,), weight (d×C), row_weights (b,)) as float64 / int64 arrays, and the
    bias (C,) fifth when case.bias is not None. The bias comes from its own random stream, so a
    case with a bias has the x, labels and (but for a margin's scaling) W of the case without."""
    rng = np.random.default_rng(case.seed)
    b, d, c = case.b, case.d, case.c
    bias = bias_vector(case)
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
            logits = x @ w + (0 if bias is None else bias)
            gap = logits[np.arange(b), y] - np.where(np.eye(c, dtype=bool)[y], -np.inf,
                                                     logits).max(axis=1)
            pos = gap[gap > 0]
            ref_gap = max(pos.min(), 1e-2) if pos.size else 1.0
            factor = (case.margin * case.lam + case.delta) / ref_gap
            w = w * factor
            bias = None if bias is None else bias * factor
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
    out = (x, y.astype(np.int64), w, row_weights)
    return out if bias is None else out + (bias,)


def bias_vector(case: Case):
    """b = case.bias · N(0, 1)^C from the stream (seed, 1); None without a bias."""
    if case.bias is None:
        return None
    return case.bias * np.random.default_rng([case.seed, 1]).standard_normal(case.c)


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


def bias_tensor(bias, dtype, layout):
    """The bias (C,) in dtype, a stride-2 view of a larger buffer with the "strided" layout."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(bias)).to(torch_dtype(dtype))
    if layout == "strided":
        big = torch.zeros(2 * t.shape[0], dtype=t.dtype)
        big[::2] = t
        return big[::2]
    return t


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
    bias: object = None      # (C,) tensor in the dtype, or None
    b_r: np.ndarray | None = None


def inputs(case: Case, arrays=None) -> Inputs:
    """The case's tensors. `arrays`: (x, labels, weight, row_weights[, bias]) to use instead of
    `build`'s; without a fifth entry the bias is `bias_vector(case)`."""
    arrays = build(case) if arrays is None else tuple(arrays)
    x, y, w, rw = arrays[:4]
    bias = arrays[4] if len(arrays) > 4 else bias_vector(case)
    wdt = case.weight_dtype or case.dtype
    if wdt == "float16" and np.abs(w).max() > 3e4:  # keep the weight finite in fp16
        w = w * (3e4 / np.abs(w).max())
    if wdt == "float16" and bias is not None and np.abs(bias).max() > 3e4:
        bias = bias * (3e4 / np.abs(bias).max())
    xt = laid_out(x, case.dtype, case.layout)
    wt = laid_out(w, wdt, case.layout)
    yt = labels_tensor(y, case.layout, case.label_dtype)
    rwt = laid_out(rw[None, :], compute_dtype_name(case.dtype), "contiguous")[0]
    bt = None if bias is None else bias_tensor(bias, wdt, case.layout)
    return Inputs(xt, yt, wt, rwt, xt.double().numpy(), wt.double().numpy(), np.asarray(y),
                  rwt.double().numpy(), bt, None if bt is None else bt.double().numpy())


def hyper(case: Case) -> dict:
    return dict(alpha=case.alpha, eta=case.eta, lam=case.lam, delta=case.delta)


def _leaf(t, dev):
    """A leaf tensor requiring grad with t's values and strides (a strided layout stays one)."""
    if t is None:
        return None
    import torch
    leaf = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=dev)
    with torch.no_grad():
        leaf.copy_(t)
    return leaf.requires_grad_(True)


def _grads(total, w, bias):
    """(∂total/∂W, ∂total/∂b or None) as float64 arrays."""
    import torch
    grads = torch.autograd.grad(total, [w] if bias is None else [w, bias])
    for g, t in zip(grads, (w, bias)):
        assert g.dtype == t.dtype and g.shape == t.shape, (g.dtype, t.dtype, g.shape, t.shape)
    out = [g.double().cpu().numpy() for g in grads]
    return out[0], (out[1] if bias is not None else None)


def run_backend(case: Case, inp: Inputs, backend: str):
    """(loss, dW, db or None) from sea_kernels.fused_sea(backend=..., group_size=, bias=) and
    autograd, as float64 arrays. For "none" the gradient is that of Σ_i w_i ℓ_i with the case's
    row weights."""
    import torch

    import sea_kernels
    dev = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    w, bias = _leaf(inp.weight, dev), _leaf(inp.bias, dev)
    loss = sea_kernels.fused_sea(inp.x.to(dev), inp.labels.to(dev), w, reduction=case.reduction,
                                 direction=case.direction, group_size=case.group_size, bias=bias,
                                 backend=backend, **hyper(case))
    ct = torch.promote_types(inp.x.dtype, inp.weight.dtype)
    ct = ct if bias is None else torch.promote_types(ct, bias.dtype)
    ct = torch.float32 if ct in (torch.bfloat16, torch.float16) else ct
    assert loss.dtype == ct, f"loss in {loss.dtype}, not the compute dtype {ct}"
    assert loss.shape == ((case.b,) if case.reduction == "none" else ()), loss.shape
    rw = inp.row_weights.to(device=dev, dtype=loss.dtype)
    total = loss if case.reduction != "none" else (loss * rw).sum()
    grad, grad_b = _grads(total, w, bias)
    return loss.detach().double().cpu().numpy(), grad, grad_b


def run_augment(case: Case, inp: Inputs):
    import sea_kernels
    out = sea_kernels.sea_augment(inp.x, inp.labels, inp.weight, direction=case.direction,
                                  group_size=case.group_size, bias=inp.bias, **hyper(case))
    return out.double().numpy()


def run_reference(case: Case, inp: Inputs):
    """sea_kernels.reference (paper-literal) computed in the case's compute dtype on the rounded
    inputs: (loss, dW, X̃, db or None) as float64 arrays."""
    import torch

    from sea_kernels import reference
    ct = torch_dtype(compute_dtype_name(case.dtype))
    x = torch.from_numpy(inp.x_r).to(ct)
    w = torch.from_numpy(inp.w_r).to(ct).requires_grad_(True)
    bias = None if inp.b_r is None else torch.from_numpy(inp.b_r).to(ct).requires_grad_(True)
    y = torch.from_numpy(inp.y).long()
    # reference.sea_loss's two steps, so that its X̃ (a constant of the step) is computed once
    x_aug = reference.augment(x, y, w.detach(), bias=None if bias is None else bias.detach(),
                              direction=case.direction, group_size=case.group_size, **hyper(case))
    rows = reference.smoothed_hinge_loss(reference.logits_of(x_aug, w, bias), y, case.lam,
                                         case.delta, "none")
    if case.reduction == "mean":
        loss = rows.mean()
    elif case.reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows
    total = loss if case.reduction != "none" else (
        rows * torch.from_numpy(inp.rw_r).to(ct)).sum()
    grad, grad_b = _grads(total, w, bias)
    return loss.detach().double().numpy(), grad, x_aug.double().numpy(), grad_b


def run_oracle(case: Case, inp: Inputs, dtype, details=False):
    """The oracle in `dtype` on the rounded inputs: (loss, dW, X̃, db or None), or `step`'s dict."""
    out = step(inp.x_r, inp.y, inp.w_r, case.alpha, case.eta, case.lam, case.delta,
               case.direction, case.reduction, inp.rw_r, dtype=dtype,
               group_size=case.group_size, bias=inp.b_r)
    return out if details else (out["loss"], out["dw"], out["x_aug"], out["db"])


@dataclass
class Metric:
    """One compared quantity: err = ‖got − truth‖, bound = K·own + TOL·scale + floor (own
    already raised to at least `cond`, the propagated rounding of the logits)."""
    name: str
    err: float
    own: float
    scale: float
    bound: float
    finite: bool
    floor: float = 0.0
    cond: float = 0.0

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
                f"(own {self.own:.3g}, cond {self.cond:.3g}, scale {self.scale:.3g}){flag}")


def _norm(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.square(a).sum())) if a.size else 0.0


def metric(name, got, truth, lows, dtype, natural, out_dtype=None, scale=None, cond=0.0,
           k_own=K_OWN):
    """The comparison of `got` with `truth` (np arrays), own = the smallest error among `lows`
    (the same quantity computed in the dtype by other correct-in-principle means; non-finite
    ones are ignored), but at least `cond` (propagated_logit_rounding: what rounding the logits
    alone costs, which a lucky rounding of one of `lows` can undercut by 10×). scale: the size
    TOL is relative to (default ‖truth‖; for dW the norm of |X̃|ᵀ|D|, since dW = X̃ᵀD may
    cancel and its rounding error is relative to its terms).
    floor: FLOOR_TINY × the compute dtype's smallest normal × `natural` (the quantity's natural
    size), plus the rounding of subnormal results to `out_dtype`."""
    got = np.asarray(got, dtype=np.float64)
    truth_ld = np.asarray(truth)
    truth = truth_ld.astype(np.float64)
    finite = bool(np.isfinite(got).all())
    err = _norm(got.astype(np.longdouble) - truth_ld) if finite else math.inf
    owns = [_norm(np.asarray(low, dtype=np.longdouble) - truth_ld) for low in lows
            if np.isfinite(np.asarray(low, dtype=np.float64)).all()]
    own = max(min(owns) if owns else math.inf, float(cond))
    scale = _norm(truth) if scale is None else max(float(scale), _norm(truth))
    tiny = float(np.finfo(np.float64 if dtype == "float64" else np.float32).tiny)
    import torch
    sub = float(torch.finfo(torch_dtype(out_dtype or dtype)).smallest_normal) * 2.0 ** -10
    floor = FLOOR_TINY * tiny * max(natural, 1.0) + sub * math.sqrt(max(truth.size, 1))
    return Metric(name, float(err), float(own), scale, k_own * own + TOL[dtype] * scale + floor,
                  finite, floor, float(cond))


@dataclass
class Truths:
    """Everything about a case that does not depend on the backend under test."""
    case: Case
    inp: Inputs
    truth: tuple
    lows: list = field(default_factory=list)
    dw_scale: float = 0.0     # ‖|X̃|ᵀ|D|‖ of the truth
    db_scale: float = 0.0     # ‖Σ_i |D_i|‖ of the truth
    cond: dict = field(default_factory=dict)   # propagated_logit_rounding: loss, dW, db
    undetermined: np.ndarray | None = None     # cancelled_rows: x̃_i not decided by the dtype


def truths(case: Case, arrays=None) -> Truths:
    inp = inputs(case, arrays)
    hi = np.longdouble if case.dtype == "float64" and LONGDOUBLE_WIDER else np.float64
    lo = np.float64 if case.dtype == "float64" else np.float32
    details = run_oracle(case, inp, hi, details=True)
    truth = (details["loss"], details["dw"], details["x_aug"], details["db"])
    lows = [run_reference(case, inp), run_oracle(case, inp, lo)]
    if hi is np.float64 and case.dtype == "float64":  # no wider type: the oracle is the truth
        lows = lows[:1]
    # what rounding in the compute dtype alone costs (fuzz_numpy): cond, undetermined rows
    unit = float(np.finfo(np.dtype(compute_dtype_name(case.dtype))).eps) / 2
    cond = propagated_logit_rounding(details, inp.y, unit, case.lam, case.delta, case.reduction)
    return Truths(case, inp, truth, lows, _norm(details["dw_abs"]), _norm(details["db_abs"]),
                  cond, cancelled_rows(details, unit))


def _natural(case: Case, inp: Inputs, what: str) -> float:
    b = case.b
    if what == "loss":
        return case.lam * (b if case.reduction != "mean" else 1)
    if what in ("dW", "db"):
        return float(np.abs(inp.rw_r).sum()) if case.reduction == "none" else (
            1.0 if case.reduction == "mean" else float(b))
    return float(b)


def check_backend(tr: Truths, backend: str, k_own: float = K_OWN) -> list[Metric]:
    """Metrics for loss, dW and (with a bias) db of `backend` (raises whatever the backend
    raises); k_own: the multiple of the dtype's own error allowed (K_OWN by default)."""
    case = tr.case
    loss, grad, grad_b = run_backend(case, tr.inp, backend)
    cond = tr.cond or {}
    out = [metric("loss", loss, tr.truth[0], [low[0] for low in tr.lows], case.dtype,
                  _natural(case, tr.inp, "loss"), compute_dtype_name(case.dtype),
                  cond=cond.get("loss", 0.0), k_own=k_own),
           metric("dW", grad, tr.truth[1], [low[1] for low in tr.lows], case.dtype,
                  _natural(case, tr.inp, "dW"), scale=tr.dw_scale, cond=cond.get("dW", 0.0),
                  k_own=k_own)]
    if tr.truth[3] is not None:
        out.append(metric("db", grad_b, tr.truth[3], [low[3] for low in tr.lows], case.dtype,
                          _natural(case, tr.inp, "db"), scale=tr.db_scale,
                          cond=cond.get("db", 0.0), k_own=k_own))
    return out


def check_augment(tr: Truths, k_own: float = K_OWN) -> Metric:
    """Metric of sea_augment's x̃; an `undetermined_rows` row counts as exact when its value is
    one of the correct answers (fuzz_numpy.admissible)."""
    case = tr.case
    got = run_augment(case, tr.inp)
    if tr.undetermined is not None and tr.undetermined.any() and np.isfinite(got).all():
        got = got.copy()
        tol = max(TOL[case.dtype], 64 * float(np.finfo(np.float32).eps))
        for i in np.flatnonzero(tr.undetermined):
            if admissible(got[i], tr.inp.x_r[i], case.eta, tol):
                got[i] = np.asarray(tr.truth[2][i], dtype=np.float64)
    return metric("x_aug", got, tr.truth[2], [low[2] for low in tr.lows], case.dtype,
                  _natural(case, tr.inp, "x_aug"), k_own=k_own)


def failures(metrics: list[Metric]) -> list[str]:
    return [str(m) for m in metrics if not m.ok]


def assert_close(case: Case, backend: str, arrays=None, augment_too: bool = False,
                 k_own: float = K_OWN, tr: Truths | None = None):
    """Run `backend` on `case` and assert every metric within its bound (pytest helper); `tr`:
    the case's truths when already computed."""
    tr = truths(case, arrays) if tr is None else tr
    metrics = check_backend(tr, backend, k_own)
    if augment_too:
        metrics.append(check_augment(tr, k_own))
    bad = failures(metrics)
    assert not bad, f"{backend} on {case.short()}:\n  " + "\n  ".join(bad)
    return metrics


__all__ = ["augment", "loss_and_grad", "step", "projection", "direction_rows", "group_ranges",
           "Case", "build", "bias_vector", "truths", "check_backend", "check_augment",
           "assert_close", "replace", "KINDS", "LAYOUTS", "DTYPES", "Metric"]
