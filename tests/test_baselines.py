"""ISDA and ME-ADA (the paper's Table 5 baselines) against direct computations on tiny examples."""
import numpy as np
import pytest
import torch

from sea_kernels.op.reference import smoothed_hinge_loss
from sea_kernels.train import baselines
from sea_kernels.train.baselines import (
    ISDAEstimator,
    isda_logits,
    isda_loss,
    isda_sigma2,
    me_ada_generate,
    me_ada_round_epochs,
)


def _data(n, d, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, c, (n,), generator=g)
    w = torch.randn(d, c, generator=g, dtype=torch.float64)
    return x, y, w


def test_isda_estimator_is_the_pooled_covariance_of_all_rows_seen():
    d, c = 4, 3
    x, y, _ = _data(40, d, c, seed=1)
    y[:10] = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])     # first batch: class 2 absent
    full = ISDAEstimator(d, c, dtype=torch.float64)
    diag = ISDAEstimator(d, c, diagonal=True, dtype=torch.float64)
    assert not full.diagonal and diag.diagonal
    seen = 0
    for s in (0, 10, 17, 30):                                   # uneven batches
        e = {0: 10, 10: 17, 17: 30, 30: 40}[s]
        full.update(x[s:e], y[s:e])
        diag.update(x[s:e], y[s:e])
        seen = e
        for cls in range(c):
            rows = x[:seen][y[:seen] == cls].numpy()
            assert full.count[cls] == len(rows)
            if len(rows) == 0:
                assert torch.all(full.cov[cls] == 0) and torch.all(full.mean[cls] == 0)
                continue
            mean = rows.mean(0)
            cov = (rows - mean).T @ (rows - mean) / len(rows)  # biased, as ISDA's estimator
            np.testing.assert_allclose(full.mean[cls].numpy(), mean, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(full.cov[cls].numpy(), cov, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(diag.cov[cls].numpy(), np.diag(cov), rtol=1e-10,
                                       atol=1e-14)


def test_isda_full_covariance_threshold():
    assert baselines.ISDA_FULL_COV_MAX_DIM == 512
    assert not ISDAEstimator(512, 2).diagonal
    assert ISDAEstimator(513, 2).diagonal
    assert ISDAEstimator(513, 2).cov.shape == (2, 513)


@pytest.mark.parametrize("diagonal", [False, True])
def test_isda_surrogate_logits_equal_direct_computation(diagonal):
    d, c, ratio = 5, 4, 0.37
    x, y, w = _data(9, d, c, seed=2)
    g = torch.Generator().manual_seed(3)
    a = torch.randn(c, d, d, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(1, 2)                                # SPD per class
    if diagonal:
        cov = torch.diagonal(cov, dim1=1, dim2=2).contiguous()
    want = torch.empty(9, c, dtype=torch.float64)
    for i in range(9):
        s = cov[y[i]] if not diagonal else torch.diag(cov[y[i]])
        for j in range(c):
            dw = w[:, j] - w[:, y[i]]
            want[i, j] = x[i] @ w[:, j] + 0.5 * ratio * dw @ s @ dw
    got = isda_logits(x, y, w, cov, ratio)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.gather(1, y[:, None]), (x @ w).gather(1, y[:, None]),
                               rtol=1e-12, atol=1e-12)         # the target logit is not shifted
    # the gradient flows through W in both terms (Σ constant): compare with the direct formula
    wr = w.clone().requires_grad_(True)
    isda_loss(x, y, wr, cov, ratio, lam=0.5, delta=0.2).backward()
    wd = w.clone().requires_grad_(True)
    rows = []
    for i in range(9):
        s = cov[y[i]] if not diagonal else torch.diag(cov[y[i]])
        dw = wd - wd[:, y[i]][:, None]
        rows.append(x[i] @ wd + 0.5 * ratio * ((s @ dw) * dw).sum(0))
    smoothed_hinge_loss(torch.stack(rows), y, 0.5, 0.2).backward()
    torch.testing.assert_close(wr.grad, wd.grad, rtol=1e-12, atol=1e-12)


def test_isda_sigma2_is_zero_at_zero_ratio_and_zero_weight():
    x, y, w = _data(6, 3, 3)
    cov = torch.eye(3, dtype=torch.float64).expand(3, 3, 3).clone()
    torch.testing.assert_close(isda_logits(x, y, w, cov, 0.0), x @ w)
    assert torch.all(isda_sigma2(torch.zeros_like(w), y, cov) == 0)


def test_me_ada_round_epochs():
    assert me_ada_round_epochs(100, 2) == [33, 66]
    assert me_ada_round_epochs(3, 2) == [1, 2]
    assert me_ada_round_epochs(10, 1) == [5]
    with pytest.raises(ValueError, match="me_ada_rounds=2 needs epochs ≥ 3"):
        me_ada_round_epochs(2, 2)


def test_me_ada_one_step_equals_the_hand_gradient():
    """One ascent step from x0: x1 = Π(x0 + lr (W(p̃ − y) + β W ∂H/∂z)), the distance term
    being 0."""
    x, y, w = _data(7, 4, 3, seed=4)
    lam, delta, lr, beta = 0.5, 0.3, 0.05, 2.0
    got = me_ada_generate(x, y, w, lam=lam, delta=delta, steps=1, lr=lr, gamma=1.0, beta=beta)
    onehot = torch.nn.functional.one_hot(y, 3).double()
    z = x @ w
    p_tilde = torch.softmax((z + delta * (1 - onehot)) / lam, dim=1)
    p = torch.softmax(z, dim=1)
    h = -(p * p.log()).sum(1, keepdim=True)
    dh_dz = -p * (p.log() + h)
    grad = (p_tilde - onehot) @ w.T + beta * dh_dz @ w.T
    want = torch.nn.functional.normalize(x + lr * grad, dim=1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_me_ada_generation_properties():
    x, y, w = _data(50, 6, 4, seed=5)
    out = me_ada_generate(x, y, w, chunk_rows=16)              # chunking must not matter
    torch.testing.assert_close(out, me_ada_generate(x, y, w))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(50, dtype=torch.float64))
    assert not torch.equal(out, x)
    # without the entropy term, small ascent steps raise every row's loss (to first order the
    # renormalisation keeps the tangential part of the gradient)
    up = me_ada_generate(x, y, w, beta=0.0, lr=1e-3, steps=3)
    gain = smoothed_hinge_loss(up @ w, y, reduction="none") - smoothed_hinge_loss(x @ w, y,
                                                                                  reduction="none")
    assert torch.all(gain > 0)
    # a huge γ (with a step that keeps the pull stable) keeps x0
    near = me_ada_generate(x, y, w, gamma=1e4, lr=1e-4, steps=15)
    assert (near - x).norm(dim=1).max() < 1e-2
