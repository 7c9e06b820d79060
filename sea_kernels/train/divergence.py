"""When a training run counts as diverged — one rule for SeAClassifier and the sweep engine.

After every epoch, with ℓ̄ the epoch's mean batch loss:
  * ℓ̄ or W not finite;
  * ℓ̄ > COLLAPSE_FACTOR × ℓ₀, ℓ₀ = λ·log(1 + (C−1)·e^{δ/λ}) the loss of the all-zero classifier
    (every method's first step): a model worse than predicting nothing has collapsed — SeA at the
    paper's lr 1.6, η 0.8 on CIFAR-10 EfficientNet-Lite0 features oscillates at 2–5× ℓ₀;
  * ℓ̄ > DIVERGENCE_FACTOR × the first epoch's ℓ̄ (an exploding loss).
"""
from __future__ import annotations

import math

import numpy as np

DIVERGENCE_FACTOR = 1e3
COLLAPSE_FACTOR = 2.0


def zero_classifier_loss(lam: float, delta: float, num_classes: int) -> float:
    """The SeA loss of W = 0: λ·log(1 + (C−1)·e^{δ/λ}) (0 for a single class)."""
    if num_classes < 2:
        return 0.0
    return lam * float(np.logaddexp(0.0, math.log(num_classes - 1) + delta / lam))


class TrainingDiverged(ValueError, RuntimeError):
    """Training produced a non-finite or exploding loss; the message names the lr to lower.

    A ValueError (the hyper-parameters, not the code, are at fault) and a RuntimeError, e.g.
    "training diverged at epoch 3 (loss nan) with lr=1.6; try lr=0.4 or lower". On CIFAR-10
    EfficientNet-Lite0 features SeA at the paper's η = 0.8, lr = 1.6 collapses (see the module
    docstring); lr = 0.4 trains normally. `history` holds the records of the epochs completed
    before the failure (as `history_` of a successful fit).
    """

    history: list | tuple = ()  # set on the instance by fit
