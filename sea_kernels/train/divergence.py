"""When a training run counts as diverged — one rule for SeAClassifier and the sweep engine
(docs/design.md §7).

After every epoch, with ℓ̄ the epoch's mean batch loss, `divergence_reasons` says, per
configuration, whether and why the run diverged:
  * NONFINITE: ℓ̄ or W not finite;
  * COLLAPSED: ℓ̄ > COLLAPSE_FACTOR × ℓ₀, ℓ₀ = λ·log(1 + (C−1)·e^{δ/λ}) the loss of the all-zero
    classifier (every method's first step): a model worse than predicting nothing has collapsed —
    SeA at the paper's lr 1.6, η 0.8 on CIFAR-10 EfficientNet-Lite0 features oscillates at 2–5× ℓ₀;
  * EXPLODED: ℓ̄ > DIVERGENCE_FACTOR × the first epoch's ℓ̄ (an exploding loss).
The first rule that applies is the reason. A batch loss that comes out NaN/Inf stops the run:
the batch losses stay on the device and are read once per epoch (no host sync per step), so
SeAClassifier raises TrainingDiverged at the end of that epoch, naming the cause as the op's own
check does (`op.validation.diagnose_nonfinite`, a NonFiniteLoss as its __cause__); the sweep
engine masks the configuration's updates from that step on, on the device, and freezes it at the
epoch's end (diverged_step = the step).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DIVERGENCE_FACTOR", "COLLAPSE_FACTOR", "NONFINITE", "COLLAPSED", "EXPLODED",
           "zero_classifier_loss", "divergence_reasons", "explain", "diverged_message",
           "TrainingDiverged"]

DIVERGENCE_FACTOR = 1e3
COLLAPSE_FACTOR = 2.0
NONFINITE, COLLAPSED, EXPLODED = "nonfinite", "collapsed", "exploded"


def zero_classifier_loss(lam: float, delta: float, num_classes: int) -> float:
    """The SeA loss of W = 0: λ·log(1 + (C−1)·e^{δ/λ}) (0 for a single class)."""
    if num_classes < 2:
        return 0.0
    return lam * float(np.logaddexp(0.0, math.log(num_classes - 1) + delta / lam))


def divergence_reasons(loss, first_loss, zero_loss, weights_finite=True) -> np.ndarray:
    """Why each configuration's epoch diverged: a str array shaped like `loss` holding NONFINITE,
    COLLAPSED, EXPLODED or "" (it did not); `reasons != ""` is the diverged mask.

    loss: the epoch's mean train loss per configuration; first_loss: the first epoch's (the same
    as loss at the first epoch); zero_loss: `zero_classifier_loss` per configuration;
    weights_finite: whether each configuration's W is finite. All broadcast against loss.
    """
    loss = np.asarray(loss, dtype=np.float64)
    first = np.asarray(first_loss, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        nonfinite = ~np.isfinite(loss) | ~np.asarray(weights_finite, dtype=bool)
        collapsed = loss > COLLAPSE_FACTOR * np.asarray(zero_loss, dtype=np.float64)
        exploded = loss > DIVERGENCE_FACTOR * np.maximum(first, 1e-12)
    reasons = np.where(nonfinite, NONFINITE,
                       np.where(collapsed, COLLAPSED, np.where(exploded, EXPLODED, "")))
    return np.broadcast_to(reasons, loss.shape).copy()


def explain(reason: str, first_loss: float, zero_loss: float) -> str | None:
    """The bracketed explanation of a TrainingDiverged message (None for a non-finite loss)."""
    if reason == COLLAPSED:
        return (f"the train loss is above {COLLAPSE_FACTOR:g}× the loss {zero_loss:.4g} of the "
                "all-zero classifier: the model collapsed")
    if reason == EXPLODED:
        return (f"the train loss grew above {DIVERGENCE_FACTOR:g}× the first epoch's "
                f"({first_loss:.4g})")
    return None


def diverged_message(epoch: int, loss: float, lr: float, why: str | None = None,
                     eta: float | None = None) -> str:
    """"training diverged at epoch E (loss ℓ) with lr=…; try lr=lr/4 or lower" (epoch 0-based in,
    1-based out), with a smaller η suggested when `eta` (the augmentation step) is > 0."""
    msg = (f"training diverged at epoch {epoch + 1} (loss {loss:.4g}) with lr={lr:g}; "
           f"try lr={lr / 4:g} or lower")
    if eta:
        msg += f" (or a smaller eta than {eta:g})"
    return msg + (f" [{why}]" if why else "")


class TrainingDiverged(ValueError, RuntimeError):
    """Training produced a non-finite or exploding loss; the message names the lr to lower.

    A ValueError (the hyper-parameters, not the code, are at fault) and a RuntimeError, e.g.
    "training diverged at epoch 3 (loss nan) with lr=1.6; try lr=0.4 or lower". On CIFAR-10
    EfficientNet-Lite0 features SeA at the paper's η = 0.8, lr = 1.6 collapses (see the module
    docstring); lr = 0.4 trains normally. `history` holds the records of the epochs completed
    before the failure (as `history_` of a successful fit).
    """

    history: list | tuple = ()  # set on the instance by fit
