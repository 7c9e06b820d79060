"""The spec checked against the paper's own statements (Props. 2–4, Eqs. 10–11, 15)."""
import pytest
import torch
from helpers import make_problem

from sea_kernels import reference


def test_cross_entropy_is_the_special_case():
    """Remark after Prop. 3: δ = 0, λ = 1 gives cross-entropy."""
    x, y, w = make_problem(9, 7, 5)
    logits = x @ w
    assert torch.allclose(reference.smoothed_hinge_loss(logits, y, lam=1.0, delta=0.0),
                          torch.nn.functional.cross_entropy(logits, y))


def test_smoothed_hinge_tends_to_hinge():
    """Eq. 12 is the λ → 0 limit of Eq. 15."""
    x, y, w = make_problem(9, 7, 5)
    logits = x @ w
    delta = 0.5
    others = logits.masked_fill(torch.nn.functional.one_hot(y, 5).bool(), float("-inf"))
    hinge = torch.clamp(delta + others.max(1).values - logits.gather(1, y[:, None])[:, 0], min=0)
    smooth = reference.smoothed_hinge_loss(logits, y, lam=1e-4, delta=delta, reduction="none")
    assert torch.allclose(smooth, hinge, atol=1e-3)


@pytest.mark.parametrize("lam,delta", [(0.1, 0.0), (1.0, 1.0), (0.05, 1.0)])
def test_feature_gradient_is_prop4(lam, delta):
    """Prop. 4: ∇_x ℓ = Σ_c p_c w_c − w_y equals autograd of Eq. 15 (per example)."""
    x, y, w = make_problem(6, 11, 4)
    xg = x.clone().requires_grad_(True)
    reference.smoothed_hinge_loss(xg @ w, y, lam, delta, reduction="sum").backward()
    assert torch.allclose(reference.feature_gradient(x, y, w, lam, delta), xg.grad, atol=1e-12)


def test_projection_is_the_entropic_optimum():
    """Prop. 2: q maximises Σ_j q_j x_jᵀḡ_i + α H(q) over the simplex on j ≠ i."""
    x, y, w = make_problem(6, 11, 4)
    alpha = 0.05
    g = reference.feature_gradient(x, y, w)
    q = reference.projection_weights(x, g, alpha)
    assert torch.allclose(q.diagonal(), torch.zeros(6, dtype=q.dtype))
    assert torch.allclose(q.sum(1), torch.ones(6, dtype=q.dtype))
    gain = reference.unit(g) @ x.T

    i = 2
    off = [j for j in range(6) if j != i]
    best = (q[i, off] * gain[i, off]).sum() - alpha * (q[i, off] * q[i, off].log()).sum()
    torch.manual_seed(1)
    for _ in range(200):
        p = torch.distributions.Dirichlet(torch.ones(5, dtype=torch.float64)).sample()
        value = (p * gain[i, off]).sum() - alpha * (p * p.log()).sum()
        assert value <= best + 1e-12


def test_dominant_diagonal_gives_no_nan():
    """α = 0.01 with x_i ∥ g_i: masking before the softmax keeps q finite (subtracting after
    it, as the authors' code does, gives 0/0)."""
    x, y, w = make_problem(8, 16, 3)
    g = reference.feature_gradient(x, y, w)
    x = reference.unit(torch.cat([reference.unit(g[:1]) * 100 + x[:1], x[1:]]))
    q = reference.projection_weights(x, reference.feature_gradient(x, y, w), 0.01)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(1), torch.ones(8, dtype=q.dtype))


@pytest.mark.parametrize("direction", reference.DIRECTIONS)
def test_augment_directions(direction):
    x, y, w = make_problem(10, 12, 4)
    gen = torch.Generator().manual_seed(0)
    xa = reference.augment(x, y, w, direction=direction, eta=0.4, generator=gen)
    assert xa.shape == x.shape and torch.isfinite(xa).all()
    if direction == "none":
        assert torch.equal(xa, x)
    elif direction == "adv":
        assert torch.allclose(xa, x + 0.4 * reference.feature_gradient(x, y, w))
    else:
        assert torch.allclose(xa.norm(dim=1), torch.ones(10, dtype=x.dtype))
        assert not torch.allclose(xa, x)


def test_eta_zero_and_single_example_leave_features_unmoved():
    x, y, w = make_problem(5, 6, 3, normalise=False)
    assert torch.allclose(reference.augment(x, y, w, eta=0.0), reference.unit(x))
    assert torch.allclose(reference.augment(x[:1], y[:1], w), reference.unit(x[:1]))


