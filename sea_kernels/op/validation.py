"""Argument checks for the public ops: bad input fails here, with the argument named and the fix.

Shape, dtype and device checks are static and always run (also under torch.compile). Checks that
read tensor values (label range; NaN/Inf, diagnosed only when a result comes out non-finite) run in
eager mode, where they cost one O(b) reduction per call.
"""
from __future__ import annotations

import torch

from ..params import check_real

#: The floating dtypes the op takes (every backend declares a subset, op/dispatch.py).
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
__all__ = ["check_tensor_args", "check_hyperparameters", "check_label_range", "check_finite",
           "diagnose_nonfinite", "NonFiniteLoss", "FLOAT_DTYPES"]


class NonFiniteLoss(ValueError):
    """The SeA loss or augmentation came out NaN/Inf; the message names the input at fault."""


def check_tensor_args(x, labels, weight):
    """x (b×d float), labels (b integer), weight (d×C float), all on one device."""
    for name, t in (("x", x), ("labels", labels), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (batch × features), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32/float64/bfloat16/float16, got {x.dtype}; "
                        "convert with x.float()")
    if weight.dim() != 2:
        raise ValueError("weight must be 2-D (features × classes), got shape "
                         f"{tuple(weight.shape)}")
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weight must be a floating tensor, got {weight.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D (one class index per row of x), got shape "
                         f"{tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class indices, got {labels.dtype}; "
                        "convert with labels.long()")
    b, d = x.shape
    if b == 0 or d == 0:
        raise ValueError(f"x must have at least one row and one feature, got shape {(b, d)}")
    if labels.shape[0] != b:
        raise ValueError(f"labels has {labels.shape[0]} entries but x has {b} rows")
    if weight.shape[0] != d or weight.shape[1] == 0:
        raise ValueError(f"weight must have shape (features={d}, classes ≥ 1) to match x, got "
                         f"{tuple(weight.shape)}")
    if not (x.device == labels.device == weight.device):
        raise ValueError(f"x, labels and weight must be on one device, got x on {x.device}, "
                         f"labels on {labels.device}, weight on {weight.device}")
    if x.requires_grad:
        raise ValueError("x requires grad, but SeA treats features as fixed data and returns no "
                         "gradient for them; pass x.detach()")


def check_hyperparameters(alpha, eta, lam, delta):
    """α > 0, λ > 0, η ≥ 0, δ: finite real numbers (params.RULES). Returns them as floats."""
    return tuple(check_real(name, v) for name, v in
                 (("alpha", alpha), ("eta", eta), ("lam", lam), ("delta", delta)))


def check_label_range(labels, num_classes):
    """Eager only: every label in [0, C)."""
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"labels must lie in [0, {num_classes}) (weight has {num_classes} "
                         f"columns), found label {bad}")


def check_finite(result, x, weight, lam):
    """Eager only: a NaN/Inf anywhere in `result` raises NonFiniteLoss naming the input at fault."""
    if not torch.isfinite(result).all():
        diagnose_nonfinite(x, weight, lam)


def diagnose_nonfinite(x, weight, lam):
    """Called when a loss came out NaN/Inf: name the input that caused it."""
    for name, t in (("x", x), ("weight", weight)):
        if not torch.isfinite(t).all():
            raise NonFiniteLoss(f"{name} contains NaN or Inf; clean the input (a diverged "
                                "training run shows up here first: lower the learning rate)")
    raise NonFiniteLoss(f"the SeA loss overflowed to NaN/Inf (max |weight| = "
                        f"{weight.abs().max().item():.3g}, lam = {lam}); the weights are too "
                        "large for this λ: lower the learning rate or raise lam")
