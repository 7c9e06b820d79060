"""The table of op behaviours that every backend must get right (issue #14): each named case
builds its inputs (a `fuzz_oracle.Case` and, for hand-made inputs, the float64 arrays), says in
which dtypes it runs, which backend features it needs (groups, bias: read from the case) and how
many times the dtype's own error it may make (`k_own`; the rest of the bound is fuzz_oracle's
per-dtype TOL). tests/test_backends_agree.py runs every case on every backend that declares its
features and dtype, against the float64 (float64 cases: longdouble) NumPy oracle: loss, dW, db
and (torch, the path of sea_augment) x̃.

Sections: shapes and dtypes, hyper-parameters and reductions, margins 1λ…1000λ and extreme
weights, zero and tiny rows, cancelling directions, groups, bias, and the regressions (each once,
with its own input; the comment says what it caught).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import fuzz_oracle as fo
import numpy as np
import torch

from sea_kernels import reference

BOTH = ("float32", "float64")
F32 = ("float32",)
#: The multiple of the dtype's own error allowed for ordinary cases (tests/helpers.py's scheme);
#: ill-conditioned regressions from the fuzz campaign keep the fuzz bound fo.K_OWN = 8.
K_PLAIN = 2.0
HYPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)


@dataclass(frozen=True)
class Spec:
    name: str
    case: fo.Case
    arrays: Callable | None = None      # () → (x, labels, W, row_weights[, bias]) float64
    dtypes: tuple = BOTH
    k_own: float = K_PLAIN
    bias: bool = False                  # arrays return a bias (a case with case.bias has one)
    extra: Callable | None = None       # (backend, case) → None: a case-specific assertion
    xfail: tuple = ()                   # backends known to fail it (strict: a fix must say so)
    notes: str = ""

    def needs(self) -> frozenset:
        out = set()
        if self.case.group_size is not None:
            out.add("groups")
        if self.bias or self.case.bias is not None:
            out.add("bias")
        return frozenset(out)


@dataclass(frozen=True)
class Row:
    """One (case, dtype) of the table."""
    spec: Spec
    case: fo.Case = field(compare=False)

    @property
    def id(self) -> str:
        wd = f"-w{self.case.weight_dtype}" if self.case.weight_dtype else ""
        return f"{self.spec.name}-{self.case.dtype}{wd}"

    def arrays(self):
        return None if self.spec.arrays is None else self.spec.arrays()


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return np.where(n > 0, a / np.where(n > 0, n, 1), 0)


def case(b, d, c, **kw):
    return fo.Case(b=b, d=d, c=c, **{**HYPER, **kw})


def _rw(b, seed=0):
    return np.random.default_rng([seed, 7]).uniform(0.1, 1.1, b)


# ---- builders of hand-made inputs ---------------------------------------------------------------

def margin_arrays(margin, lam=0.1, b=24, d=12, c=5, seed=0):
    """Clustered unit rows x_i ≈ e_{y_i}, W scaled so that the smallest clean logit margin is
    exactly margin·λ; every fourth row carries a wrong label (a negative margin of that size)."""
    rng = np.random.default_rng(seed)
    y = np.arange(b) % c
    x = unit(np.eye(d)[y] + 0.15 * rng.standard_normal((b, d)))
    w1 = np.eye(d, c) + 0.05 * rng.standard_normal((d, c))
    logits = x @ w1
    other = np.where(np.eye(c, dtype=bool)[y], -np.inf, logits).max(axis=1)
    gaps = logits[np.arange(b), y] - other
    assert (gaps > 0).all()
    w = w1 * (margin * lam / gaps.min())
    labels = y.copy()
    labels[::4] = (y[::4] + 1) % c
    return x, labels, w, _rw(b, margin)


def w30_arrays(b, d, c, seed):
    """W = 30·randn on unit rows: margins of thousands of λ."""
    rng = np.random.default_rng(seed)
    return (unit(rng.standard_normal((b, d))), rng.integers(0, c, b),
            30 * rng.standard_normal((d, c)), rng.uniform(0.1, 1.1, b))


def near_cancelling_pairs(level, b=9, d=16, seed=0):
    """Row 0's partners come in nearly opposite pairs (v, −v + p): at a huge α (q ≈ uniform)
    ‖ĝ₀‖² ≈ level; W random O(1)."""
    rng = np.random.default_rng(seed)
    h = (b - 1) // 2
    v = unit(rng.standard_normal((h, d)))
    p = rng.standard_normal((h, d))
    p = p / np.linalg.norm(p) * level ** 0.5 * (b - 1)
    x = unit(np.concatenate([rng.standard_normal((1, d)), v, -v + p]))
    return x, rng.integers(0, 4, b), rng.standard_normal((d, 4)), _rw(b, seed)


def near_cancelling_clusters(spread, seed=0):
    """Six rows ≈ v, five ≈ −v and eight pairs p, ≈ −p: under a uniform q (α = 1e6) each row ≈ v
    has ‖ĝ_i‖ ≈ spread/5 ≪ 1 (several nearly cancelling rows at once)."""
    rng = np.random.default_rng(seed)
    d, c = 24, 6
    v, p = unit(rng.standard_normal((1, d))), unit(rng.standard_normal((8, d)))
    x = unit(np.concatenate([v + spread * rng.standard_normal((6, d)),
                             -v + spread * rng.standard_normal((5, d)), p,
                             -p + spread * rng.standard_normal((8, d))]))
    return x, rng.integers(0, c, len(x)), 0.5 * rng.standard_normal((d, c)), _rw(len(x), seed)


def parallel_columns(b, d, c, spread, seed, scale=3.0):
    """W's columns nearly equal: g_i = W a'_i cancels (κ = ‖W‖/‖g‖ ≈ 1/spread)."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((b, d)))
    w = scale * (rng.standard_normal((d, 1)) + spread * rng.standard_normal((d, c)))
    return x, rng.integers(0, c, b), w, _rw(b, seed)


