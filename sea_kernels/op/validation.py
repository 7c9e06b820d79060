"""The argument rules of the public ops (composed once per call by op/call.py `validate`): bad
input fails here, with the argument named and the fix.

Shape, dtype and device checks, and whether the scalar arguments fit the compute dtype (α not
rounding to 0 or a subnormal; η², 1/λ, δ/λ finite), are static and always run (also under
torch.compile). Checks that read tensor values (label range, a finite bias; NaN/Inf of a result,
diagnosed only when it comes out non-finite, naming the argument whose scale overflowed before
blaming the weights) must bring a value to the host to raise a Python error: in eager mode
`check_tensor_values` costs one O(b) reduction and one host sync per call, and `check_finite`
one more (of the result); nothing else here reads the device. Under torch.compile the value
checks run on the device instead (`assert_tensor_values`: torch._assert_async, no sync, no
graph break).
"""
from __future__ import annotations

import torch

from ..params import check_real

#: The floating dtypes the op takes (every backend declares a subset, op/dispatch.py).
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
__all__ = ["check_tensor_args", "check_hyperparameters", "check_dtype_range", "check_label_range",
           "check_finite", "diagnose_nonfinite", "NonFiniteLoss", "FLOAT_DTYPES",
           "check_bias", "check_bias_finite", "check_linear_args", "check_class_indices",
           "check_tensor_values", "assert_tensor_values"]


class NonFiniteLoss(ValueError):
    """The SeA loss or augmentation came out NaN/Inf; the message names the input at fault."""



def check_class_indices(name: str, t, rows_of: str) -> None:
    """`t` is 1-D with one integer class index per row of `rows_of` (bool refused)."""
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one class index per row of {rows_of}), got shape "
                         f"{tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {t.dtype}; "
                        f"convert with {name}.long()")


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
    check_class_indices("labels", labels, "x")
    b, d = x.shape
    if b == 0 or d == 0:
        raise ValueError(f"x must have at least one row and one feature, got shape {(b, d)}")
    if labels.shape[0] != b:
        raise ValueError(f"labels has {labels.shape[0]} entries but x has {b} rows")
    if weight.shape[0] != d:
        raise ValueError(f"weight must have shape (features={d}, classes ≥ 2) to match x, got "
                         f"{tuple(weight.shape)}")
    if weight.shape[1] < 2:
        raise ValueError(f"weight needs at least 2 classes (columns), got shape "
                         f"{tuple(weight.shape)}: with one class the loss is 0 and the SeA "
                         "direction is undefined")
    if not (x.device == labels.device == weight.device):
        raise ValueError(f"x, labels and weight must be on one device, got x on {x.device}, "
                         f"labels on {labels.device}, weight on {weight.device}")
    if x.requires_grad:
        raise ValueError("x requires grad, but SeA treats features as fixed data and returns no "
                         "gradient for them; pass x.detach()")


