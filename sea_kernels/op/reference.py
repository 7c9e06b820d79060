"""Paper-literal SeA in plain PyTorch — the specification every backend is tested against.

Qian, Xu, Hu, "Semantic Adversarial Augmentation for Learning with Fixed Deep Features",
ECCV 2024 (Sec. 3, Alg. 1). Notation (docs/design.md §1):

    X ∈ R^{b×d}   mini-batch of fixed features (rows usually unit length)
    y ∈ [0, C)^b  labels, Y its one-hot matrix
    W ∈ R^{d×C}   linear classifier; logits L = X W (+ 1bᵀ with the optional bias b ∈ R^C)
    α  projection temperature, η  augmentation step, λ  loss temperature, δ  margin

Everything here materialises the b×d matrices (G, ĝ, X̃) exactly as the paper writes them; it
is meant to be read next to the paper and run in float64, not to be fast. The fast backends
(op/torch_backend.py, the C++ and Triton kernels) compute the same functions in "Gram space"
without ever forming a b×d intermediate (docs/design.md §2, §5).

Two formulas are written in an equivalent form that stays exact at every logit margin
(docs/design.md §3): the loss as λ·softplus(t), and the direction of g_i from a' = a/(1 − p_y)
(`gradient_direction`; Prop. 4 itself is `feature_gradient`).

Conventions for the corner cases (shared by every backend):
* b = 1: there is no other example to project on, so ĝ = 0 and x̃ = Π(x).
* a zero gradient direction W a'_i (e.g. W = 0) stays zero: ḡ_i = 0, S_i = 0, so q_i is uniform
  over j ≠ i.
* a zero direction ĝ_i (b = 1, or the other examples cancel) leaves x_i unmoved: x̃_i = Π(x_i).
* zero rows of X are left out of every q_i like the diagonal (`projection_weights`); a row with
  no non-zero partner has q_i = 0.

Two extensions of the paper (off by default):
* group_size G: the batch is cut into consecutive groups of G rows (the last one shorter) and
  each group is augmented alone (`augment` loops over the groups), i.e. Q is block-diagonal.
* bias b (nn.Linear's, with weight = lin.weight.T): every logit is XW + 1bᵀ — in the loss, and
  in the softmax that gives the direction a_i — while g_i = W a_i itself has no bias term.
"""
from __future__ import annotations

import torch

from ..params import DEFAULTS, DIRECTIONS
from .groups import group_ranges