def one_hot_arrays(b=18, d=8, c=3, seed=7):
    """p one-hot at class 0 to the last bit for rows labelled 0 (g_i = 0 there: a ≥ 1000λ
    margin); row 0 is labelled 1 and has an O(1) gradient."""
    rng = np.random.default_rng(seed)
    u = np.ones((1, d)) / math.sqrt(d)
    x = unit(unit(rng.standard_normal((b, d))) + 3 * u)
    w = np.zeros((d, c))
    w[:, 0] = 200 * u[0]
    y = np.zeros(b, dtype=np.int64)
    y[0] = 1
    return x, y, w, _rw(b, seed)


def dominant_diagonal_arrays(b=20, d=16, c=4, seed=3):
    """x_i nearly parallel to its own g_i at α = 0.01: the masked diagonal would dominate S."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((b, d)))
    y = rng.integers(0, c, b)
    w = rng.standard_normal((d, c)) * 3 / math.sqrt(d)
    g = reference.feature_gradient(torch.from_numpy(x), torch.from_numpy(y),
                                   torch.from_numpy(w)).numpy()
    return unit(x + 20 * unit(g)), y, w, _rw(b, seed)


def random_arrays(b, d, c, seed, zero_rows=(), bias=None, wscale=None):
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((b, d)))
    x[list(zero_rows)] = 0
    y = rng.integers(0, c, b)
    w = rng.standard_normal((d, c)) * (3 / math.sqrt(d) if wscale is None else wscale)
    out = (x, y, w, _rw(b, seed))
    return out if bias is None else out + (bias * rng.standard_normal(c),)


def fixed(x, y, w, rw=None, bias=None, normalise=False):
    """Hand-written inputs as arrays (rows normalised when asked)."""
    x = unit(x) if normalise else np.asarray(x, dtype=np.float64)
    out = (x, np.asarray(y, dtype=np.int64), np.asarray(w, dtype=np.float64),
           np.ones(len(x)) if rw is None else np.asarray(rw, dtype=np.float64))
    return out if bias is None else out + (np.asarray(bias, dtype=np.float64),)


CANCELLING = [[0.6, 0.8], [0.0, 1.0], [1e-3, -1.0]]


def underflow_rows(tiny_row=0.0):
    """x₀ = e₁, x₁ with x₁ᵀḡ₀ = −0.3, x₂ = (0, tiny_row), α = 1e-3: S₀₁ = −300, S₀₂ = 0. A zero
    row kept in took all of q₀ in float32 and x̃₀ = Π(x₀); the exact direction is x₁ (a zero row)
    or e₂ (a tiny row: only exactly zero rows are masked)."""
    return ([[1.0, 0.0], [0.91 ** 0.5, -0.3], [0.0, tiny_row]], [0, 1, 0],
            [[0.0, 0.0], [0.0, 5.0]])


# ---- case-specific assertions (public API only) -------------------------------------------------

def _x_aug0_from_dw(backend, row, tol):
    """W = 0, C = 2, y_0 = 0 and row weights e_0: dW = x̃_0 D_0ᵀ with D_0 = (−½, ½), so the
    backend's own dW shows its x̃_0, which must be the direct value to `tol`."""
    from backends import device

    import sea_kernels
    case = row.case
    dev = device(backend)
    x = torch.tensor(unit(CANCELLING), dtype=getattr(torch, case.dtype))
    w = torch.zeros(2, 2, dtype=x.dtype, device=dev, requires_grad=True)
    y = torch.tensor([0, 1, 0])
    rows = sea_kernels.fused_sea(x.to(dev), y.to(dev), w, reduction="none", backend=backend,
                                 **fo.hyper(case))
    (grad,) = torch.autograd.grad(rows[0], w)
    want = fo.augment(x.double().numpy(), y.numpy(), np.zeros((2, 2)), case.alpha, case.eta,
                      case.lam, case.delta)[0]
    grad = grad.double().cpu().numpy()
    assert np.abs(grad[:, 1] * 2 - want).max() <= tol[case.dtype], (grad, want)
    assert np.abs(grad[:, 0] * -2 - want).max() <= tol[case.dtype], (grad, want)


