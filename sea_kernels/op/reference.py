"""Paper-literal SeA in plain PyTorch — the specification every backend is tested against.

Qian, Xu, Hu, "Semantic Adversarial Augmentation for Learning with Fixed Deep Features",
ECCV 2024 (Sec. 3, Alg. 1). Notation (docs/design.md §1):

    X ∈ R^{b×d}   mini-batch of fixed features (rows usually unit length)
    y ∈ [0, C)^b  labels, Y its one-hot matrix
    W ∈ R^{d×C}   linear classifier, no bias; logits L = X W
    α  projection temperature, η  augmentation step, λ  loss temperature, δ  margin

Everything here materialises the b×d matrices (G, ĝ, X̃) exactly as the paper writes them; it
is meant to be read next to the paper and run in float64, not to be fast. The fast backends
(op/torch_backend.py, the C++ and Triton kernels) compute the same functions in "Gram space"
without ever forming a b×d intermediate (docs/design.md §2, §5).

Conventions for the corner cases (shared by every backend):
* b = 1: there is no other example to project on, so ĝ = 0 and x̃ = Π(x).
* a zero gradient g_i (p_i one-hot at the label) stays zero: ḡ_i = 0, S_i = 0, so q_i is uniform
  over j ≠ i.
* a zero direction ĝ_i (b = 1, or the other examples cancel) leaves x_i unmoved: x̃_i = Π(x_i).
"""
from __future__ import annotations

import torch

from ..params import DIRECTIONS


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).to(dtype)


def unit(v: torch.Tensor) -> torch.Tensor:
    """Π(v): rows scaled to unit length; a zero row stays zero."""
    norm = v.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, v / torch.where(norm > 0, norm, 1), torch.zeros_like(v))


def margin_logits(logits: torch.Tensor, labels: torch.Tensor, lam: float,
                  delta: float) -> torch.Tensor:
    """Z = (L + δ(1 − Y)) / λ  — the tempered, margin-shifted logits of Eq. 15."""
    y = one_hot(labels, logits.shape[1], logits.dtype)
    return (logits + delta * (1 - y)) / lam


def smoothed_hinge_loss(logits, labels, lam=0.1, delta=0.0, reduction="mean"):
    """Eq. 15: ℓ_i = −λ log softmax(Z_i)[y_i]. δ = 0, λ = 1 is cross-entropy."""
    z = margin_logits(logits, labels, lam, delta)
    rows = -lam * torch.log_softmax(z, dim=1).gather(1, labels[:, None])[:, 0]
    return _reduce(rows, reduction)


def feature_gradient(x, labels, weight, lam=0.1, delta=0.0, negative_only=False):
    """Prop. 4: g_i = ∇_{x_i} ℓ = Σ_c p_c w_c − w_{y_i}, i.e. G = (P − Y) Wᵀ.

    With ``negative_only`` (the paper's SeA_Neg ablation) the target-class term is dropped:
    g_i = Σ_c p_c w_c = W p_i.
    """
    p = torch.softmax(margin_logits(x @ weight, labels, lam, delta), dim=1)
    a = p if negative_only else p - one_hot(labels, weight.shape[1], p.dtype)
    return a @ weight.T


def projection_weights(x, g, alpha=0.01):
    """Eq. 10: q_ij = softmax_{j≠i}(x_jᵀ ḡ_i / α), ḡ_i = g_i/‖g_i‖.

    The diagonal is set to −∞ *before* the max-subtracted softmax (removing it afterwards, as the
    authors' code does, divides 0 by 0 when the diagonal dominates). For b = 1 the row is all zero.
    """
    b = x.shape[0]
    if b == 1:
        return torch.zeros(1, 1, dtype=x.dtype, device=x.device)
    s = unit(g) @ x.T / alpha
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    return torch.softmax(s.masked_fill(eye, float("-inf")), dim=1)


def random_simplex_weights(b, dtype, device, generator=None):
    """`rand` ablation: q_i uniform on the simplex over j ≠ i (Dirichlet(1), diagonal zero)."""
    if b == 1:
        return torch.zeros(1, 1, dtype=dtype, device=device)
    e = -torch.log(torch.rand(b, b, dtype=dtype, device=device,
                              generator=generator).clamp_min(1e-30))
    e = e.masked_fill(torch.eye(b, dtype=torch.bool, device=device), 0)
    return e / e.sum(dim=1, keepdim=True)


def random_partner_weights(b, dtype, device, generator=None):
    """`mixup` ablation: q_i one-hot at a uniformly random partner j ≠ i."""
    if b == 1:
        return torch.zeros(1, 1, dtype=dtype, device=device)
    shift = torch.randint(1, b, (b,), device=device, generator=generator)
    partner = (torch.arange(b, device=device) + shift) % b
    return one_hot(partner, b, dtype)


def augment(x, labels, weight, *, direction="sea", alpha=0.01, eta=0.8, lam=0.1, delta=0.0,
            generator=None):
    """The augmented mini-batch X̃ (a constant for training: computed under no_grad).

    sea      Eq. 11: x̃_i = Π(x_i + η Π(ĝ_i)), ĝ_i = Σ_{j≠i} q_ij x_j with q from Eq. 10
    sea_neg  as sea, with g_i = Σ_c p_c w_c (target-class term removed)
    rand     as sea, with q_i uniform on the simplex
    mixup    as sea, with q_i one-hot at a random partner: x̃_i = Π(x_i + η Π(x_j))
    adv      Eq. 5: x̃_i = x_i + η g_i (the raw loss gradient, no projection, no Π)
    none     x̃ = x
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    with torch.no_grad():
        if direction == "none":
            return x.clone()
        if direction == "adv":
            return x + eta * feature_gradient(x, labels, weight, lam, delta)
        b = x.shape[0]
        if direction in ("sea", "sea_neg"):
            g = feature_gradient(x, labels, weight, lam, delta,
                                 negative_only=direction == "sea_neg")
            q = projection_weights(x, g, alpha)
        elif direction == "rand":
            q = random_simplex_weights(b, x.dtype, x.device, generator)
        else:
            q = random_partner_weights(b, x.dtype, x.device, generator)
        g_hat = q @ x
        return unit(x + eta * unit(g_hat))


def sea_loss(x, labels, weight, *, direction="sea", alpha=0.01, eta=0.8, lam=0.1, delta=0.0,
             reduction="mean", generator=None):
    """Alg. 1 step 6: the smoothed hinge loss of the augmented features, differentiable in W."""
    x_aug = augment(x, labels, weight, direction=direction, alpha=alpha, eta=eta, lam=lam,
                    delta=delta, generator=generator)
    return smoothed_hinge_loss(x_aug @ weight, labels, lam, delta, reduction)


def sea_loss_and_grad(x, labels, weight, **kw):
    """(loss, ∂loss/∂W) of `sea_loss`, by autograd — the reference for every backend's dW."""
    w = weight.detach().requires_grad_(True)
    loss = sea_loss(x, labels, w, **kw)
    (grad,) = torch.autograd.grad(loss.sum(), w)
    return loss.detach(), grad


def _reduce(rows, reduction):
    if reduction == "mean":
        return rows.mean()
    if reduction == "sum":
        return rows.sum()
    if reduction == "none":
        return rows
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