#: The package's defaults of α, η, λ, δ (params.DEFAULTS, docs/design.md §1).
ALPHA, ETA, LAM, DELTA = (DEFAULTS[k] for k in ("alpha", "eta", "lam", "delta"))


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Y (b×C, `dtype`): Y_ic = 1 where c = labels_i, built in `dtype` directly."""
    return torch.zeros(labels.shape[0], num_classes, dtype=dtype,
                       device=labels.device).scatter_(1, labels[:, None], 1)


def unit(v: torch.Tensor) -> torch.Tensor:
    """Π(v): rows scaled to unit length; a zero row stays zero. Each row is first divided by the
    power of two above its largest entry (exact), so that ‖v‖ neither underflows nor overflows."""
    _, e = torch.frexp(v.abs().amax(dim=1, keepdim=True))
    v = v / torch.ldexp(torch.ones_like(v[:, :1]), e)
    norm = v.norm(dim=1, keepdim=True)
    return torch.where(norm == 0, torch.zeros_like(v), v / torch.where(norm == 0, 1, norm))


def margin_logits(logits: torch.Tensor, labels: torch.Tensor, lam: float,
                  delta: float) -> torch.Tensor:
    """Z = (L + δ(1 − Y)) / λ  — the tempered, margin-shifted logits of Eq. 15."""
    y = one_hot(labels, logits.shape[1], logits.dtype)
    return (logits + delta * (1 - y)) / lam


def smoothed_hinge_loss(logits, labels, lam=LAM, delta=DELTA, reduction="mean"):
    """Eq. 15: ℓ_i = −λ log softmax(Z_i)[y_i]. δ = 0, λ = 1 is cross-entropy.

    Evaluated as ℓ_i = λ·softplus(t_i), t_i = log Σ_{c≠y} e^{z_c − z_y} (the same number): unlike
    log_softmax it does not round ℓ_i to 0 nor its gradient's p_y − 1 to 0 when p_y ≈ 1.
    """
    z = margin_logits(logits, labels, lam, delta)
    others = z.masked_fill(one_hot(labels, z.shape[1], torch.bool), float("-inf"))
    t = torch.logsumexp(others, dim=1) - z.gather(1, labels[:, None])[:, 0]
    rows = -lam * torch.nn.functional.logsigmoid(-t)  # λ·softplus(t), gradient λ·sigmoid(t)
    return _reduce(rows, reduction)


def logits_of(x, weight, bias=None):
    """L = XW, plus 1bᵀ when a bias is given."""
    return x @ weight if bias is None else x @ weight + bias


def feature_gradient(x, labels, weight, lam=LAM, delta=DELTA, negative_only=False, bias=None):
    """Prop. 4: g_i = ∇_{x_i} ℓ = Σ_c p_c w_c − w_{y_i}, i.e. G = (P − Y) Wᵀ (P from the logits
    XW + 1bᵀ; the bias does not enter Wᵀ).

    With ``negative_only`` (the paper's SeA_Neg ablation) the target-class term is dropped:
    g_i = Σ_c p_c w_c = W p_i.
    """
    p = torch.softmax(margin_logits(logits_of(x, weight, bias), labels, lam, delta), dim=1)
    a = p if negative_only else p - one_hot(labels, weight.shape[1], p.dtype)
    return a @ weight.T


def gradient_direction(x, labels, weight, lam=LAM, delta=DELTA, negative_only=False, bias=None):
    """`feature_gradient` divided by 1 − p_y > 0 (only the direction ḡ is used): W a'_i with
    a'_c = softmax_{c≠y}(z)_c, a'_y = −1; for ``negative_only`` it is W p_i.

    Why: p_y − 1 rounds to 0 beyond a ≈ 16.6λ (float32) / 36.7λ (float64) margin, dropping −w_y.
    """
    if negative_only:
        return feature_gradient(x, labels, weight, lam, delta, negative_only=True, bias=bias)
    z = margin_logits(logits_of(x, weight, bias), labels, lam, delta)
    y = one_hot(labels, weight.shape[1], z.dtype)
    a = torch.softmax(z.masked_fill(y.bool(), float("-inf")), dim=1) - y
    return a @ weight.T


def projection_weights(x, g, alpha=ALPHA):
    """Eq. 10: q_ij = softmax_{j≠i}(x_jᵀ ḡ_i / α), ḡ_i = g_i/‖g_i‖, over the non-zero rows x_j.

    The diagonal is set to −∞ *before* the max-subtracted softmax (removing it afterwards, as the
    authors' code does, divides 0 by 0 when the diagonal dominates). Zero rows x_j = 0 are set to
    −∞ too. That is exact: they add nothing to ĝ_i = Σ_j q_ij x_j, so leaving them out only
    rescales ĝ_i by a positive number, and only its direction Π(ĝ_i) is used; kept in, a zero row
    (score 0) takes all of q_i once every other score is below the exp underflow (−87 in float32,
    −745 in float64) and ĝ_i = 0 instead of its well-defined direction. A row with no allowed j
    (b = 1, or only zero partners) is all zero.
    """
    b = x.shape[0]
    s = unit(g) @ x.T / alpha
    blocked = torch.eye(b, dtype=torch.bool, device=x.device) | (x == 0).all(dim=1)[None, :]
    q = torch.softmax(s.masked_fill(blocked, float("-inf")), dim=1)
    return q.masked_fill(blocked.all(dim=1, keepdim=True), 0)


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


def augment(x, labels, weight, *, direction="sea", alpha=ALPHA, eta=ETA, lam=LAM, delta=DELTA,
            generator=None, group_size=None, bias=None):
    """The augmented mini-batch X̃ (a constant for training: computed under no_grad).

    With group_size G every group of G consecutive rows is augmented alone (the rows of one group
    project only onto each other); bias b adds 1bᵀ to the logits behind the direction.

    sea      Eq. 11: x̃_i = Π(x_i + η Π(ĝ_i)), ĝ_i = Σ_{j≠i} q_ij x_j with q from Eq. 10 (ḡ_i from
             `gradient_direction`)
    sea_neg  as sea, with g_i = Σ_c p_c w_c (target-class term removed)
    rand     as sea, with q_i uniform on the simplex
    mixup    as sea, with q_i one-hot at a random partner: x̃_i = Π(x_i + η Π(x_j))
    adv      Eq. 5: x̃_i = x_i + η g_i (the raw loss gradient, no projection, no Π)
    none     x̃ = x
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    kw = dict(direction=direction, alpha=alpha, eta=eta, lam=lam, delta=delta,
              generator=generator, bias=bias)
    parts = group_ranges(x.shape[0], group_size)   # [kG, min((k+1)G, b)), op/groups.py
    if len(parts) > 1:
        return torch.cat([augment(x[lo:hi], labels[lo:hi], weight, **kw) for lo, hi in parts])
    with torch.no_grad():
        if direction == "none":
            return x.clone()
        if direction == "adv":
            return x + eta * feature_gradient(x, labels, weight, lam, delta, bias=bias)
        b = x.shape[0]
        if direction in ("sea", "sea_neg"):
            g = gradient_direction(x, labels, weight, lam, delta,
                                   negative_only=direction == "sea_neg", bias=bias)
            q = projection_weights(x, g, alpha)
        elif direction == "rand":
            q = random_simplex_weights(b, x.dtype, x.device, generator)
        else:
            q = random_partner_weights(b, x.dtype, x.device, generator)
        g_hat = q @ x
        return unit(x + eta * unit(g_hat))


def sea_loss(x, labels, weight, *, direction="sea", alpha=ALPHA, eta=ETA, lam=LAM, delta=DELTA,
             reduction="mean", generator=None, group_size=None, bias=None):
    """Alg. 1 step 6: the smoothed hinge loss of the augmented features, differentiable in W (and
    in the bias: logits X̃W + 1bᵀ)."""
    x_aug = augment(x, labels, weight, direction=direction, alpha=alpha, eta=eta, lam=lam,
                    delta=delta, generator=generator, group_size=group_size, bias=bias)
    return smoothed_hinge_loss(logits_of(x_aug, weight, bias), labels, lam, delta, reduction)


def sea_loss_and_grad(x, labels, weight, *, bias=None, **kw):
    """(loss, ∂loss/∂W) of `sea_loss`, by autograd — the reference for every backend's dW; with a
    bias (loss, ∂loss/∂W, ∂loss/∂b)."""
    w = weight.detach().requires_grad_(True)
    if bias is None:
        loss = sea_loss(x, labels, w, **kw)
        (grad,) = torch.autograd.grad(loss.sum(), w)
        return loss.detach(), grad
    bb = bias.detach().requires_grad_(True)
    loss = sea_loss(x, labels, w, bias=bb, **kw)
    grad_w, grad_b = torch.autograd.grad(loss.sum(), (w, bb))
    return loss.detach(), grad_w, grad_b


def _reduce(rows, reduction):
    if reduction == "mean":
        return rows.mean()
    if reduction == "sum":
        return rows.sum()
    if reduction == "none":
        return rows
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