def x_aug0_exact(backend, row):
    _x_aug0_from_dw(backend, row, {"float32": 1e-6, "float64": 1e-14})


def augment_within(tol):
    """sea_augment's x̃ within `tol` (max row distance) of the oracle's (the reproducer's own
    number; checked once, on the torch row: sea_augment takes no backend)."""
    def check(backend, row):
        if backend != "torch":
            return
        import sea_kernels
        tr = fo.truths(row.case, row.arrays())
        got = sea_kernels.sea_augment(tr.inp.x, tr.inp.labels, tr.inp.weight, bias=tr.inp.bias,
                                      direction=row.case.direction,
                                      group_size=row.case.group_size, **fo.hyper(row.case))
        err = np.linalg.norm(got.double().numpy() - tr.truth[2].astype(np.float64), axis=1)
        assert err.max() < tol, err
    return check


def moves_row0(backend, row):
    """The truth tells the moved row 0 from the unmoved one, Π(x₀) (so the case catches the
    bug): the unmoved loss is > 100× the true one."""
    if backend != "torch":
        return
    tr = fo.truths(row.case, row.arrays())
    x0 = torch.from_numpy(unit(tr.inp.x_r[:1]))
    logits = x0 @ torch.from_numpy(tr.inp.w_r)
    if tr.inp.b_r is not None:
        logits = logits + torch.from_numpy(tr.inp.b_r)
    unmoved = reference.smoothed_hinge_loss(logits, torch.from_numpy(tr.inp.y[:1]),
                                            row.case.lam, row.case.delta, "none")
    assert float(unmoved[0]) > 100 * float(tr.truth[0][0]), (unmoved, tr.truth[0][0])


# ---- the table ---------------------------------------------------------------------------------

SPECS: list[Spec] = []


def add(name, case_, arrays=None, dtypes=BOTH, **kw):
    SPECS.append(Spec(name, case_, arrays, dtypes, **kw))


# shapes (b = 1, b = 2, C = 2, d < C, C > 2b: ‖g‖ from rows of A'Wᵀ; C ≤ 2b: from WᵀW), layouts
for b, d, c in [(1, 3, 2), (2, 5, 3), (2, 130, 10), (7, 3, 151), (7, 130, 2), (19, 40, 5),
                (33, 17, 70), (256, 130, 151), (256, 1280, 2)]:
    add(f"shape_b{b}_d{d}_c{c}", case(b, d, c, reduction="none", seed=b * 100 + c))