def check_linear_args(input, linear_weight, target, linear_bias=None):
    """`sea_linear_cross_entropy`'s tensors in nn.Linear's layout: input (b×d float, b = 0
    allowed as in torch), linear_weight (C×d float, C ≥ 2), target (b integer), linear_bias None
    or (C,) float, all on one device. Unlike `check_tensor_args`, input may require grad."""
    for name, t in (("input", input), ("linear_weight", linear_weight), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if input.dim() != 2:
        raise ValueError(f"input must be 2-D (batch × features), got shape {tuple(input.shape)}")
    for name, t in (("input", input), ("linear_weight", linear_weight)):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float32/float64/bfloat16/float16, got {t.dtype}")
    b, d = input.shape
    if d == 0:
        raise ValueError(f"input must have at least one feature, got shape {(b, d)}")
    if linear_weight.dim() != 2 or linear_weight.shape[1] != d:
        raise ValueError(f"linear_weight must have shape (classes, features={d}) — nn.Linear's "
                         f"layout — to match input, got {tuple(linear_weight.shape)}")
    c = linear_weight.shape[0]
    if c < 2:
        raise ValueError(f"linear_weight needs at least 2 classes (rows), got shape "
                         f"{tuple(linear_weight.shape)}")
    check_class_indices("target", target, "input")
    if target.shape[0] != b:
        raise ValueError(f"target has {target.shape[0]} entries but input has {b} rows")
    if linear_bias is not None:
        if not isinstance(linear_bias, torch.Tensor):
            raise TypeError("linear_bias must be a torch.Tensor or None, got "
                            f"{type(linear_bias).__name__}")
        if linear_bias.dim() != 1 or linear_bias.shape[0] != c:
            raise ValueError(f"linear_bias must have shape (classes={c},) to match linear_weight "
                             f"{tuple(linear_weight.shape)}, got {tuple(linear_bias.shape)}")
        if linear_bias.dtype not in FLOAT_DTYPES:
            raise TypeError(f"linear_bias must be float32/float64/bfloat16/float16, got "
                            f"{linear_bias.dtype}")
    devices = {t.device for t in (input, linear_weight, target, linear_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError("input, linear_weight, target and linear_bias must be on one device, got "
                         + ", ".join(sorted(map(str, devices))))


def check_bias(bias, weight):
    """None, or a floating 1-D tensor of weight's C entries on weight's device (nn.Linear's
    bias, with weight = lin.weight.T)."""
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    c = weight.shape[1]
    if bias.dim() != 1 or bias.shape[0] != c:
        raise ValueError(f"bias must have shape (classes={c},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)} (for nn.Linear(d, C) "
                         "pass weight=lin.weight.T, bias=lin.bias)")
    if bias.dtype not in FLOAT_DTYPES:
        raise TypeError(f"bias must be float32/float64/bfloat16/float16, got {bias.dtype}")
    if bias.device != weight.device:
        raise ValueError(f"bias must be on the device of weight ({weight.device}), got "
                         f"{bias.device}")


def check_bias_finite(bias):
    """Eager only: every entry of the bias finite (one host sync)."""
    if bias is not None and not torch.isfinite(bias).all():
        raise ValueError("bias contains NaN or Inf; clean it (a diverged training run shows up "
                         "here first: lower the learning rate)")


def check_hyperparameters(alpha, eta, lam, delta):
    """α > 0, λ > 0, η ≥ 0, δ: finite real numbers (params.RULES; Python and numpy scalars).
    Returns them as floats."""
    return tuple(check_real(name, v) for name, v in
                 (("alpha", alpha), ("eta", eta), ("lam", lam), ("delta", delta)))


def check_dtype_range(dtype, alpha, eta, lam, delta):
    """The hyper-parameters (floats) are usable in the compute dtype: α does not round to 0 or a
    subnormal, and η², 1/λ and δ/λ do not overflow — each named when it fails."""
    fi = torch.finfo(dtype)
    name = str(dtype).replace("torch.", "")
    rounded = float(torch.tensor(alpha, dtype=dtype)) if alpha < 2 * fi.tiny else alpha
    if rounded < fi.tiny:
        to = "0" if rounded == 0 else "a subnormal number"
        raise ValueError(f"alpha = {alpha:g} rounds to {to} in {name} (smallest normal "
                         f"{fi.tiny:g}), so 1/alpha overflows; use a larger alpha (the "
                         "projection temperature; the paper uses 0.01–0.05)")
    if eta * eta >= fi.max:
        raise ValueError(f"eta = {eta:g} is too large for {name}: eta² overflows in "
                         f"‖x_i + eta·ĝ_i/‖ĝ_i‖‖² (max {fi.max:g}); use a smaller eta (the "
                         "augmentation step; the paper uses η ≤ 0.8)")
    if 1.0 / lam >= fi.max:
        raise ValueError(f"lam = {lam:g} is too small for {name}: 1/lam overflows (max "
                         f"{fi.max:g}); use a larger lam (the loss temperature)")
    if abs(delta) / lam >= fi.max:
        raise ValueError(f"delta = {delta:g} with lam = {lam:g} overflows {name}: the tempered "
                         f"margin delta/lam must stay below {fi.max:g}; lower |delta| or raise lam")


def check_label_range(labels, num_classes):
    """Eager only: every label in [0, C) (one host sync)."""
    lo, hi = torch.stack([labels.min(), labels.max()]).tolist()
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"labels must lie in [0, {num_classes}) (weight has {num_classes} "
                         f"columns), found label {bad}")


def _values_ok(labels, num_classes, bias):
    """A 0-dim bool on the device: every label in [0, C) and the bias (None: none) finite."""
    ok = ((labels >= 0) & (labels < num_classes)).all()
    return ok if bias is None else ok & torch.isfinite(bias).all()


def check_tensor_values(labels, num_classes, bias=None):
    """Eager only: every label in [0, C) and a finite bias, with ONE host sync (the flag of both:
    a Python ValueError naming the argument needs the value on the host). Only when the flag is
    false are the details read (`check_label_range`, `check_bias_finite`) to name the culprit."""
    if bool(_values_ok(labels, num_classes, bias)):
        return
    check_label_range(labels, num_classes)
    check_bias_finite(bias)


def assert_tensor_values(labels, num_classes, bias=None):
    """`check_tensor_values` on the device (torch._assert_async: no host sync, traced by
    torch.compile; a failure is a RuntimeError, asynchronous on an accelerator)."""
    torch._assert_async(_values_ok(labels, num_classes, bias),
                        f"labels must lie in [0, {num_classes}) and the bias must be finite")


def check_finite(result, call):
    """Eager only: a NaN/Inf anywhere in `result` of the call (an op.call.SeaCall) raises
    NonFiniteLoss naming the input at fault. One host sync (the finiteness flag); the diagnosis
    reads more only once a result is non-finite."""
    if not torch.isfinite(result).all():
        h = call.hyper
        diagnose_nonfinite(call.x, call.weight, h.lam, call.dtype, alpha=h.alpha, eta=h.eta,
                           delta=h.delta)


def diagnose_nonfinite(x, weight, lam, dtype, alpha=None, eta=None, delta=0.0):
    """Called when a loss came out NaN/Inf: name the input that caused it. Checked in order: NaN/Inf
    inputs, the scalar arguments alone (η², 1/λ, δ/λ, α), then with the data (‖x_i‖², ‖x_i‖/α,
    (|x·w| + |δ|)/λ, all evaluated in float64 against the maximum of `dtype`, the compute
    dtype); only a logit x·w that itself overflows blames the weights."""
    for name, t in (("x", x), ("weight", weight)):
        if not torch.isfinite(t).all():
            raise NonFiniteLoss(f"{name} contains NaN or Inf; clean the input (a diverged "
                                "training run shows up here first: lower the learning rate)")
    big, name = torch.finfo(dtype).max, str(dtype).replace("torch.", "")
    head = "the SeA loss overflowed to NaN/Inf: "
    try:
        check_dtype_range(dtype, alpha if alpha is not None else 1.0,
                          eta if eta is not None else 0.0, lam, delta)
    except ValueError as exc:
        raise NonFiniteLoss(head + str(exc)) from None
    with torch.no_grad():
        xd, wd = x.detach().double(), weight.detach().double()
        x_norm = xd.norm(dim=1).max().item()
        logit = (xd @ wd).abs().max().item()
        w_norm = wd.norm(dim=0).max().item()
    if x_norm * x_norm >= big:
        raise NonFiniteLoss(f"{head}x has rows of norm up to {x_norm:.3g}, whose squares overflow "
                            f"{name}; normalise the features (SeA expects unit-length rows)")
    if alpha is not None and x_norm / alpha >= big:
        raise NonFiniteLoss(f"{head}the projection scores x·ḡ/alpha reach {x_norm / alpha:.3g} "
                            f"(max |x| = {x_norm:.3g}, alpha = {alpha:g}), beyond {name}'s "
                            f"{big:.3g}; raise alpha or normalise the features")
    if logit < big:
        tempered = (max(logit, w_norm) + abs(delta)) / lam
        if tempered >= big:
            raise NonFiniteLoss(f"{head}the tempered logits (x·w + delta)/lam reach "
                                f"{tempered:.3g}, beyond {name}'s {big:.3g} (max |x·w| = "
                                f"{logit:.3g}, delta = {delta:g}, lam = {lam:g}): raise lam, or "
                                "lower the learning rate if the weights grew during training")
    raise NonFiniteLoss(f"{head}max |weight| = {weight.abs().max().item():.3g}, lam = {lam} (max "
                        f"|x·w| = {logit:.3g}); the weights are too large for this λ: lower the "
                        "learning rate or raise lam")
