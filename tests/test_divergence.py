"""train.divergence: the one divergence rule (each rule both ways, on hand-made arrays), its
messages, and that SeAClassifier and train_many both decide through it."""
import math

import numpy as np
import pytest
import torch

from sea_kernels.op.validation import NonFiniteLoss
from sea_kernels.sweeps import engine as many
from sea_kernels.sweeps.engine import train_many
from sea_kernels.train import divergence, estimator
from sea_kernels.train.divergence import (
    COLLAPSE_FACTOR,
    COLLAPSED,
    DIVERGENCE_FACTOR,
    EXPLODED,
    NONFINITE,
    TrainingDiverged,
    diverged_message,
    divergence_reasons,
    explain,
    zero_classifier_loss,
)
from sea_kernels.train.estimator import SeAClassifier


def _toy(n=60, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = (rng.standard_normal((c, d))[y] * 2 + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


def test_zero_classifier_loss():
    assert zero_classifier_loss(0.1, 0.0, 10) == pytest.approx(0.1 * math.log(10))
    assert zero_classifier_loss(1.0, 1.0, 3) == pytest.approx(math.log1p(2 * math.e))
    assert zero_classifier_loss(0.1, 0.0, 1) == 0.0
    # large δ/λ does not overflow
    assert math.isfinite(zero_classifier_loss(0.01, 50.0, 5))


def test_nonfinite_loss_or_weights_both_ways():
    zero = np.ones(4)
    loss = np.array([np.nan, np.inf, -np.inf, 0.5])
    assert divergence_reasons(loss, 0.5, zero).tolist() == [NONFINITE] * 3 + [""]
    finite_w = np.array([True, True, False, True])
    got = divergence_reasons(np.full(4, 0.5), 0.5, zero, weights_finite=finite_w)
    assert got.tolist() == ["", "", NONFINITE, ""]
    assert divergence_reasons(0.5, 0.5, 1.0, weights_finite=False).item() == NONFINITE
    assert divergence_reasons(0.5, 0.5, 1.0, weights_finite=True).item() == ""


def test_collapse_rule_both_ways():
    zero = np.array([1.0, 1.0, 0.3])
    loss = np.array([COLLAPSE_FACTOR * 1.0 + 1e-9, COLLAPSE_FACTOR * 1.0, 0.61])
    # first = loss: the explosion rule cannot fire, only the collapse one
    assert divergence_reasons(loss, loss, zero).tolist() == [COLLAPSED, "", COLLAPSED]
    assert divergence_reasons(0.59, 0.59, 0.3).item() == ""


def test_explosion_rule_both_ways():
    zero = np.full(3, 1e9)                                  # the collapse rule cannot fire
    first = np.array([1e-3, 1e-3, 0.0])
    loss = np.array([DIVERGENCE_FACTOR * 1e-3 * 1.001, DIVERGENCE_FACTOR * 1e-3 * 0.999, 2e-9])
    # a first loss of 0 counts as 1e-12: 2e-9 > 1000 × 1e-12
    assert divergence_reasons(loss, first, zero).tolist() == [EXPLODED, "", EXPLODED]
    assert divergence_reasons(0.5, 0.5, 1e9).item() == ""   # the first epoch itself never explodes


def test_precedence_and_broadcasting():
    # non-finite beats the others; collapse beats explosion
    got = divergence_reasons([np.nan, 5.0, 5.0], [1e-3, 1e-3, 5.0], [1.0, 1.0, 1.0],
                             weights_finite=[False, True, True])
    assert got.tolist() == [NONFINITE, COLLAPSED, COLLAPSED]
    out = divergence_reasons(np.zeros((2, 3)), 1.0, 1.0)
    assert out.shape == (2, 3) and not (out != "").any()
    assert divergence_reasons(1.0, 1.0, 1.0).shape == ()


def test_messages():
    assert explain(NONFINITE, 1.0, 2.0) is None and explain("", 1.0, 2.0) is None
    why = explain(COLLAPSED, 1.0, 0.2303)
    assert "collapsed" in why and "the loss 0.2303 of the all-zero classifier" in why
    assert "1000× the first epoch's (0.5)" in explain(EXPLODED, 0.5, 1.0)
    msg = diverged_message(2, 7.5, 1.6, "why", eta=0.8)
    assert msg == ("training diverged at epoch 3 (loss 7.5) with lr=1.6; try lr=0.4 or lower "
                   "(or a smaller eta than 0.8) [why]")
    assert diverged_message(0, float("nan"), 1e6) == ("training diverged at epoch 1 (loss nan) "
                                                      "with lr=1e+06; try lr=250000 or lower")
    assert "eta" not in diverged_message(0, 1.0, 1.0, eta=0.0)


def test_training_diverged_is_both_errors():
    assert issubclass(TrainingDiverged, ValueError) and issubclass(TrainingDiverged, RuntimeError)
    assert TrainingDiverged("x").history == ()


def test_the_estimator_decides_through_divergence_reasons(monkeypatch):
    X, y = _toy()
    calls = []

    def fake(loss, first, zero, weights_finite=True):
        calls.append((loss, first, zero))
        return np.asarray(EXPLODED if len(calls) == 2 else "")

    monkeypatch.setattr(estimator, "divergence_reasons", fake)
    clf = SeAClassifier(epochs=3, lr=0.4, random_state=0, augment="none")
    with pytest.raises(TrainingDiverged, match=r"epoch 2 .*grew above 1000× the first"):
        clf.fit(X, y)
    assert len(calls) == 2 and len(clf.history_) == 1
    assert calls[1][1] == clf.history_[0]["train_loss"]          # first = epoch 1's loss
    assert calls[0][2] == pytest.approx(zero_classifier_loss(0.1, 0.0, 3))


def test_train_many_decides_through_divergence_reasons(monkeypatch):
    X, y = _toy()
    x = torch.nn.functional.normalize(torch.from_numpy(X), dim=1)
    seen = []

    def fake(loss, first, zero, weights_finite=True):
        seen.append(len(loss))
        out = np.full(len(loss), "", dtype="<U9")
        if len(seen) == 1:
            out[1] = COLLAPSED                                  # engine order: η = 0 first
        return out

    monkeypatch.setattr(many, "divergence_reasons", fake)
    res = train_many(x, y, [dict(lr=0.4, eta=0.4), dict(lr=0.4, eta=0.0)], epochs=2,
                     batch_size=16)
    assert seen == [2, 1]
    assert res.diverged.tolist() == [True, False]
    assert np.isnan(res.train_loss[:, 0]).all() and np.isfinite(res.train_loss[:, 1]).all()


def test_nonfinite_loss_exception_becomes_training_diverged(monkeypatch):
    X, y = _toy()

    def boom(self, epoch, xb, yb, W):
        raise NonFiniteLoss("weight contains NaN or Inf; clean the input")

    from sea_kernels.train import augmentations
    monkeypatch.setattr(augmentations.FusedSeA, "loss", boom)
    with pytest.raises(TrainingDiverged, match=r"epoch 1 \(loss nan\).*\[weight contains NaN") as e:
        SeAClassifier(epochs=2, lr=0.4, random_state=0).fit(X, y)
    assert isinstance(e.value.__cause__, NonFiniteLoss)


def test_other_value_errors_mentioning_nan_are_not_divergence(monkeypatch):
    """The trainer no longer matches "NaN"/"Inf" in message text: only NonFiniteLoss counts."""
    X, y = _toy()

    def bad(self, epoch, xb, yb, W):
        raise ValueError("something else about NaN")

    from sea_kernels.train import augmentations
    monkeypatch.setattr(augmentations.FusedSeA, "loss", bad)
    with pytest.raises(ValueError, match="something else") as e:
        SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(X, y)
    assert not isinstance(e.value, TrainingDiverged)


def test_both_callers_share_the_module_constants():
    assert divergence.COLLAPSE_FACTOR == 2.0 and divergence.DIVERGENCE_FACTOR == 1e3
