"""One call, validated once (docs/design.md §5): the public arguments become one `SeaCall`.

    call = validate(x, labels, weight, alpha=..., group_size=..., bias=..., backend="auto")
    cfg = configure(alpha=..., direction="sea", device=dev, dtype=torch.float32)   # once per fit
    loss = fused.run(cfg, xb, yb, weight)                                          # per batch

`validate` checks every argument once (the rules of op/validation.py, in the order the errors are
documented: tensors, group size, bias, hyper-parameters, their range in the compute dtype,
reduction, direction, backend, then the label range and a finite bias: in eager mode with one host
sync, the only one validation makes, under torch.compile on the device) and returns
a frozen `SeaCall`: the tensors (labels as int64), the hyper-parameters as one `Hyper` tuple of
floats, the reduction, the direction, the compute dtype and the resolved backend. `configure`
makes the same decisions without tensors (a `SeaConfig`: the trainer's per-fit value), so that a
batch only pairs it with its tensors (`SeaConfig.bind`, no check repeated).

One rule each, here:

* the compute dtype (`compute_dtype`): float64 if x, weight or bias is float64, else float32
  (bf16/fp16 accumulate in fp32); the backends compute in the dtype of the row scale the op
  passes them, which is this one;
* the group size (`group_size_of`): None is the whole batch, an int 1 ≤ G < b a group size;
  G ≥ b is the whole batch and becomes None;
* the row scale (`row_scale`): 1/b per row for reduction="mean", else 1.

`SeaCall`, `SeaConfig` and `Hyper` are NamedTuples (frozen, and traced by torch.compile without a
graph break).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..params import DEFAULTS, FUSED_DIRECTIONS, REDUCTIONS, check_choice, check_int
from .dispatch import resolve_backend
from .validation import (
    assert_tensor_values,
    check_bias,
    check_dtype_range,
    check_hyperparameters,
    check_tensor_args,
    check_tensor_values,
)

__all__ = ["Hyper", "SeaCall", "SeaConfig", "validate", "configure", "compute_dtype",
           "group_size_of", "check_group_size", "row_scale", "features_of"]


def compute_dtype(*tensors) -> torch.dtype:
    """THE compute dtype: float64 if any of the tensors (or dtypes; None skipped) is float64, else
    float32 (bf16/fp16 inputs accumulate in fp32)."""
    for t in tensors:
        if t is not None and (t if isinstance(t, torch.dtype) else t.dtype) == torch.float64:
            return torch.float64
    return torch.float32


def check_group_size(group_size) -> int | None:
    """None (the whole batch, the paper) or an integer ≥ 1 (bool refused; ParameterError /
    ValueError naming group_size): the number of consecutive rows projected together."""
    if group_size is None:
        return None
    return check_int("group_size", group_size, minimum=1)


def group_size_of(group_size: int | None, b: int) -> int | None:
    """The group size of a batch of b rows in the one convention: None for the whole batch
    (None, or G ≥ b), else 1 ≤ G < b. `group_size` is already checked."""
    return None if group_size is None or group_size >= b else group_size


def row_scale(b: int, reduction: str, dtype: torch.dtype, device) -> torch.Tensor:
    """The per-row weights s_i of Σ_i s_i ℓ(x̃_i): 1/b for "mean", else 1 (b,), in the compute
    dtype — the dtype every backend computes in."""
    return torch.full((b,), 1.0 / b if reduction == "mean" else 1.0, dtype=dtype, device=device)


class Hyper(NamedTuple):
    """The scalar arguments of one call, as the backends take them: α, η, λ, δ (floats), the
    direction (negative_only: "sea_neg") and the group size (None: the whole batch)."""
    alpha: float = DEFAULTS["alpha"]
    eta: float = DEFAULTS["eta"]
    lam: float = DEFAULTS["lam"]
    delta: float = DEFAULTS["delta"]
    negative_only: bool = False
    group_size: int | None = None


def features_of(group_size: int | None, has_bias: bool) -> frozenset[str]:
    """The backend features (op/dispatch.py) a call needs: "groups" with a group size, "bias"."""
    return frozenset(name for name, on in (("groups", group_size is not None),
                                           ("bias", has_bias)) if on)


class SeaCall(NamedTuple):
    """One validated call of `fused_sea` / `sea_augment`."""
    x: torch.Tensor
    labels: torch.Tensor            # int64
    weight: torch.Tensor
    bias: torch.Tensor | None
    hyper: Hyper
    reduction: str
    direction: str
    dtype: torch.dtype              # compute_dtype(x, weight, bias)
    backend: str                    # resolved: "torch", "cpp" or "triton"

    @property
    def features(self) -> frozenset[str]:
        """The backend features this call needs (`features_of`)."""
        return features_of(self.hyper.group_size, self.bias is not None)

    def row_scale(self) -> torch.Tensor:
        """The per-row weights of this call (`row_scale`)."""
        return row_scale(self.x.shape[0], self.reduction, self.dtype, self.x.device)


class SeaConfig(NamedTuple):
    """What `configure` decided once for a fit: the hyper-parameters (group_size as given, cut to
    each batch by `bind`), reduction, direction, the device, the compute dtype of the tensors it
    will see, whether they carry a bias, and the backend resolved for them."""
    hyper: Hyper
    reduction: str
    direction: str
    device: torch.device
    dtype: torch.dtype
    backend: str

    def bind(self, x, labels, weight, bias=None) -> SeaCall:
        """The call of one batch: these tensors (of the device and dtypes configured, labels in
        range — the caller's promise) with the decisions made once."""
        group = group_size_of(self.hyper.group_size, x.shape[0])
        hyper = self.hyper if group == self.hyper.group_size else self.hyper._replace(
            group_size=group)
        return SeaCall(x, labels.long(), weight, bias, hyper, self.reduction, self.direction,
                       self.dtype, self.backend)


def _scalars(alpha, eta, lam, delta, dtype, reduction, direction, directions, group_size):
    alpha, eta, lam, delta = check_hyperparameters(alpha, eta, lam, delta)
    check_dtype_range(dtype, alpha, eta, lam, delta)
    if reduction is not None:
        check_choice("reduction", reduction, REDUCTIONS)
    check_choice("direction", direction, directions)
    return Hyper(alpha, eta, lam, delta, direction == "sea_neg", group_size)


def validate(x, labels, weight, *, alpha=DEFAULTS["alpha"], eta=DEFAULTS["eta"],
             lam=DEFAULTS["lam"], delta=DEFAULTS["delta"], reduction: str | None = "mean",
             direction: str = "sea", group_size=None, bias=None, backend: str = "auto",
             directions=FUSED_DIRECTIONS, check_values: bool = True) -> SeaCall:
    """Check the public arguments once and return them as a SeaCall (ValueError/TypeError naming
    the argument and the fix, before any work). check_values: also the checks that read tensor
    values (label range, finite bias): in eager mode with one host sync
    (validation.check_tensor_values: a ValueError naming the argument), under torch.compile on
    the device (validation.assert_tensor_values, torch._assert_async: no sync); False: no tensor
    value is read and nothing syncs. `directions`: the directions
    allowed (the fused ones for `fused_sea`; every one for `sea_augment`, whose backend is then
    "torch" or the reference and `reduction` is None)."""
    check_tensor_args(x, labels, weight)
    group_size = check_group_size(group_size)
    check_bias(bias, weight)
    dtype = compute_dtype(x, weight, bias)
    hyper = _scalars(alpha, eta, lam, delta, dtype, reduction, direction, directions,
                     group_size_of(group_size, x.shape[0]))
    if backend is not None:
        backend = resolve_backend(backend, x.device, (x.dtype, weight.dtype) + (
            () if bias is None else (bias.dtype,)), features_of(hyper.group_size, bias is not None))
    labels = labels.long()
    if check_values:
        check = assert_tensor_values if torch.compiler.is_compiling() else check_tensor_values
        check(labels, weight.shape[1], bias)
    return SeaCall(x, labels, weight, bias, hyper, reduction, direction, dtype, backend)


def configure(*, alpha=DEFAULTS["alpha"], eta=DEFAULTS["eta"], lam=DEFAULTS["lam"],
              delta=DEFAULTS["delta"], reduction: str = "mean", direction: str = "sea",
              group_size=None, backend: str = "auto", device="cpu",
              dtype: torch.dtype = torch.float32, bias: bool = False,
              directions=FUSED_DIRECTIONS) -> SeaConfig:
    """The decisions of `validate` that need no tensor, made once (per fit): the scalars checked,
    the compute dtype for inputs of `dtype` (x, weight and bias alike), the backend resolved for
    `device`, `dtype` and the features the calls need (a group size, a bias: `bias=True`).
    reduction=None and backend=None, with directions=params.DIRECTIONS: for `fused.augment`."""
    group_size = check_group_size(group_size)
    ct = compute_dtype(dtype)
    device = torch.device(device)
    hyper = _scalars(alpha, eta, lam, delta, ct, reduction, direction, directions, group_size)
    if backend is not None:
        backend = resolve_backend(backend, device, (dtype,), features_of(hyper.group_size, bias))
    return SeaConfig(hyper, reduction, direction, device, ct, backend)


def is_unit_grad(grad) -> bool:
    """Whether an incoming gradient is a plain CPU tensor equal to 1 (read without a device
    sync; never while tracing): a backward that scales saved gradients can skip the × 1, as
    Liger-Kernel's fused losses do."""
    return (type(grad) is torch.Tensor and grad.device.type == "cpu" and grad.numel() == 1
            and not torch.compiler.is_compiling() and float(grad) == 1.0)
