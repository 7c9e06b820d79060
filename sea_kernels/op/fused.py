"""Public SeA ops: `fused_sea` (a torch.library custom op with autograd) and `sea_augment`.

`fused_sea` returns the smoothed-hinge loss of the SeA-augmented batch. The features are fixed
data and the augmentation is a constant of the step (Alg. 1), so ∂loss/∂W is computed in the
forward pass by the chosen backend, saved, and scaled by the incoming gradient in backward
(as Liger-Kernel does for losses whose input is fixed). With reduction="none" the per-row weights
are only known in backward, so backward runs the backend once more with those weights.

Double backward (backward with create_graph=True, e.g. Hessian-vector products): backward then
returns dW built from differentiable torch ops of W with x̃ held fixed (`_weight_grad_graph`), so
its derivative is the Hessian of W ↦ ℓ(X̃W) with X̃ constant, as Alg. 1 treats it.

The call path: `fused_sea` validates its arguments once into an op.call.SeaCall (`validate`),
`run` hands it to the custom op, and the op calls the resolved backend's `forward`
(op/dispatch.py), which returns (losses, dW, db) in the compute dtype. The trainer makes the
decisions once per fit (`call.configure` → SeaConfig) and calls `run(cfg.bind(xb, yb, W))` per
batch. A group size (None: the whole batch) and an optional bias b (C,), logits XW + 1bᵀ, go to
every backend that declares them; autograd returns ∂loss/∂b = Σ_i D_i too (also to second
order).

PyTorch integration: under torch.autocast both ops (and `sea_augment`) compute as without it —
float32 inputs (float64 kept), the loss float32, ∂loss/∂W in the weight's dtype; torch.func
transforms (grad, vjp, jacrev) go through `_FusedSeaFunction`; torch.compile(fullgraph=True,
dynamic=True) traces the scalar checks (params.check_real is SymFloat-safe).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..params import DEFAULTS, DIRECTIONS, FUSED_DIRECTIONS
from . import call as calls
from . import reference, torch_backend
from .call import Hyper, SeaCall, compute_dtype, row_scale
from .dispatch import BACKENDS_BY_NAME, resolve_backend
from .validation import check_finite

__all__ = ["fused_sea", "sea_augment", "run", "augment", "fused_sea_op", "weighted_grad_op",
           "resolve_backend"]


def _forward(backend: str, x, labels, weight, scale, hyper: Hyper, compute_grad: bool, bias):
    """(losses, dW, db) from the backend's forward (the contract of op/dispatch.py); η = 0 (no
    row moves) takes `torch_backend.unmoved_forward` for every backend: x̃ = Π(x), no b×b work."""
    if hyper.eta == 0:
        return torch_backend.unmoved_forward(x, labels, weight, scale, hyper, compute_grad, bias)
    return BACKENDS_BY_NAME[backend].forward(x, labels, weight, scale, hyper, compute_grad, bias)


@torch.library.custom_op("sea_kernels::fused_sea", mutates_args=())
def fused_sea_op(x: Tensor, labels: Tensor, weight: Tensor, alpha: float, eta: float, lam: float,
                 delta: float, reduction: str, backend: str, negative_only: bool,
                 need_grad: bool, group_size: int | None = None,
                 bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, ∂loss/∂W, ∂loss/∂b) — the gradients only for mean/sum with need_grad, else empty
    tensors (∂loss/∂b also empty without a bias). The arguments are a validated SeaCall's."""
    ct = compute_dtype(x, weight, bias)
    compute_grad = need_grad and reduction != "none"
    losses, grad, grad_b = _forward(backend, x, labels, weight,
                                    row_scale(x.shape[0], reduction, ct, x.device),
                                    Hyper(alpha, eta, lam, delta, negative_only, group_size),
                                    compute_grad, bias)
    losses = losses.to(ct)
    loss = (losses if reduction == "none" else
            losses.mean() if reduction == "mean" else losses.sum())
    grad = grad.to(weight.dtype) if compute_grad else weight.new_empty(0)
    grad_b = grad_b.to(bias.dtype) if compute_grad and bias is not None else weight.new_empty(0)
    return loss, grad, grad_b