add("layout_transposed", case(24, 60, 9, layout="transposed", seed=2))
add("layout_strided", case(24, 60, 9, layout="strided", reduction="none", seed=2))
# every dtype with its tolerance; half features with a float32 weight accumulate in float32
for dt in ("bfloat16", "float16"):
    add(f"half_{dt}", case(37, 96, 10, seed=11), dtypes=(dt,))
    SPECS.append(Spec(f"half_{dt}_weight_f32", fo.replace(case(21, 24, 9, seed=12),
                                                          weight_dtype="float32"), dtypes=(dt,)))
# hyper-parameters and reductions
for name, kw in {"alpha_1e3": dict(alpha=1e3), "alpha_1e-4": dict(alpha=1e-4),
                 "lam_0.01_delta_1": dict(lam=0.01, delta=1.0), "lam_100": dict(lam=100.0),
                 "lam_1_delta_1": dict(lam=1.0, delta=1.0), "eta_0": dict(eta=0.0),
                 "eta_10": dict(eta=10.0),
                 "all_extreme": dict(alpha=1e3, lam=0.01, eta=0.0, delta=2.0)}.items():
    add(f"hyper_{name}", case(12, 16, 4, seed=7, **kw))
for red in ("mean", "sum", "none"):
    for direction in ("sea", "sea_neg"):
        add(f"reduction_{red}_{direction}", case(19, 40, 7, alpha=0.02, eta=0.4, lam=0.5,
                                                 delta=1.0, reduction=red, direction=direction,
                                                 seed=5))
add("unnormalised_rows", case(17, 16, 5, unnormalised=True, seed=1))
add("unnormalised_eta_0", case(9, 13, 4, eta=0.0, unnormalised=True, reduction="none", seed=13))
add("row_weights_zero", case(9, 40, 6, reduction="none"),
    lambda: random_arrays(9, 40, 6, 3)[:3] + (np.zeros(9),))
add("row_weights_one_row", case(9, 40, 6, reduction="none"),
    lambda: random_arrays(9, 40, 6, 3)[:3] + (np.eye(9)[4],))
add("one_hot_rows", case(18, 8, 3, reduction="none"), one_hot_arrays)
add("one_hot_rows_sea_neg", case(18, 8, 3, reduction="none", direction="sea_neg"),
    one_hot_arrays)
add("dominant_diagonal", case(20, 16, 4, reduction="none"), dominant_diagonal_arrays)

# margins 1λ … 1000λ (p_y − 1 rounds to 0 beyond 16.6λ in float32, 36.7λ in float64;
# log_softmax rounded ℓ to 0; Triton's Σ e^{z − m} flushed beyond ≈ 87λ), wrong labels included
for m in (1, 10, 20, 50, 100, 300, 1000):
    add(f"margin_{m}", case(24, 12, 5, reduction="none"), lambda m=m: margin_arrays(m))
for m in (1, 50, 1000):
    add(f"margin_{m}_sea_neg", case(24, 12, 5, reduction="none", direction="sea_neg",
                                    delta=0.3), lambda m=m: margin_arrays(m))
add("margin_20_eta_0", case(24, 12, 5, eta=0.0, reduction="none"), lambda: margin_arrays(20))
add("margin_100_eta_0.05", case(24, 12, 5, eta=0.05, reduction="none"),
    lambda: margin_arrays(100))
add("margin_1000_delta_1_lam_0.05", case(24, 12, 5, delta=1.0, lam=0.05, reduction="none"),
    lambda: margin_arrays(1000, lam=0.05))
add("margin_300_d_ge_b", case(12, 16, 4, reduction="none"),   # ĝ via QK in the batched engine
    lambda: margin_arrays(300, b=12, d=16, c=4))
# the oracle's own clustered kind, all rows at the margin (a mean reduction)
add("margin_1000_clustered", case(16, 8, 4, kind="clustered", margin=1000, seed=1000))
# W = 30·randn on 64 unit rows: with a_y = p_y − 1 rounded x̃ was off by 0.84 … 1.08 (float32)
add("w30_d8_c4", case(64, 8, 4, reduction="none"), lambda: w30_arrays(64, 8, 4, 1))
add("w30_d48_c151", case(64, 48, 151, reduction="none"), lambda: w30_arrays(64, 48, 151, 2))