def test_sea_moves_toward_other_examples_and_raises_the_loss():
    """The projected direction is adversarial: on average the loss goes up after augmentation."""
    x, y, w = make_problem(64, 32, 5, seed=3)
    before = reference.smoothed_hinge_loss(x @ w, y)
    after = reference.sea_loss(x, y, w, eta=0.4)
    assert after > before


def test_loss_and_grad_hold_the_augmentation_fixed():
    """dW is the gradient of ℓ(X̃ W) with X̃ frozen (Alg. 1, step 6)."""
    x, y, w = make_problem(7, 9, 4)
    xa = reference.augment(x, y, w)
    wg = w.clone().requires_grad_(True)
    reference.smoothed_hinge_loss(xa @ wg, y).backward()
    loss, grad = reference.sea_loss_and_grad(x, y, w)
    assert torch.allclose(grad, wg.grad, atol=1e-14)
    assert torch.allclose(loss, reference.smoothed_hinge_loss(xa @ w, y))


def test_bad_direction_and_reduction():
    x, y, w = make_problem(3, 4, 2)
    with pytest.raises(ValueError, match="direction"):
        reference.augment(x, y, w, direction="sideways")
    with pytest.raises(ValueError, match="reduction"):
        reference.smoothed_hinge_loss(x @ w, y, reduction="avg")


MARGINS = [1, 10, 20, 50, 100, 300, 1000]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_and_its_gradient_are_exact_at_every_margin(dtype):
    """ℓ = λ·softplus(t) and its autograd gradient σ(t)(u − e_y) against 60-digit arithmetic, target
    logit 1λ … 1000λ ahead: relative error ≤ 8ε(1 + max|z|) (the condition number in z) wherever
    the exact value is a normal number (log_softmax rounds ℓ and p_y − 1 to 0 beyond ≈ 16.6λ in
    float32, 36.7λ in float64)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    lam, fi = 0.1, torch.finfo(dtype)
    g = torch.Generator().manual_seed(0)
    for margin in MARGINS:
        logits = torch.randn(6, 5, generator=g, dtype=torch.float64) * lam
        y = torch.randint(0, 5, (6,), generator=g)
        logits[torch.arange(6), y] += margin * lam
        lw = logits.to(dtype).requires_grad_(True)
        rows = reference.smoothed_hinge_loss(lw, y, lam, 0.0, reduction="none")
        rows.sum().backward()
        for i in range(6):
            z = [mpmath.mpf(float(v)) / mpmath.mpf(lam) for v in lw[i].tolist()]
            yi = int(y[i])
            rest = mpmath.fsum(mpmath.exp(zc - z[yi]) for c, zc in enumerate(z) if c != yi)
            tot = 1 + rest
            want = [mpmath.mpf(lam) * mpmath.log1p(rest)]
            want += [-rest / tot if c == yi else mpmath.exp(zc - z[yi]) / tot
                     for c, zc in enumerate(z)]
            got = [rows[i].item()] + lw.grad[i].tolist()
            tol = 8 * fi.eps * (1 + max(abs(float(v)) for v in z))
            for gv, wv in zip(got, want):
                if abs(wv) >= fi.tiny:
                    assert abs(gv - wv) <= tol * abs(wv), (margin, i, gv, float(wv))
                else:
                    assert abs(gv) <= 2 * fi.tiny


@pytest.mark.parametrize("margin", MARGINS)
def test_gradient_direction_is_the_feature_gradient_scaled(margin):
    """gradient_direction = feature_gradient/(1 − p_y) (a positive row scale, so ḡ and Q are the
    same); in float32 it keeps the −w_y term that p_y − 1 loses beyond ≈ 16.6λ."""
    x, y, w = make_problem(9, 7, 4, seed=margin)
    w = w + margin * 0.1 * torch.linalg.pinv(x) @ torch.nn.functional.one_hot(y, 4).double()
    exact = reference.unit(reference.gradient_direction(x, y, w))
    if margin <= 20:  # in float64 p_y − 1 is still accurate enough here
        assert torch.allclose(reference.unit(reference.feature_gradient(x, y, w)), exact,
                              atol=1e-6)
    got = reference.unit(reference.gradient_direction(x.float(), y, w.float())).double()
    assert (got - exact).norm(dim=1).max() < 1e-5
    if margin >= 50:
        lost = reference.unit(reference.feature_gradient(x.float(), y, w.float())).double()
        assert (lost - exact).norm(dim=1).max() > 0.1
