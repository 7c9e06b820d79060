"""The C++ op is exact at every margin (issue #8, docs/design.md §3).

Checked against `direct`, written here from the formulas WITHOUT Gram space (no K = XXᵀ, no
M = WᵀW): the exact direction a'_c = softmax_{c≠y}(z)_c, a'_y = −1 (sea_neg: softmax(z)); g = W a';
the masked-diagonal softmax Q over x_jᵀΠ(g_i)/α; ĝ = QX; x̃ = Π(x + η Π(ĝ)); the loss
ℓ = λ·softplus(t), t = log Σ_{c≠y} e^{z̃_c − z̃_y}; D = diag(s)(softmax(z̃) − Y); dW = X̃ᵀD.
float64 direct is the truth; for float32 inputs the op's error must stay within twice the error of
the same direct computation run in float32 (its conditioning) plus a small multiple of float32's ε
(the scheme of tests/helpers.py). Logit margins from 1λ to 1000λ, a weight of scale 30 (margins of
thousands of λ), and the cancelling reproducer (‖ĝ‖ ≪ 1: the kernel recomputes such rows directly).
"""
import math

import pytest
import torch

try:
    import sea_kernels._C  # noqa: F401  (registers the op)
except Exception as exc:  # not built, or built against another torch
    pytest.skip(f"C++ extension sea_kernels._C not importable ({type(exc).__name__}: {exc})",
                allow_module_level=True)

import sea_kernels

OP = torch.ops.sea_kernels.sea_fwd_cpu
PAPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)
MARGINS = [1, 10, 20, 50, 100, 300, 1000]
# float32: allowed error on top of twice the float32 direct computation's own error.
TOL32 = 2e-5
TOL64 = 1e-12


def unit(v):
    n = v.norm(dim=1, keepdim=True)
    return torch.where(n > 0, v / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(v))


def direct(x, labels, w, s, *, alpha, eta, lam, delta, negative_only=False):
    """Per-row losses, dW = ∂(Σ s_i ℓ_i)/∂W and X̃, paper-literal with the exact formulas, in x's
    dtype (pass float64 for the truth)."""
    b, C = x.shape[0], w.shape[1]
    onehot = torch.nn.functional.one_hot(labels, C).bool()
    z = (x @ w + delta * (~onehot).to(x.dtype)) / lam
    if negative_only:
        a = torch.softmax(z, 1)
    else:
        a = torch.softmax(z.masked_fill(onehot, -math.inf), 1).masked_fill(onehot, -1.0)
    g = unit(a @ w.T)
    # Zero rows of X are left out of q as the diagonal is: they add nothing to ĝ_i and only its
    # direction is used, so this is exact, and keeps ĝ_i's direction when the scores of the other
    # rows are so low (≤ −709) that their exponentials underflow next to a zero row's e^0.
    masked = torch.eye(b, dtype=torch.bool) | (x.abs().amax(1) == 0)[None, :]
    if b == 1:
        q = torch.zeros(1, 1, dtype=x.dtype)
    else:
        scores = (g @ x.T / alpha).masked_fill(masked, -math.inf)
        q = torch.nan_to_num(torch.softmax(scores, 1), nan=0.0)  # no partner left: q_i = 0
    x_aug = unit(x + eta * unit(q @ x))
    zt = (x_aug @ w + delta * (~onehot).to(x.dtype)) / lam
    others = zt.masked_fill(onehot, -math.inf)
    m = others.max(1).values
    t = m - zt.gather(1, labels[:, None])[:, 0] + torch.exp(others - m[:, None]).sum(1).log()
    loss = lam * (t.clamp_min(0) + torch.log1p(torch.exp(-t.abs())))
    d = (s * torch.sigmoid(t))[:, None] * (torch.softmax(others, 1) - onehot.to(x.dtype))
    return loss, x_aug.T @ d, x_aug


def run(x, labels, w, s, negative_only=False, compute_grad=True, **hyper):
    h = {**PAPER, **hyper}
    return OP(x, labels, w, s, h["alpha"], h["eta"], h["lam"], h["delta"], negative_only,
              compute_grad)[:2]  # (the third output, db, is empty without a bias)


def rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp_min(1e-300)).item()