# zero and tiny rows (zero rows are masked out of q like the diagonal, docs/design.md §3)
for s in (0.06, 0.047):
    # rows e₁, e₂, 0, α = 1e-3: S₀₁ = −60 and the zero row takes q₀ ≈ 1; ĝ₀ = 8.7e-27·e₂ is
    # tiny but has a direction; ‖ĝ₀‖² underflows (s = 0.06) or is subnormal (0.047) in float32.
    add(f"zero_row_takes_q_{s}", case(3, 2, 2, alpha=1e-3),
        lambda s=s: fixed([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [0, 0, 0],
                          [[0.0, math.sqrt(1 - s * s)], [0.0, -s]]),
        extra=augment_within(1e-6))
# ḡ_i = e_1 for every row, α = 1e-3: the other rows' scores −894, −958 underflow beside the zero
# row's 0; unmasked, the zero row took all of q_0 and ĝ_0 = 0.
for direction in ("sea", "sea_neg"):
    add(f"zero_row_beside_flushed_scores_{direction}",
        case(4, 2, 2, alpha=1e-3, reduction="none", direction=direction),
        lambda: fixed(unit([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.5], [-1.0, -0.3]]), [0, 0, 0, 0],
                      [[0.0, 0.5], [0.0, 0.0]], [1.0, 0.4, 0.7, 0.2]))
# every other row zero: q_i = 0, x̃_i = Π(x_i)
add("only_zero_partners", case(3, 2, 2, reduction="none"),
    lambda: fixed([[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]], [0, 1, 0], [[1.0, -1.0], [0.5, 2.0]]))
# a zero row with η = 1e-20 (float32) / 1e-200 (float64): n² = η² underflows in Gram space
for dt, eta in (("float32", 1e-20), ("float64", 1e-200)):
    add(f"zero_row_tiny_eta_{dt}", case(3, 2, 2, eta=eta, reduction="none"),
        lambda: fixed([[0.6, 0.8], [0.0, 0.0], [-0.8, 0.6]], [0, 1, 1], [[1.0, -0.5], [0.3, 0.2]]),
        dtypes=(dt,), extra=augment_within(1e-6))
add("zero_row_underflow", case(3, 2, 2, alpha=1e-3, reduction="none"),
    lambda: fixed(*underflow_rows()), dtypes=F32, extra=moves_row0)
add("zero_row_underflow_bias", case(3, 2, 2, alpha=1e-3, reduction="none"),
    lambda: fixed(*underflow_rows(), bias=[0.3, -0.2]), dtypes=F32, bias=True, extra=moves_row0)
# x₂ = 1e-24·e₂: ‖x₂‖² = 0 in float32 but it has a direction: it takes q₀ as in float64
add("tiny_row_is_not_a_zero_row", case(3, 2, 2, alpha=1e-3, reduction="none"),
    lambda: fixed(*underflow_rows(1e-24)), dtypes=F32)
add("zero_rows_random", case(11, 6, 4, reduction="none"),
    lambda: random_arrays(11, 6, 4, 9, zero_rows=(1, 5, 6, 7, 10)))

# cancelling directions (docs/design.md §3: rows Gram space cannot resolve are recomputed)
# x = Π([[.6, .8], [0, 1], [1e-3, −1]]), W = 0: q uniform, ĝ₀ = (x₁ + x₂)/2 nearly cancels;
# x̃₀ was off by 8e-3 in float32 from a cancelled ‖ĝ₀‖² = q₀ᵀKq₀.
for direction in ("sea", "sea_neg"):
    add(f"cancelling_w0_{direction}", case(3, 2, 2, direction=direction, reduction="sum"),
        lambda: fixed(CANCELLING, [0, 1, 0], np.zeros((2, 2)), normalise=True),
        extra=x_aug0_exact if direction == "sea" else augment_within(1e-6))
add("cancelling_w_random", case(3, 2, 3, reduction="none"),
    lambda: fixed(CANCELLING, [0, 1, 2], np.random.default_rng(0).standard_normal((2, 3)),
                  [0.3, 0.5, 0.7], normalise=True))
for level in (1e-2, 1e-6, 1e-8):
    add(f"near_cancelling_pairs_{level:g}", case(9, 16, 4, alpha=1e9, reduction="none"),
        lambda level=level: near_cancelling_pairs(level))
