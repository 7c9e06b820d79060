"""Public SeA ops: `fused_sea` (a torch.library custom op with autograd) and `sea_augment`.

`fused_sea` returns the smoothed-hinge loss of the SeA-augmented batch. The features are fixed
data and the augmentation is a constant of the step (Alg. 1), so ∂loss/∂W is computed in the
forward pass by the chosen backend, saved, and scaled by the incoming gradient in backward
(as Liger-Kernel does for losses whose input is fixed). With reduction="none" the per-row weights
are only known in backward, so backward runs the backend once more with those weights.

Double backward (backward with create_graph=True, e.g. Hessian-vector products): backward then
returns dW built from differentiable torch ops of W with x̃ held fixed (`_weight_grad_graph`), so
its derivative is the Hessian of W ↦ ℓ(X̃W) with X̃ constant, as Alg. 1 treats it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..params import DEFAULTS, DIRECTIONS, FUSED_DIRECTIONS, REDUCTIONS, check_choice
from . import reference, torch_backend
from .dispatch import forward_of, resolve_backend
from .torch_backend import compute_dtype
from .validation import (
    check_dtype_range,
    check_finite,
    check_hyperparameters,
    check_label_range,
    check_tensor_args,
)


def _row_scale(b: int, reduction: str, like: Tensor) -> Tensor:
    return torch.full((b,), 1.0 / b if reduction == "mean" else 1.0, dtype=like.dtype,
                      device=like.device)


@torch.library.custom_op("sea_kernels::fused_sea", mutates_args=())
def fused_sea_op(x: Tensor, labels: Tensor, weight: Tensor, alpha: float, eta: float, lam: float,
                 delta: float, reduction: str, backend: str, negative_only: bool,
                 need_grad: bool) -> tuple[Tensor, Tensor]:
    """(loss, ∂loss/∂W) — the gradient only for mean/sum with need_grad, else an empty tensor."""
    ct = compute_dtype(x, weight)
    compute_grad = need_grad and reduction != "none"
    row_scale = _row_scale(x.shape[0], reduction, torch.empty(0, dtype=ct, device=x.device))
    losses, grad = forward_of(backend)(x, labels, weight, row_scale, alpha, eta, lam, delta,
                                      negative_only, compute_grad)
    losses = losses.to(ct)
    loss = (losses if reduction == "none" else
            losses.mean() if reduction == "mean" else losses.sum())
    grad = grad.to(weight.dtype) if compute_grad else weight.new_empty(0)
    return loss, grad


@fused_sea_op.register_fake
def _(x, labels, weight, alpha, eta, lam, delta, reduction, backend, negative_only, need_grad):
    ct = compute_dtype(x, weight)
    loss = x.new_empty((x.shape[0],) if reduction == "none" else (), dtype=ct)
    grad_shape = weight.shape if (need_grad and reduction != "none") else (0,)
    return loss, weight.new_empty(grad_shape)


@torch.library.custom_op("sea_kernels::fused_sea_weighted_grad", mutates_args=())
def weighted_grad_op(x: Tensor, labels: Tensor, weight: Tensor, row_weights: Tensor, alpha: float,
                     eta: float, lam: float, delta: float, backend: str,
                     negative_only: bool) -> Tensor:
    """∂(Σ_i w_i ℓ(x̃_i))/∂W: the backward of reduction='none' for upstream row weights w."""
    ct = compute_dtype(x, weight)
    _, grad = forward_of(backend)(x, labels, weight, row_weights.to(ct), alpha, eta, lam, delta,
                                 negative_only, True)
    return grad.to(weight.dtype)


@weighted_grad_op.register_fake
def _(x, labels, weight, row_weights, alpha, eta, lam, delta, backend, negative_only):
    return torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, labels, weight, alpha, eta, lam, delta, reduction, backend, negative_only, _ = inputs
    ctx.reduction = reduction
    ctx.hyper = (alpha, eta, lam, delta, backend, negative_only)
    if reduction == "none":
        ctx.save_for_backward(x, labels, weight)
    else:
        ctx.save_for_backward(x, labels, weight, output[1])


def _weight_grad_graph(x, labels, weight, upstream, reduction, alpha, eta, lam, delta,
                       negative_only):
    """upstream · ∂(Σ_i s_i ℓ(x̃_i))/∂W as differentiable torch ops of W (and of upstream), with
    x̃ = sea_augment(x, labels, W.detach()) a constant: X̃ᵀ diag(s·sigmoid(t))(U − Y), the exact
    first derivative (docs/design.md §3), so its derivative is the Hessian with x̃ fixed."""
    ct = compute_dtype(x, weight)
    with torch.no_grad():
        x_aug = torch_backend.sea_augment(x, labels, weight.detach(), alpha, eta, lam, delta,
                                          negative_only).to(ct)
    y = reference.one_hot(labels, weight.shape[1], ct)
    z = (x_aug @ weight.to(ct) + delta * (1 - y)) / lam
    t, u = torch_backend.loss_terms(z, y.bool())
    s = upstream.to(ct) / (x.shape[0] if reduction == "mean" else 1)
    d = (s * torch.sigmoid(t))[:, None] * (u - y)
    return (x_aug.T @ d).to(weight.dtype)


def _backward(ctx, grad_loss, _grad_of_grad):
    x, labels, weight, *saved = ctx.saved_tensors
    if torch.is_grad_enabled():  # backward(create_graph=True): a dW that is differentiable
        alpha, eta, lam, delta, _, negative_only = ctx.hyper
        grad_w = _weight_grad_graph(x, labels, weight, grad_loss, ctx.reduction, alpha, eta, lam,
                                    delta, negative_only)
    elif ctx.reduction == "none":
        grad_w = weighted_grad_op(x, labels, weight, grad_loss, *ctx.hyper)
    else:
        (grad,) = saved
        grad_w = (grad_loss * grad).to(grad.dtype)
    return None, None, grad_w, None, None, None, None, None, None, None, None


fused_sea_op.register_autograd(_backward, setup_context=_setup_context)


def _eager() -> bool:
    return not torch.compiler.is_compiling()


def fused_sea(x: Tensor, labels: Tensor, weight: Tensor, *, alpha: float = DEFAULTS["alpha"],
              eta: float = DEFAULTS["eta"], lam: float = DEFAULTS["lam"],
              delta: float = DEFAULTS["delta"], reduction: str = "mean",
              direction: str = "sea", backend: str = "auto", validate: bool = True) -> Tensor:
    """Smoothed-hinge loss (Eq. 15) of the SeA-augmented batch x̃ (Eq. 11), differentiable in weight.

    x (b×d) fixed features, labels (b,) in [0, C), weight (d×C). The augmentation x̃ is a constant
    of the step: autograd gives ∂loss/∂W with x̃ held fixed, exactly as Alg. 1 trains (also to
    second order: backward with create_graph=True gives a dW differentiable in W). reduction is
    "mean" (Alg. 1), "sum" or "none" (per-row losses). direction "sea_neg" drops the target-class
    term of the gradient (the paper's ablation). backend: "auto" (the first of op.dispatch.PRIORITY
    that takes the inputs: triton for float32/bf16/fp16 CUDA tensors, cpp on the CPU when built,
    else torch; docs/design.md §5), "torch", "cpp" or "triton". validate=False skips the eager
    value checks (label range; naming the input behind a NaN loss), which cost one host sync per
    call on a GPU.
    """
    check_tensor_args(x, labels, weight)
    alpha, eta, lam, delta = check_hyperparameters(alpha, eta, lam, delta)
    check_dtype_range(compute_dtype(x, weight), alpha, eta, lam, delta)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("direction", direction, FUSED_DIRECTIONS)
    backend = resolve_backend(backend, x.device, (x.dtype, weight.dtype))
    labels = labels.long()
    if validate and _eager():
        check_label_range(labels, weight.shape[1])
    need_grad = weight.requires_grad and torch.is_grad_enabled()
    loss, _ = fused_sea_op(x, labels, weight, float(alpha), float(eta), float(lam), float(delta),
                           reduction, backend, direction == "sea_neg", need_grad)
    if validate and _eager():
        check_finite(loss, x, weight, lam, alpha, eta, delta)
    return loss


def sea_augment(x: Tensor, labels: Tensor, weight: Tensor, *, alpha: float = DEFAULTS["alpha"],
                eta: float = DEFAULTS["eta"], lam: float = DEFAULTS["lam"],
                delta: float = DEFAULTS["delta"], direction: str = "sea",
                generator: torch.Generator | None = None) -> Tensor:
    """The augmented features X̃ (b×d, no gradient), for users who train their own head.

    "sea"/"sea_neg" are computed in Gram space (X̃ = diag(1/n)(X + η diag(r) Q X)); the other
    ablation directions of the paper ("adv", "rand", "mixup", "none") follow `reference.augment`.
    """
    check_tensor_args(x, labels, weight)
    alpha, eta, lam, delta = check_hyperparameters(alpha, eta, lam, delta)
    check_dtype_range(compute_dtype(x, weight), alpha, eta, lam, delta)
    check_choice("direction", direction, DIRECTIONS)
    labels = labels.long()
    check_label_range(labels, weight.shape[1])
    with torch.no_grad():
        if direction in FUSED_DIRECTIONS:
            out = torch_backend.sea_augment(x, labels, weight, alpha, eta, lam, delta,
                                            direction == "sea_neg")
        else:
            out = reference.augment(x, labels, weight.to(x.dtype), direction=direction, alpha=alpha,
                                    eta=eta, lam=lam, delta=delta, generator=generator)
    check_finite(out, x, weight, lam, alpha, eta, delta)
    return out
