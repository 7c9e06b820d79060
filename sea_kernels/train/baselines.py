"""The feature-space baselines of the paper's Table 5: ISDA and ME-ADA, for a linear head W (d×C).

ISDA — Implicit Semantic Data Augmentation (Wang et al., NeurIPS 2019)
    A running class-conditional covariance Σ_c of the features is estimated online from the
    mini-batches (the estimator of the authors' code, `EstimatorCV.update_CV`); the loss is taken on
    the surrogate logits

        z̃_ij = z_ij + (λ_t / 2) (w_j − w_{y_i})ᵀ Σ_{y_i} (w_j − w_{y_i}),   z = x W,

    the closed-form upper bound of the expected loss over infinitely many augmented copies
    x ~ N(x_i, λ_t Σ_{y_i}). λ_t = isda_strength · epoch / epochs (epoch counted from 0, ISDA's
    linear ramp, `ratio = lambda_0 * epoch / epochs`). Σ is a constant for the gradient (detached);
    the gradient w.r.t. W flows through both z and the quadratic term. Here the surrogate logits go
    into the same smoothed-hinge loss (λ, δ) as every other method of the package.
    Σ is a full d×d matrix per class for d ≤ ISDA_FULL_COV_MAX_DIM (= 512) and a per-class diagonal
    (variances only) above: C full d×d matrices at d = 8192 would take C × 256 MiB.

ME-ADA — Maximum-Entropy Adversarial Data Augmentation (Zhao et al., NeurIPS 2020), in feature
    space: at a few rounds during training, every training feature x0 is moved by `steps` steps of
    gradient ascent (step `lr`) on its own objective

        ℓ(x) + β · H(softmax(x W)) − γ · ‖x − x0‖²

    (ℓ the smoothed hinge loss (λ, δ) of the row, H the entropy of the softmax of the plain logits,
    as in ME-ADA), renormalised to unit length, and appended to the training set with the original
    label. The objective is per example (a sum over rows, not a batch mean), so
    the result does not depend on how the rows are chunked. In ME-ADA's code the distance γ‖·‖² is
    taken on the network's last-layer embedding; for fixed features the feature is the embedding.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..op.reference import one_hot, smoothed_hinge_loss, unit
from ..params import DEFAULTS, ME_ADA_DEFAULTS  # ME-ADA's: why the ascent step is 0.003

__all__ = ["ISDA_FULL_COV_MAX_DIM", "ISDAEstimator", "isda_sigma2", "isda_logits", "isda_loss",
           "me_ada_generate", "me_ada_round_epochs", "ME_ADA_DEFAULTS"]

ISDA_FULL_COV_MAX_DIM = 512


class ISDAEstimator:
    """Online per-class mean and covariance of features (ISDA's `EstimatorCV`).

    For a batch with n_c rows of class c (batch mean μ_c, biased batch covariance S_c), with the
    running count N_c, mean m_c and covariance Σ_c, and w = n_c / (n_c + N_c):

        Σ_c ← (1 − w) Σ_c + w S_c + w (1 − w) (m_c − μ_c)(m_c − μ_c)ᵀ
        m_c ← (1 − w) m_c + w μ_c,        N_c ← N_c + n_c

    (classes absent from the batch have w = 0 and stay unchanged). This is the exact pooled
    (biased) covariance of every row seen so far. `diagonal=True` keeps only the variances.
    """

    def __init__(self, num_features: int, num_classes: int, *, diagonal: bool | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        if diagonal is None:
            diagonal = num_features > ISDA_FULL_COV_MAX_DIM
        self.diagonal = bool(diagonal)
        d, c = int(num_features), int(num_classes)
        self.mean = torch.zeros(c, d, dtype=dtype, device=device)
        self.cov = torch.zeros((c, d) if self.diagonal else (c, d, d), dtype=dtype, device=device)
        self.count = torch.zeros(c, dtype=dtype, device=device)

    @torch.no_grad()
    def update(self, x: Tensor, labels: Tensor) -> None:
        c = self.mean.shape[0]
        x = x.to(self.mean.dtype)
        onehot = one_hot(labels, c, x.dtype)       # b×C
        n_batch = onehot.sum(0)                                             # C
        mu = (onehot.T @ x) / n_batch.clamp_min(1)[:, None]                 # C×d
        centred = x - mu[labels]                                            # b×d
        if self.diagonal:
            s = (onehot.T @ (centred * centred)) / n_batch.clamp_min(1)[:, None]
        else:
            s = torch.zeros_like(self.cov)
            for cls in torch.unique(labels).tolist():
                rows = centred[labels == cls]
                s[cls] = rows.T @ rows / rows.shape[0]
        total = n_batch + self.count
        w = torch.where(total > 0, n_batch / total.clamp_min(1), torch.zeros_like(total))
        diff = self.mean - mu
        if self.diagonal:
            wv = w[:, None]
            self.cov = self.cov * (1 - wv) + s * wv + (wv * (1 - wv)) * diff * diff
        else:
            wv = w[:, None, None]
            outer = diff[:, :, None] * diff[:, None, :]
            self.cov = self.cov * (1 - wv) + s * wv + (wv * (1 - wv)) * outer
        self.mean = self.mean * (1 - w[:, None]) + mu * w[:, None]
        self.count = self.count + n_batch

    def state_dict(self) -> dict:
        return {"diagonal": self.diagonal, "mean": self.mean.cpu(), "cov": self.cov.cpu(),
                "count": self.count.cpu()}

    def load_state_dict(self, state: dict) -> None:
        dev, dt = self.mean.device, self.mean.dtype
        self.diagonal = bool(state["diagonal"])
        self.mean = state["mean"].to(dev, dt)
        self.cov = state["cov"].to(dev, dt)
        self.count = state["count"].to(dev, dt)


def isda_sigma2(weight: Tensor, labels: Tensor, cov: Tensor) -> Tensor:
    """σ²_ij = (w_j − w_{y_i})ᵀ Σ_{y_i} (w_j − w_{y_i}) (b×C), differentiable in weight (d×C).

    cov: C×d×d (full) or C×d (diagonal variances). Computed once per class present in the batch.
    """
    present, inverse = torch.unique(labels, return_inverse=True)
    if cov.dim() == 2:                                   # diagonal Σ_c = diag(v_c)
        v = cov[present]                                 # P×d
        wc = weight[:, present].T                        # P×d: w_c
        a = v @ (weight * weight)                        # Σ_k v_ck w_kj²
        bmat = (v * wc) @ weight                         # Σ_k v_ck w_kc w_kj
        e = (v * wc * wc).sum(1, keepdim=True)           # Σ_k v_ck w_kc²
        per_class = a - 2 * bmat + e                     # P×C
    else:
        diff = weight[None, :, :] - weight[:, present].T[:, :, None]     # P×d×C: w_j − w_c
        per_class = (torch.bmm(cov[present], diff) * diff).sum(1)         # P×C
    return per_class[inverse]


def isda_logits(x: Tensor, labels: Tensor, weight: Tensor, cov: Tensor, ratio: float) -> Tensor:
    """ISDA's surrogate logits z̃ = xW + (ratio/2) σ² (Σ detached)."""
    return x @ weight + 0.5 * ratio * isda_sigma2(weight, labels, cov.detach())


def isda_loss(x, labels, weight, cov, ratio, *, lam=DEFAULTS["lam"],
              delta=DEFAULTS["delta"], reduction="mean"):
    """Smoothed-hinge loss (Eq. 15, λ, δ) of the ISDA surrogate logits."""
    return smoothed_hinge_loss(isda_logits(x, labels, weight, cov, ratio), labels, lam, delta,
                               reduction)


def me_ada_round_epochs(epochs: int, rounds: int) -> list[int]:
    """The (0-based) epochs before which ME-ADA generates: ⌊k·epochs/(rounds+1)⌋, k = 1..rounds —
    evenly spaced, never epoch 0 (W = 0 has no adversarial direction); needs epochs ≥ rounds + 1."""
    if epochs < rounds + 1:
        raise ValueError(f"me_ada_rounds={rounds} needs epochs ≥ {rounds + 1} (a round before "
                         f"training has no gradient to follow), got epochs={epochs}")
    return [k * epochs // (rounds + 1) for k in range(1, rounds + 1)]


def me_ada_generate(x0: Tensor, labels: Tensor, weight: Tensor, *,
                    lam: float = DEFAULTS["lam"], delta: float = DEFAULTS["delta"],
                    steps: int = ME_ADA_DEFAULTS["steps"],
                    lr: float = ME_ADA_DEFAULTS["lr"], gamma: float = ME_ADA_DEFAULTS["gamma"],
                    beta: float = ME_ADA_DEFAULTS["beta"], chunk_rows: int = 8192) -> Tensor:
    """ME-ADA's maximisation phase on fixed features: `steps` ascent steps per row on
    ℓ(x) + β H(softmax(xW)) − γ‖x − x0‖², then Π (unit rows). W is held fixed. Returns a new
    tensor like x0 (no gradient)."""
    w = weight.detach()
    out = torch.empty_like(x0)
    for s in range(0, x0.shape[0], chunk_rows):
        start = x0[s:s + chunk_rows].detach()
        yb = labels[s:s + chunk_rows]
        x = start.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                logits = x @ w
                loss = smoothed_hinge_loss(logits, yb, lam, delta, reduction="sum")
                logp = torch.log_softmax(logits, dim=1)
                entropy = -(logp.exp() * logp).sum()
                obj = loss + beta * entropy - gamma * ((x - start) ** 2).sum()
                (grad,) = torch.autograd.grad(obj, x)
            x = (x.detach() + lr * grad)
        x = unit(x)
        zero = x.norm(dim=1) == 0                         # the ascent cancelled x exactly: keep x0
        out[s:s + chunk_rows] = torch.where(zero[:, None], start, x)
    return out