for spread in (1e-1, 1e-4):
    add(f"near_cancelling_clusters_{spread:g}", case(27, 24, 6, alpha=1e6, reduction="none"),
        lambda spread=spread: near_cancelling_clusters(spread, int(-math.log10(spread))))
# x₁ ≈ −x₀, η = 1: n₀² = K₀₀ + 2ηr x₀ᵀĝ₀ + η² cancels to 1e-4 from O(1) terms (float32 dW off by
# 1.2e-4); n is taken from the vector u. (One label for both rows: else dW ≈ 0.)
add("n2_cancels", case(2, 2, 2, eta=1.0, reduction="none"),
    lambda: fixed(unit([[1.0, 0.0], [-1.0, 0.01]]), [0, 0], np.zeros((2, 2)), [1.0, 0.3]))
# W's columns nearly equal: ‖g_i‖² = a'ᵀ(WᵀW)a' is squared-conditioned (dW off by 0.47 in
# float32, 9e-10 in float64); both routes for ‖g‖ (C ≤ 2b: WᵀW, C > 2b: rows of A'Wᵀ). The
# problem stays ill-conditioned (κ ≈ 1e4): the fuzz bound.
for c in (6, 40):
    add(f"parallel_columns_c{c}", case(16, 12, c, alpha=0.1, reduction="none"),
        lambda c=c: parallel_columns(16, 12, c, 1e-4, c), k_own=fo.K_OWN)
add("parallel_columns_d3", case(6, 3, 4, alpha=0.1, eta=0.9, reduction="none"),
    lambda: parallel_columns(6, 3, 4, 1e-4, 1, scale=1.0), k_own=fo.K_OWN)

# groups: rows [kG, min((k+1)G, b)) projected alone (the oracle projects each group alone)
for b, g, d, c in [(8, 4, 6, 4), (7, 3, 6, 4), (6, 1, 6, 4), (5, 5, 6, 4), (5, 9, 6, 4),
                   (6, 5, 6, 4), (7, 2, 6, 4), (10, 3, 6, 4), (23, 5, 40, 70), (37, 16, 20, 100),
                   (130, 16, 33, 7), (256, 128, 64, 10), (40, 7, 20, 20), (50, 12, 18, 33)]:
    # (the last two: groups that start and end inside Triton's 16-row tiles, several key tiles)
    add(f"groups_b{b}_G{g}_c{c}", case(b, d, c, group_size=g, alpha=0.05, eta=0.8, lam=0.2,
                                       delta=0.5, reduction="none", seed=b * 10 + g))
add("groups_sea_neg_mean", case(7, 6, 4, group_size=3, direction="sea_neg", seed=4))
add("groups_sum", case(7, 6, 4, group_size=2, reduction="sum", seed=2))
add("groups_unnormalised_G1", case(9, 13, 4, group_size=1, unnormalised=True, seed=3))
for g in (2, 4):
    # zero rows inside groups; a group with no other non-zero row (and a zero row alone): q = 0
    add(f"groups_zero_rows_G{g}", case(13, 20, 6, group_size=g, reduction="none", bias=0.5),
        lambda: random_arrays(13, 20, 6, 5, zero_rows=(1, 4, 5, 9, 10, 11)))
add("groups_zero_rows_G4_nobias", case(11, 6, 4, group_size=4, reduction="none"),
    lambda: random_arrays(11, 6, 4, 9, zero_rows=(1, 5, 6, 7, 10)))
# groups of 3 where row 0's partners are both zero: q_0 = 0, the zero rows move to Π(x_0)
add("groups_only_zero_partners", case(6, 4, 3, group_size=3, alpha=0.05, lam=0.2),
    lambda: (lambda a: (np.concatenate([a[0][:1], np.zeros((2, 4)), a[0][3:]]),) + a[1:])(
        random_arrays(6, 4, 3, 3)))
# the zero-row underflow rows as the second group of three
add("groups_zero_row_underflow", case(6, 2, 2, group_size=3, alpha=1e-3, reduction="none"),
    lambda: (lambda a, u: fixed(np.concatenate([a[0], u[0]]), np.concatenate([a[1], u[1]]),
                                u[2]))(random_arrays(3, 2, 2, 1), underflow_rows()),
    dtypes=F32)