@fused_sea_op.register_fake
def _(x, labels, weight, alpha, eta, lam, delta, reduction, backend, negative_only, need_grad,
      group_size=None, bias=None):
    ct = compute_dtype(x, weight, bias)
    loss = x.new_empty((x.shape[0],) if reduction == "none" else (), dtype=ct)
    grads = need_grad and reduction != "none"
    grad_b = bias.new_empty(bias.shape) if grads and bias is not None else weight.new_empty(0)
    return loss, weight.new_empty(weight.shape if grads else (0,)), grad_b


@torch.library.custom_op("sea_kernels::fused_sea_weighted_grad", mutates_args=())
def weighted_grad_op(x: Tensor, labels: Tensor, weight: Tensor, row_weights: Tensor, alpha: float,
                     eta: float, lam: float, delta: float, backend: str,
                     negative_only: bool, group_size: int | None = None,
                     bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(∂/∂W, ∂/∂b) of Σ_i w_i ℓ(x̃_i): the backward of reduction='none' for upstream row weights
    w (∂/∂b empty without a bias)."""
    ct = compute_dtype(x, weight, bias)
    _, grad, grad_b = _forward(backend, x, labels, weight, row_weights.to(ct),
                               Hyper(alpha, eta, lam, delta, negative_only, group_size), True,
                               bias)
    return grad.to(weight.dtype), (weight.new_empty(0) if bias is None else grad_b.to(bias.dtype))


@weighted_grad_op.register_fake
def _(x, labels, weight, row_weights, alpha, eta, lam, delta, backend, negative_only,
      group_size=None, bias=None):
    return torch.empty_like(weight), (weight.new_empty(0) if bias is None else
                                      torch.empty_like(bias))


def _setup_context(ctx, inputs, output):
    (x, labels, weight, alpha, eta, lam, delta, reduction, backend, negative_only, _,
     group_size, bias) = tuple(inputs) + (None, None)[len(inputs) - 11:]   # defaults left out
    ctx.reduction = reduction
    ctx.hyper = (alpha, eta, lam, delta, backend, negative_only, group_size)   # weighted_grad_op's
    ctx.has_bias = bias is not None
    ctx.set_materialize_grads(False)     # dW and db outputs get no (zero) gradient of their own
    saved = (x, labels, weight) + ((bias,) if bias is not None else ())
    ctx.save_for_backward(*saved, *(() if reduction == "none" else output[1:]))


def _weight_grad_graph(x, labels, weight, bias, upstream, reduction, alpha, eta, lam, delta,
                       negative_only, group_size):
    """upstream · ∂(Σ_i s_i ℓ(x̃_i))/∂(W, b) as differentiable torch ops of W and b (and of
    upstream), with x̃ = sea_augment(x, labels, W.detach(), b.detach()) a constant:
    X̃ᵀ diag(s·sigmoid(t))(U − Y) and its column sums, the exact first derivatives
    (docs/design.md §3), so their derivative is the Hessian with x̃ fixed. Returns (dW, db or
    None)."""
    ct = compute_dtype(x, weight, bias)
    with torch.no_grad():
        x_aug = torch_backend.sea_augment(
            x, labels, weight.detach(), Hyper(alpha, eta, lam, delta, negative_only, group_size),
            ct, None if bias is None else bias.detach()).to(ct)
    y = reference.one_hot(labels, weight.shape[1], ct)
    logits = x_aug @ weight.to(ct)
    z = ((logits if bias is None else logits + bias.to(ct)) + delta * (1 - y)) / lam
    t, u = torch_backend.loss_terms(z, y.bool())
    s = upstream.to(ct) / (x.shape[0] if reduction == "mean" else 1)
    d = (s * torch.sigmoid(t))[:, None] * (u - y)
    return (x_aug.T @ d).to(weight.dtype), (None if bias is None else d.sum(0).to(bias.dtype))


def _backward(ctx, grad_loss, _grad_of_grad, _grad_of_grad_b):
    x, labels, weight, *saved = ctx.saved_tensors
    bias = saved.pop(0) if ctx.has_bias else None
    grad_b = None
    if grad_loss is None:        # only the gradient outputs were differentiated (not materialised)
        return (None,) * 13
    if torch.is_grad_enabled():  # backward(create_graph=True): a dW that is differentiable
        alpha, eta, lam, delta, _, negative_only, group_size = ctx.hyper
        grad_w, grad_b = _weight_grad_graph(x, labels, weight, bias, grad_loss, ctx.reduction,
                                            alpha, eta, lam, delta, negative_only, group_size)
    elif ctx.reduction == "none":
        grad_w, grad_b = weighted_grad_op(x, labels, weight, grad_loss, *ctx.hyper, bias)
    else:
        grad, grad_bias = saved
        grad_w = (grad_loss * grad).to(grad.dtype)
        grad_b = (grad_loss * grad_bias).to(grad_bias.dtype) if ctx.has_bias else None
    if not ctx.has_bias:
        grad_b = None
    return None, None, grad_w, None, None, None, None, None, None, None, None, None, grad_b


fused_sea_op.register_autograd(_backward, setup_context=_setup_context)

# torch.autocast: SeA is a loss (exp, softmax, norms — autocast's float32 list, like cross_entropy),
# so under autocast both ops take their floating inputs in float32 (float64 stays float64) and run
# with autocast off: the result is the float32 one, the loss float32, and ∂loss/∂W flows back
# through the cast in the weight's own dtype (docs/design.md, "autocast").
for _device in ("cpu", "cuda"):
    for _op in (fused_sea_op, weighted_grad_op):
        _op.register_autocast(_device, torch.float32)


class _FusedSeaFunction(torch.autograd.Function):
    """fused_sea_op for torch.func transforms (torch.func.grad, vjp, jacrev): the autograd.Function
    that register_autograd generates has no setup_context staticmethod, which torch.func requires
    (pytorch/pytorch#168393), so under a transform fused_sea calls this one — the same op below
    autograd, the same `_setup_context` and `_backward`."""

    @staticmethod
    def forward(*args):
        return fused_sea_op(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


def _transformed() -> bool:
    """Whether a torch.func transform (grad, vjp, vmap, …) is active (eager only)."""
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


def _eager() -> bool:
    return not torch.compiler.is_compiling()


def run(call: SeaCall, diagnose: bool = True) -> Tensor:
    """The loss of a validated call (op/call.py: `validate`, or `SeaConfig.bind` per batch): the
    custom op, nothing checked again. diagnose: in eager mode, a NaN/Inf loss raises
    NonFiniteLoss naming the input at fault (one O(1) check of the result: one host sync, needed
    to raise it); diagnose=False reads no value (the torch backend's step then has no sync)."""
    x, weight, bias, h = call.x, call.weight, call.bias, call.hyper
    need_grad = torch.is_grad_enabled() and (
        weight.requires_grad or (bias is not None and bias.requires_grad))
    op = _FusedSeaFunction.apply if _transformed() else fused_sea_op
    loss, _, _ = op(x, call.labels, weight, h.alpha, h.eta, h.lam, h.delta, call.reduction,
                    call.backend, h.negative_only, need_grad, h.group_size, bias)
    if diagnose and _eager():
        check_finite(loss, call)
    return loss


def augment(call: SeaCall, generator: torch.Generator | None = None) -> Tensor:
    """The augmented features X̃ of a validated call (op/call.py; any direction of
    params.DIRECTIONS), no gradient; a NaN/Inf result raises NonFiniteLoss."""
    x, labels, weight, bias, h = call.x, call.labels, call.weight, call.bias, call.hyper
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):   # as fused_sea: float32
        if call.direction in FUSED_DIRECTIONS:
            out = torch_backend.sea_augment(x, labels, weight, h, call.dtype, bias)
        else:
            out = reference.augment(x, labels, weight.to(x.dtype), direction=call.direction,
                                    alpha=h.alpha, eta=h.eta, lam=h.lam, delta=h.delta,
                                    generator=generator, group_size=h.group_size,
                                    bias=None if bias is None else bias.to(x.dtype))
    check_finite(out, call)
    return out


def fused_sea(x: Tensor, labels: Tensor, weight: Tensor, *, alpha: float = DEFAULTS["alpha"],
              eta: float = DEFAULTS["eta"], lam: float = DEFAULTS["lam"],
              delta: float = DEFAULTS["delta"], reduction: str = "mean",
              direction: str = "sea", group_size: int | None = None, bias: Tensor | None = None,
              backend: str = "auto", validate: bool = True) -> Tensor:
    """Smoothed-hinge loss (Eq. 15) of the SeA-augmented batch x̃ (Eq. 11), differentiable in weight.

    x (b×d) fixed features, labels (b,) in [0, C), weight (d×C). The augmentation x̃ is a constant
    of the step: autograd gives ∂loss/∂W with x̃ held fixed, exactly as Alg. 1 trains (also to
    second order: backward with create_graph=True gives a dW differentiable in W). reduction is
    "mean" (Alg. 1), "sum" or "none" (per-row losses). direction "sea_neg" drops the target-class
    term of the gradient (the paper's ablation). backend: "auto" (the first of op.dispatch.PRIORITY
    that takes the inputs: triton for float32/bf16/fp16 CUDA tensors, cpp on the CPU when built,
    else torch; docs/design.md §5), "torch", "cpp" or "triton". validate (default True) makes the
    checks that read values, each costing one host sync per call in eager mode because it must
    raise a Python error: the label range and a finite bias before the work (ValueError), a
    finite loss after it (NonFiniteLoss naming the input at fault); under torch.compile the first
    is a device-side assert and the second is skipped. validate=False reads no tensor value: on
    the torch backend forward and backward then issue no host sync (η = 0 included).

    group_size G (None: the whole batch, as the paper): rows [kG, min((k+1)G, b)) form group k and
    each row projects only onto the other rows of its group (the shorter last group is its own
    group; a group of one row is not moved: x̃_i = Π(x_i)). bias (C,), e.g. nn.Linear's with
    weight = lin.weight.T: logits XW + 1bᵀ, differentiable in the bias too.

    For a head trained with its encoder (a gradient to the input), in nn.Linear's layout, and in
    DistributedDataParallel, use `sea_kernels.SeALinear` / `sea_linear_cross_entropy`
    (op/linear.py): the same direction, the input normalised differentiably; DDP must wrap the
    module that owns the weight, since a functional call on a wrapped layer's weight bypasses
    DDP's gradient hooks.
    """
    call = calls.validate(x, labels, weight, alpha=alpha, eta=eta, lam=lam, delta=delta,
                          reduction=reduction, direction=direction, group_size=group_size,
                          bias=bias, backend=backend, check_values=validate)
    return run(call, diagnose=validate)


def sea_augment(x: Tensor, labels: Tensor, weight: Tensor, *, alpha: float = DEFAULTS["alpha"],
                eta: float = DEFAULTS["eta"], lam: float = DEFAULTS["lam"],
                delta: float = DEFAULTS["delta"], direction: str = "sea",
                generator: torch.Generator | None = None, group_size: int | None = None,
                bias: Tensor | None = None) -> Tensor:
    """The augmented features X̃ (b×d, no gradient), for users who train their own head.

    "sea"/"sea_neg" are computed in Gram space (X̃ = diag(1/n)(X + η diag(r) Q X)); the other
    ablation directions of the paper ("adv", "rand", "mixup", "none") follow `reference.augment`.
    group_size and bias as in `fused_sea`.
    """
    call = calls.validate(x, labels, weight, alpha=alpha, eta=eta, lam=lam, delta=delta,
                          reduction=None, direction=direction, group_size=group_size, bias=bias,
                          backend=None, directions=DIRECTIONS)
    return augment(call, generator)