def margin_problem(margin, lam=0.1, b=24, d=12, C=5, seed=0):
    """Clustered unit rows x_i ≈ e_{y_i} and a weight whose smallest clean logit margin
    l_iy − max_{c≠y} l_ic over the correctly labelled rows is exactly margin·λ; every fourth row
    carries a wrong label (a negative margin of the same size: a large loss)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(b) % C
    x = unit(torch.eye(d, dtype=torch.float64)[y] + 0.15 * torch.randn(b, d, generator=g,
                                                                        dtype=torch.float64))
    w1 = torch.eye(d, C, dtype=torch.float64) + 0.05 * torch.randn(d, C, generator=g,
                                                                   dtype=torch.float64)
    logits = x @ w1
    onehot = torch.nn.functional.one_hot(y, C).bool()
    gaps = logits.gather(1, y[:, None])[:, 0] - logits.masked_fill(onehot, -math.inf).max(1).values
    assert (gaps > 0).all()
    w = w1 * (margin * lam / gaps.min())
    labels = y.clone()
    labels[::4] = (y[::4] + 1) % C
    return x, labels, w


def check_against_direct(x, labels, w, s, dtype, negative_only=False, tol32=TOL32, tol64=TOL64,
                         own_factor=2, **hyper):
    """The op on (x, w) in `dtype` against direct() in float64 on the same rounded inputs: within
    tol64 in float64; in float32 within own_factor × the error of direct() run in float32 (the
    problem's own conditioning) + tol32."""
    h = {**PAPER, **hyper}
    xx, ww, ss = x.to(dtype), w.to(dtype), s.to(dtype)
    loss, grad = run(xx, labels, ww, ss, negative_only, **h)
    assert loss.dtype == grad.dtype == dtype
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    ref_loss, ref_grad, _ = direct(xx.double(), labels, ww.double(), ss.double(),
                                   negative_only=negative_only, **h)
    errs = {"loss": rel_err(loss, ref_loss), "dW": rel_err(grad, ref_grad)}
    if dtype == torch.float64:
        bounds = {"loss": tol64, "dW": tol64}
    else:
        own_loss, own_grad, _ = direct(xx, labels, ww, ss, negative_only=negative_only, **h)
        bounds = {"loss": own_factor * rel_err(own_loss, ref_loss) + tol32,
                  "dW": own_factor * rel_err(own_grad, ref_grad) + tol32}
    for name in errs:
        assert errs[name] <= bounds[name], (
            f"{name}: rel err {errs[name]:.3g} > {bounds[name]:.3g} ({dtype})")
    return errs


# ---- margins 1λ … 1000λ ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("margin", MARGINS)
def test_margins(margin, dtype):
    x, labels, w = margin_problem(margin)
    s = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(margin),
                   dtype=torch.float64)
    check_against_direct(x, labels, w, s, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("margin", [20, 100, 1000])
@pytest.mark.parametrize("hyper", [dict(eta=0.05), dict(delta=1.0, lam=0.05), dict(eta=0.0)],
                         ids=["eta=0.05", "delta=1_lam=0.05", "eta=0"])
def test_margins_other_hyperparameters(margin, hyper, dtype):
    x, labels, w = margin_problem(margin, lam=hyper.get("lam", 0.1))
    check_against_direct(x, labels, w, torch.ones(x.shape[0], dtype=torch.float64), dtype,
                         **hyper)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("margin", [1, 50, 1000])
def test_margins_negative_only(margin, dtype):
    x, labels, w = margin_problem(margin)
    check_against_direct(x, labels, w, torch.ones(x.shape[0], dtype=torch.float64), dtype,
                         negative_only=True, delta=0.3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("margin", MARGINS)
def test_margins_through_fused_sea(margin, dtype):
    """The public op with backend="cpp": mean loss and its autograd dW."""
    x, labels, w = margin_problem(margin)
    ww = w.to(dtype).requires_grad_(True)
    loss = sea_kernels.fused_sea(x.to(dtype), labels, ww, backend="cpp", **PAPER)
    loss.backward()
    b = x.shape[0]
    ref_loss, ref_grad, _ = direct(x.to(dtype).double(), labels, w.to(dtype).double(),
                                   torch.full((b,), 1.0 / b, dtype=torch.float64), **PAPER)
    assert torch.isfinite(loss) and torch.isfinite(ww.grad).all()
    tol = TOL64 if dtype == torch.float64 else None
    if tol is None:
        own_loss, own_grad, _ = direct(x.float(), labels, w.float(), torch.full((b,), 1.0 / b),
                                       **PAPER)
        tol_loss = 2 * rel_err(own_loss.mean(), ref_loss.mean()) + TOL32
        tol_grad = 2 * rel_err(own_grad, ref_grad) + TOL32
    else:
        tol_loss = tol_grad = tol
    assert rel_err(loss.detach(), ref_loss.mean()) <= tol_loss
    assert rel_err(ww.grad, ref_grad) <= tol_grad


def test_direction_is_exact_beyond_the_rounding_of_p_y():
    """At 50λ (beyond 36.7λ, where p_y − 1 rounds to 0 even in float64) the target-class term of
    the direction still counts: the op differs from what the direction without −w_y would give."""
    x, labels, w = margin_problem(50)
    s = torch.ones(x.shape[0], dtype=torch.float64)
    loss, grad = run(x, labels, w, s)
    neg_loss, neg_grad = run(x, labels, w, s, negative_only=True)
    ref_loss, ref_grad, _ = direct(x, labels, w, s, **PAPER)
    assert rel_err(grad, ref_grad) < TOL64
    assert rel_err(neg_grad, ref_grad) > 1e-3


# ---- a large weight: margins of thousands of λ --------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("d,C", [(16, 10), (48, 151)], ids=["d16_C10", "d48_C151"])
def test_large_weight(dtype, tol, d, C):
    """W = 30·randn(d, C) on 64 unit rows: loss and dW within `tol` of the float64 direct
    computation (x̃ is not returned by the op)."""
    g = torch.Generator().manual_seed(d + C)
    x = unit(torch.randn(64, d, generator=g, dtype=torch.float64)).to(dtype)
    w = (30 * torch.randn(d, C, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, C, (64,), generator=g)
    s = torch.full((64,), 1 / 64, dtype=dtype)
    loss, grad = run(x, labels, w, s)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    ref_loss, ref_grad, _ = direct(x.double(), labels, w.double(), s.double(), **PAPER)
    assert rel_err(loss, ref_loss) <= tol
    assert rel_err(grad, ref_grad) <= tol


# ---- rows where Gram space cannot be trusted -----------------------------------------------------

REPRO = [[0.6, 0.8], [0.0, 1.0], [1e-3, -1.0]]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-14)],
                         ids=["float32", "float64"])