def _cancelling_group():
    """The cancelling reproducer as the middle group of three, between random groups."""
    rng = np.random.default_rng(5)
    x = unit(rng.standard_normal((8, 2)))
    x[3:6] = unit(CANCELLING)
    y = np.concatenate([rng.integers(0, 3, 3), [0, 1, 2], rng.integers(0, 3, 2)])
    return (x, y, 0.01 * rng.standard_normal((2, 3)), rng.uniform(0, 1, 8),
            np.array([0.2, -0.1, 0.05]))


add("groups_cancelling_group", case(8, 2, 3, group_size=3, reduction="none"), _cancelling_group,
    bias=True)
for direction in ("sea", "sea_neg"):
    add(f"groups_bias_hyper_{direction}", case(21, 17, 6, group_size=5, alpha=0.05, eta=0.4,
                                               lam=0.5, delta=1.0, direction=direction,
                                               reduction="none", bias=0.5, seed=8))

# bias: logits XW + 1bᵀ in the direction and the loss, never in the scores; db = Σ_i D_i
for red, direction, g in (("mean", "sea", None), ("sum", "sea_neg", 3), ("none", "sea", 3),
                          ("none", "sea_neg", None)):
    add(f"bias_{red}_{direction}_G{g}", case(7, 6, 5, alpha=0.05, lam=0.2, delta=0.5,
                                             reduction=red, direction=direction, group_size=g,
                                             bias=1.0, seed=3))
add("bias_strided", case(12, 9, 5, bias=2.0, layout="strided", seed=9))

# Triton: target logit 95λ ahead, Σ_{c≠y} e^{z_c − max} subnormal, 1/s overflowed (NaN loss)
add("subnormal_sum_95_lambda", case(2, 2, 2), lambda: fixed(np.eye(2), [0, 1],
                                                            [[9.5, 0.0], [0.0, 0.5]]))

# found by the fuzz suite (issue #8): each with the comment of what it caught; the fuzz bound
FOUND = [
    # b = 1 at margin ≈ 55: ℓ by log_softmax rounded to 0 (truth 5.5e-26), dW lost p̃_y − 1
    fo.Case(b=1, d=1, c=2, alpha=1e-3, eta=0.0, lam=0.01, dtype="float32", seed=0),
    # margin 100λ, a_y = p_y − 1 rounded to 0 (cpp): loss off by 68 %
    fo.Case(b=3, d=1, c=4, alpha=1e-3, eta=2.0, lam=0.01, wscale=1e-6, kind="clustered",
            margin=100, dtype="float32", seed=0),
    # fp16 inputs at margin 20λ, b = 1 (cpp)
    fo.Case(b=1, d=2, c=2, alpha=1e-3, eta=0.0, lam=10.0, wscale=1e-6, kind="clustered",
            margin=20, unnormalised=True, dtype="float16", seed=0),
    # the harness' own scale: dW = X̃ᵀD cancels to 2e-5 from O(0.5) terms (Triton)
    fo.Case(b=2, d=1, c=2, alpha=1e-3, lam=0.01, wscale=1e-6, dtype="float32", seed=0),
    # nearly parallel columns, ‖g_i‖² from a'ᵀ(WᵀW)a': dW off by 3 % (Triton, torch grad_norms)
    fo.Case(b=4, d=2, c=2, alpha=1e-3, lam=0.01, wscale=1e-6, kind="parallel_w",
            dtype="float32", seed=132),
    # the same at κ = 217, α = 1: dW 1.4× the bound on cpp
    fo.Case(b=3, d=3, c=2, alpha=1.0, lam=0.01, wscale=1e-6, kind="parallel_w",
            dtype="float32", seed=0),
    # κ ≈ 5e3: S and so x̃ off by 8e-3 (dW 100× the bound)
    fo.Case(b=5, d=3, c=4, alpha=0.1311, eta=0.8764, lam=0.09362, delta=1.08, wscale=1000,
            kind="parallel_w", duplicates=1, layout="strided", reduction="sum",
            dtype="float32", seed=843834254),
    # the same in float64 (relative error 7e-10 against 1e-10)
    fo.Case(b=41, d=63, c=7, alpha=0.01369, eta=1.938, lam=0.2018, delta=1.434, wscale=177.9,
            kind="parallel_w", duplicates=41, layout="transposed", reduction="sum",
            dtype="float64", seed=1979669058),
    # a zero row among identical rows at α = 1.6e-3: ‖ĝ_i‖² subnormal, x̃_i not unit (off 0.25)
    fo.Case(b=36, d=2, c=2, alpha=0.001561, eta=1.107, lam=0.09136, delta=2.0, wscale=0.001551,
            kind="identical", zero_rows=1, reduction="sum", dtype="float32", seed=1832655810),
    # the zero-row case in float64 at α = 1e-3: loss off by 1e-4, dW by 40 % on cpp
    fo.Case(b=6, d=2, c=6, alpha=0.001035, eta=1.895, lam=0.3565, wscale=0.0002063,
            zero_rows=1, layout="transposed", reduction="sum", direction="sea_neg",
            dtype="float64", seed=1732332354),
    # ĝ₂ ≈ 7e-45·x₂ subnormal in float32: sea_augment's x̃₂ off by 1.8e-3
    fo.Case(b=3, d=5, c=4, alpha=0.003963, eta=0.01535, lam=0.01904, delta=1.118, wscale=49.93,
            kind="identical", zero_rows=1, layout="strided", reduction="none", dtype="float32",
            seed=1890063718),
    # d = 1, η ≈ 1: n_i² cancels (1.4e-4 from O(1) terms) although ‖ĝ_i‖² ≈ 0.9
    fo.Case(b=23, d=1, c=8, alpha=0.4849, eta=1.012, lam=0.02149, delta=0.812, wscale=0.1233,
            duplicates=23, layout="strided", dtype="float32", seed=1931692919),
    # row 0's only non-zero partner scores ≈ −752 below the zero row's 0: the zero row took q₀
    # (cpp float32 loss 50–70 % off; the oracle itself underflowed until zero rows were masked)
    fo.Case(b=3, d=6, c=4, alpha=0.001, eta=1.125, lam=0.08666, delta=1.444, wscale=150.8,
            kind="clustered", margin=1000, one_class=True, zero_rows=1, reduction="none",
            dtype="float32", seed=1041177725),
    # S = A'Lᵀ/(α‖g‖) lose ε·κ/α: sea_augment's x̃ 25× the paper-literal error (4.5e-4)
    fo.Case(b=10, d=60, c=6, alpha=0.009343, eta=0.5178, lam=0.01, delta=0.6525, wscale=1000,
            kind="parallel_w", layout="strided", reduction="sum", dtype="float32",
            seed=1826642007),
    # cpp's untrusted rows formed L̃_i from a cancelling direct n_i: dW 4.3e-5 vs torch's 3.7e-6
    fo.Case(b=25, d=1, c=5, alpha=0.34164444990213333, eta=1.0737620300888362, lam=0.01,
            delta=2.0, wscale=2.7803498581839707, kind="parallel_w", layout="transposed",
            direction="sea_neg", dtype="float32", seed=1121496368),
    # W a'_i cancels (κ ≈ 3100) on duplicated rows: Triton's scores A'Lᵀ lost ε·κ/α
    fo.Case(b=7, d=8, c=5, alpha=0.2398198967061823, eta=1.8223600990438698,
            lam=0.13637164059148532, delta=0.5095235404668763, wscale=2.1253891802554712e-06,
            kind="parallel_w", duplicates=7, unnormalised=True, reduction="none",
            dtype="float32", seed=2443177990),
]
for i, found in enumerate(FOUND):
    dts = (found.dtype, "float64") if i == 12 else (found.dtype,)   # the zero-row case: both
    add(f"found{i:02d}_{found.kind}_b{found.b}", found, dtypes=dts, k_own=fo.K_OWN)


def rows() -> list[Row]:
    out = []
    for spec in SPECS:
        for dt in spec.dtypes:
            out.append(Row(spec, fo.replace(spec.case, dtype=dt)))
    ids = [r.id for r in out]
    assert len(ids) == len(set(ids)), "duplicate case names"
    return out


ROWS = rows()