def test_cancelling_reproducer(dtype, tol):
    """x = Π([[.6, .8], [0, 1], [1e-3, −1]]), W = 0: q is uniform and ĝ_0 = (x_1 + x_2)/2 nearly
    cancels (‖ĝ_0‖² ≈ 2.5e-7 ≪ max K_jj = 1). With W = 0, C = 2, y_0 = 0 and row weights e_0,
    dW = x̃_0 D_0ᵀ with D_0 = (−½, ½), so the op's dW shows x̃_0. Gram space alone was off by
    8e-3 in float32 (r_0 from a cancelled ‖ĝ_0‖²); the row is untrusted and taken from
    ĝ_0 = q_0 X, norms, (QL)_0 and its share of dW alike: as exact as the direct value."""
    x = unit(torch.tensor(REPRO, dtype=torch.float64)).to(dtype)
    w = torch.zeros(2, 2, dtype=dtype)
    labels = torch.tensor([0, 1, 0])
    s = torch.tensor([1.0, 0.0, 0.0], dtype=dtype)
    _, grad = run(x, labels, w, s)
    _, _, x_aug = direct(x.double(), labels, w.double(), s.double(), **PAPER)
    assert torch.isfinite(grad).all()
    assert (grad[:, 1] * 2 - x_aug[0]).abs().max().item() <= tol
    assert (grad[:, 0] * -2 - x_aug[0]).abs().max().item() <= tol
    # Every row, every weight.
    s = torch.tensor([0.3, 0.5, 0.7], dtype=dtype)
    check_against_direct(x.double(), labels, w.double(), s.double(), dtype, tol32=1e-6)


def near_cancelling_problem(spread, seed=0):
    """Six rows ≈ v and five ≈ −v (each unit(±v + spread·noise)) and eight pairs p, ≈ −p: the rows
    sum to ≈ v, so under a uniform q (α = 1e6 makes S_ij ≤ 1e-6) each row ≈ v has
    ĝ_i = Σ_{j≠i} x_j/(b − 1) ≈ spread·noise/5: ‖ĝ_i‖² ≪ max K_jj = 1."""
    g = torch.Generator().manual_seed(seed)
    d, C = 24, 6
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    v, p = unit(randn(1, d)), unit(randn(8, d))
    x = unit(torch.cat([v + spread * randn(6, d), -v + spread * randn(5, d), p,
                        -p + spread * randn(8, d)]))
    w = 0.5 * randn(d, C)
    labels = torch.randint(0, C, (x.shape[0],), generator=g)
    return x, labels, w, torch.rand(x.shape[0], generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spread", [1e-1, 1e-2, 1e-3, 1e-4])
def test_near_cancelling_rows(dtype, spread):
    """Several nearly cancelling rows at once: loss and dW within the float32 scheme / 1e-12 of
    the direct computation (at spread 1e-4, ‖ĝ‖² ≈ 1e-10 is below float32's ε)."""
    x, labels, w, s = near_cancelling_problem(spread, seed=int(-math.log10(spread)))
    check_against_direct(x, labels, w, s, dtype, alpha=1e6)


def test_n2_cancels():
    """x_1 ≈ −x_0, η = 1: u_0 = x_0 + ηΠ(ĝ_0) has norm 0.01, and n_0² = K_00 + 2ηr x_0ᵀĝ_0 + η²
    cancels to 1e-4 from O(1) terms in Gram space (float32 dW was off by 1.2e-4); such rows take
    n from the vector u. (One label for both rows: with labels 0, 1 dW = (x̃_0 − x̃_1)D_0ᵀ ≈ 0.)"""
    x = unit(torch.tensor([[1.0, 0.0], [-1.0, 0.01]], dtype=torch.float64))
    for dtype in (torch.float32, torch.float64):
        check_against_direct(x, torch.tensor([0, 0]), torch.zeros(2, 2, dtype=torch.float64),
                             torch.tensor([1.0, 0.3], dtype=torch.float64), dtype, eta=1.0)


@pytest.mark.parametrize("spread", [0.06, 0.047])
def test_zero_row_takes_q(spread):
    """Rows e_1, e_2, 0 and ḡ_0 ∝ (0.998, −0.06) at α = 1e-3: S_01 = −60 and the zero row takes
    q_0 ≈ 1, so ĝ_0 = 8.7e-27·e_2 is tiny but has a direction; in float32 its ‖ĝ_0‖² underflows
    (Gram space: 0, x̃_0 = e_1) or is subnormal. The recomputed ĝ_0 is scaled before its norm."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, math.sqrt(1 - spread ** 2)], [0.0, -spread]], dtype=torch.float64)
    check_against_direct(x, torch.zeros(3, dtype=torch.long), w, torch.ones(3, dtype=torch.float64),
                         torch.float32, alpha=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_zero_row_beside_flushed_scores(dtype):
    """ḡ_i = e_1 for every row, α = 1e-3: row 0's scores are 0 for the zero row x_1 and −894,
    −958 for x_2, x_3, whose exponentials underflow (e^x flushes below −87 / −708 by design), so
    the zero row took all of q_0 and ĝ_0 came out 0 (x̃_0 = x_0); zero rows are masked like the
    diagonal, and ĝ_0 keeps its direction ≈ x_2."""
    x = unit(torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.5], [-1.0, -0.3]],
                          dtype=torch.float64))
    w = torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([1.0, 0.4, 0.7, 0.2], dtype=torch.float64)
    check_against_direct(x, torch.zeros(4, dtype=torch.long), w, s, dtype, alpha=1e-3)
    check_against_direct(x, torch.zeros(4, dtype=torch.long), w, s, dtype, alpha=1e-3,
                         negative_only=True)


def test_only_zero_partners():
    """Every other row is zero: q_i = 0, ĝ_i = 0 and x̃_i = Π(x_i)."""
    x = torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        check_against_direct(x, torch.tensor([0, 1, 0]), w, torch.ones(3, dtype=torch.float64),
                             dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("C", [6, 40], ids=["M_route", "AWt_route"])
def test_nearly_parallel_weight_columns(dtype, C):
    """W = v·1ᵀ + 1e-4·noise: g_i = W a'_i ≈ 1e-4 ‖W‖, and ‖g_i‖² = a'ᵀ(WᵀW)a' (C ≤ 2b) loses
    its digits as ‖ĝ‖² does, and the scores A'Lᵀ against x_jᵀg_i (dW was off by 0.47 in float32,
    9e-10 in float64); such rows take ‖g_i‖² and their scores from their row of G = A'Wᵀ. The
    problem stays ill-conditioned (κ = ‖W‖/‖g‖ ≈ 1e4), so the bounds are those of the fuzz
    oracle: 4 × the float32 direct error, and ε κ/α ≈ 2e-11 in float64."""
    g = torch.Generator().manual_seed(C)
    b, d = 16, 12
    x = unit(torch.randn(b, d, generator=g, dtype=torch.float64))
    v = torch.randn(d, 1, generator=g, dtype=torch.float64)
    w = 3 * (v + 1e-4 * torch.randn(d, C, generator=g, dtype=torch.float64))
    labels = torch.randint(0, C, (b,), generator=g)
    check_against_direct(x, labels, w, torch.rand(b, generator=g, dtype=torch.float64), dtype,
                         own_factor=4, tol64=2e-11, alpha=0.1)


def test_classes_below_two_are_refused():
    x = unit(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2 classes"):
        run(x, torch.zeros(4, dtype=torch.long), torch.randn(3, 1, dtype=torch.float64),
            torch.ones(4, dtype=torch.float64))
