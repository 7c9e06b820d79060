"""SeA as a drop-in loss: `sea_linear_cross_entropy` (the functional call, shaped like torch's
`F.linear_cross_entropy`) and `SeALinear` (an nn.Linear that returns the SeA loss), docs/design.md
§8.

With h the input rows, V (C×d, nn.Linear's layout) and b the layer's weight and bias:

    x_i = h_i/‖h_i‖                          differentiable (a zero row stays zero)
    u_i = Π(ĝ_i)                             from the detached x, W = Vᵀ and b: a constant
    x̃_i = Π(x_i + η u_i),  L̃ = X̃Vᵀ + 1bᵀ,   loss = Eq. 15 on L̃ (λ = 1, δ = 0: cross-entropy)

u is what `fused_sea` moves each row along (groups, bias, zero rows out of every span). Two
paths give the same numbers:

* the fused path (process_group None): the custom op `sea_kernels::sea_linear_loss`
  (`linear_loss_op`) runs the resolved backend's forward with input_grad=True (op/dispatch.py),
  which computes the loss and, in the same pass, ∂/∂x (op/input_grad.py), ∂/∂V and ∂/∂b;
  backward scales them by the incoming gradient (Liger-Kernel's pattern; reduction "none" runs
  the op again with the upstream row weights; backward(create_graph=True) takes the autograd
  path's graph). x = F.normalize(h) stays outside the op: autograd chains the normalisation.
  η = 0 (number or tensor) runs `unmoved_forward` inside it: no b×b work.
* the autograd path (a span across ranks, torch.func transforms): u from the custom op
  `sea_kernels::sea_linear_direction` (the torch stages, `sea_direction`) under no_grad, then
  ordinary autograd.

η = 0, λ = 1, δ = 0 (numbers) is F.linear_cross_entropy(F.normalize(h), V, y, b), torch's own
fused kernel.

The span across ranks (`process_group`): every rank all-gathers the detached rows and labels the
direction needs, computes u on the concatenation of the ranks' batches (rank order; the groups of
`group_size` cut from that global batch) and keeps its own rows; no gradient crosses ranks except
through DDP's own all-reduce of V and b.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..params import (
    BACKENDS,
    DEFAULTS,
    REDUCTIONS,
    ParameterError,
    check_choice,
    check_int,
    check_real,
)
from .call import (
    Hyper,
    check_group_size,
    compute_dtype,
    features_of,
    group_size_of,
    is_unit_grad,
)
from .dispatch import forward_of, resolve_backend
from .reference import one_hot, unit
from .torch_backend import loss_terms, losses_and_d, sea_direction, softplus
from .validation import check_dtype_range, check_linear_args

__all__ = ["sea_linear_cross_entropy", "SeALinear", "direction_op", "linear_loss_op"]

_HYPER_NAMES = ("alpha", "eta", "lam", "delta")


@torch.library.custom_op("sea_kernels::sea_linear_direction", mutates_args=())
def direction_op(x: Tensor, labels: Tensor, weight: Tensor, scalars: Tensor,
                 group_size: int | None = None, bias: Tensor | None = None) -> Tensor:
    """U = Π(QX) (b×d, x's dtype) for detached x (b×d), labels (b,) int64, W (d×C), bias (C,),
    scalars = (α, λ, δ) as a tensor (so that tensor hyper-parameters reach the op without a
    recompilation under torch.compile; passed to the stages as 0-dim tensors, no host sync);
    group_size None or 1 ≤ G < b."""
    alpha, lam, delta = scalars.unbind()
    return sea_direction(x, labels, weight, Hyper(alpha, 0.0, lam, delta, False, group_size),
                         x.dtype, bias)


@direction_op.register_fake
def _(x, labels, weight, scalars, group_size=None, bias=None):
    return torch.empty_like(x)


def _hyper(name: str, value):
    """A hyper-parameter as given (a number becomes a float, a 0-dim tensor stays a tensor) and
    its float value where it is known without a device sync (numbers; CPU tensors in eager
    mode), else None."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype.is_complex or value.dtype == torch.bool:
            raise ParameterError(f"{name} must be a real number or a 0-dim real tensor, got a "
                                 f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        if value.device.type == "cpu" and not torch.compiler.is_compiling():
            return value, check_real(name, float(value))
        return value, None
    v = check_real(name, value)
    return v, v


def _check(input, linear_weight, target, linear_bias, hypers, group_size, reduction,
           ignore_index, backend):
    """The validated (hyper-parameters, group size, compute dtype, backend). On the plain path
    (η = 0, λ = 1, δ = 0 as numbers: torch's own fused kernel, `_plain`) no backend is resolved,
    only its name checked: none runs. The target range costs one aminmax and one host sync;
    only a value outside [0, C) is looked at again (it may be ignore_index)."""
    check_linear_args(input, linear_weight, target, linear_bias)
    group_size = check_group_size(group_size)
    values = [_hyper(n, v) for n, v in zip(_HYPER_NAMES, hypers)]
    ct = compute_dtype(input, linear_weight, linear_bias)
    known = [v if v is not None else safe for (_, v), safe in zip(values, (1.0, 0.0, 1.0, 0.0))]
    check_dtype_range(ct, *known)
    check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise ParameterError(f"ignore_index must be an integer, got {ignore_index!r}")
    hypers = [v for v, _ in values]
    if _plain(*hypers):
        check_choice("backend", backend, BACKENDS)
    else:
        dtypes = tuple(dict.fromkeys(t.dtype for t in (input, linear_weight, linear_bias)
                                     if t is not None))
        features = features_of(group_size, linear_bias is not None)
        if input.requires_grad and torch.is_grad_enabled():
            features = features | {"input_grad"}
        backend = resolve_backend(backend, input.device, dtypes, features)
    c = linear_weight.shape[0]
    if not torch.compiler.is_compiling() and target.numel():
        lo, hi = torch.stack(torch.aminmax(target)).tolist()
        if (lo < 0 or hi >= c) and bool(
                (bad := (target != ignore_index) & ((target < 0) | (target >= c))).any()):
            raise ValueError(f"target must lie in [0, {c}) (linear_weight has {c} rows) or "
                             f"equal ignore_index={ignore_index}, found {int(target[bad][0])}")
    return hypers, group_size, ct, backend


def _plain(alpha, eta, lam, delta) -> bool:
    """η = 0, λ = 1, δ = 0 as Python numbers: the loss is torch's own linear cross-entropy."""
    return _is_number(eta, 0) and _is_number(lam, 1) and _is_number(delta, 0)


def _is_number(value, number) -> bool:
    """Whether a hyper-parameter is a Python number (not a tensor) equal to `number`."""
    return not isinstance(value, Tensor) and value == number


def _gather(x, labels, process_group):
    """The rows and labels of every rank of `process_group` in rank order (one all_gather of
    (b, d+1) rows after a check of the per-rank shapes), and this rank's index."""
    import torch.distributed as dist

    n, rank = dist.get_world_size(process_group), dist.get_rank(process_group)
    if n == 1:
        return x, labels, 0
    shape = torch.tensor(x.shape, dtype=torch.int64, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(n)]
    dist.all_gather(shapes, shape, group=process_group)
    shapes = [tuple(s.tolist()) for s in shapes]
    if len(set(shapes)) > 1:
        raise ValueError("sea_linear_cross_entropy with a process_group needs the same batch on "
                         f"every rank (rows × features); got {shapes} by rank")
    packed = torch.cat([x, labels[:, None].to(x.dtype)], dim=1)
    parts = [torch.empty_like(packed) for _ in range(n)]
    dist.all_gather(parts, packed, group=process_group)
    full = torch.cat(parts)
    return full[:, :-1], full[:, -1].long(), rank


def _direction(x, labels, weight, bias, alpha, lam, delta, group_size, process_group):
    """u (b×d, detached) for this rank's rows x (detached, ignored rows zeroed), labels (ignored
    rows 0): over the local batch, or over the ranks' concatenated batch, restricted to the
    groups that hold this rank's rows."""
    b = x.shape[0]
    lo = 0
    if process_group is not None:
        x, labels, rank = _gather(x, labels, process_group)
        lo = rank * b
    total = x.shape[0]
    if total == 0:
        return x
    g = group_size_of(group_size, total)
    first, last = 0, total
    if g is not None and total > b:    # only the groups that meet rows lo : lo + b
        first, last = (lo // g) * g, min(-(-(lo + b) // g) * g, total)
    part = slice(first, last)
    scalars = torch.stack([torch.as_tensor(v, dtype=x.dtype, device=x.device)
                           for v in (alpha, lam, delta)])
    g = group_size_of(g, last - first)
    u = direction_op(x[part], labels[part], weight, scalars, g, bias)
    return u[lo - first:lo - first + b]


def sea_linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor, *,
                             linear_bias: Tensor | None = None, alpha=DEFAULTS["alpha"],
                             eta=DEFAULTS["eta"], lam=DEFAULTS["lam"], delta=DEFAULTS["delta"],
                             group_size: int | None = None, process_group=None,
                             reduction: str = "mean", ignore_index: int = -100,
                             backend: str = "auto") -> Tensor:
    """The SeA loss of a linear head, shaped like `F.linear_cross_entropy` (linear_weight V is
    C×d, nn.Linear's layout; no transposed copy is made).

    SeA lives on the unit sphere: x_i = h_i/‖h_i‖ (F.normalize; a zero row stays zero and takes
    no part in any span; as in `fused_sea` it is itself moved to x̃_i = u_i, and, as through
    F.normalize, its input gradient is ∂ℓ/∂x_i divided by F.normalize's eps = 1e-12; at η = 0
    with λ ≠ 1, δ ≠ 0 or a tensor η it stays x̃_i = 0, without gradient). The
    direction u_i = Π(ĝ_i) is computed from the detached x, W = Vᵀ and the bias exactly as
    `fused_sea` computes it (groups of `group_size` rows; Π(ĝ_i) over the other rows of the
    span, q ∝ exp(x_jᵀg_i/α)) and is a constant of the step; x̃_i = Π(x_i + η u_i), logits
    X̃Vᵀ + 1bᵀ, and the loss is Eq. 15: λ·softplus(log Σ_{c≠y} e^{(z_c − z_y)}) with
    z = (L̃ + δ(1−Y))/λ. Autograd gives the exact gradients to input, V and b through x̃ and the
    normalisation. η = 0, λ = 1, δ = 0 is F.linear_cross_entropy(F.normalize(input, dim=1), V,
    target, ...) in value and gradients; a number η = 0 computes no direction (a tensor η always
    does: its value is not read on the host).

    alpha, eta, lam, delta: numbers or 0-dim tensors (a tensor's change does not recompile under
    torch.compile). target == ignore_index rows get no loss and no gradient and are in no span;
    "mean" divides by the other rows' count (torch's rule). process_group (e.g.
    torch.distributed.group.WORLD): the span is the concatenation of the group's batches in rank
    order (the same batch shape on every rank), group_size cut from that global batch; one
    all_gather of the detached rows and labels per call, no gradient exchange — wrap the layer
    as `DistributedDataParallel(SeALinear(...))` (the functional call on a DDP-wrapped layer's
    weight bypasses DDP's hooks). backend: resolved with the dispatcher's rules (op/dispatch.py;
    "input_grad" is needed when the input requires grad); without a process_group the resolved
    backend computes the loss and every gradient in one forward pass (`linear_loss_op`).
    """
    hypers, group_size, ct, backend = _check(input, linear_weight, target, linear_bias,
                                             (alpha, eta, lam, delta), group_size, reduction,
                                             ignore_index, backend)
    alpha, eta, lam, delta = hypers
    v = linear_weight.to(ct)
    bias = None if linear_bias is None else linear_bias.to(ct)
    x = F.normalize(input.to(ct), dim=1)
    if _plain(*hypers):
        return _linear_cross_entropy(x, v, target, bias, reduction, ignore_index)
    target = target.long()
    valid = target != ignore_index
    labels = target.masked_fill(~valid, 0)
    moves = isinstance(eta, Tensor) or eta != 0
    if _use_fused(input, process_group):
        return _fused(x, labels, valid, v, bias, hypers, group_size, reduction, backend)
    u = None
    if moves and (input.shape[0] or process_group is not None):
        with torch.no_grad():
            xd = x.detach().masked_fill(~valid[:, None], 0)
            u = _direction(xd, labels, v.detach().T, None if bias is None else bias.detach(),
                           alpha, lam, delta, group_size, process_group)
    rows = torch.where(valid, _row_losses(x, labels, v, bias, eta, lam, delta, u), 0)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / valid.sum()


def _linear_cross_entropy(x, v, target, bias, reduction, ignore_index):
    """torch's F.linear_cross_entropy (torch ≥ 2.13); before it, F.cross_entropy of F.linear."""
    if hasattr(F, "linear_cross_entropy"):
        return F.linear_cross_entropy(x, v, target, linear_bias=bias, reduction=reduction,
                                      ignore_index=ignore_index)
    return F.cross_entropy(F.linear(x, v, bias), target, reduction=reduction,
                           ignore_index=ignore_index)


def _row_losses(x, labels, v, bias, eta, lam, delta, u=None):
    """ℓ(x̃_i) (b,) by autograd: x̃ = Π(x + ηu) (Π(x) without u, η = 0: as the backends' η = 0
    forward, a zero row has no gradient), logits X̃Vᵀ + 1bᵀ, Eq. 15."""
    x = unit(x) if u is None else unit(x + eta * u)
    logits = x @ v.T if bias is None else torch.addmm(bias, x, v.T)
    y = labels[:, None] == torch.arange(v.shape[0], device=labels.device)
    z = logits if isinstance(delta, float) and delta == 0 else logits + delta * (~y).to(x.dtype)
    t, _ = loss_terms(z / lam, y)
    return lam * softplus(t)


def _use_fused(input, process_group) -> bool:
    """Whether the call takes the fused path (`linear_loss_op`): a local span, a non-empty
    batch, no torch.func transform; else the autograd path (direction op + autograd)."""
    return process_group is None and input.shape[0] > 0 and not _transformed()


def _transformed() -> bool:
    """Whether a torch.func transform is active (eager only): the autograd path then."""
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


# ---------------------------------------------------------------------------- the fused path
# Liger-Kernel's pattern: the resolved backend's forward computes the loss and, in the same pass,
# ∂/∂x (input_grad=True, op/input_grad.py), ∂/∂V and ∂/∂b; backward scales them by the incoming
# gradient. x = F.normalize(input) stays outside the op, so autograd chains the normalisation.

def _scalars(hypers, ct, device) -> Tensor:
    """(α, η, λ, δ) as one tensor: a tensor hyper-parameter reaches the op without a
    recompilation under torch.compile (its value is read inside the op)."""
    if not any(isinstance(h, Tensor) for h in hypers):
        return torch.tensor(hypers, dtype=ct, device=device)
    return torch.stack([torch.as_tensor(h, dtype=ct, device=device) for h in hypers])


def _unmoved(x, labels, v, row_scale, lam, delta, bias, need_x, need_w):
    """η = 0 on the rows x = F.normalize(h) (unit, or zero): x̃ = x (Π(x) = x), no b×b work and
    no b×d pass but the GEMMs: L = XVᵀ + 1bᵀ, the losses and D (`losses_and_d`), dV = DᵀX (C×d,
    V's layout), db = Σ_i D_i, and dX = DV — ∂/∂x_i up to a multiple of x_i, which F.normalize's
    backward removes (it passes only the part orthogonal to x_i), so the input gradient equals
    the backends' (γ − βx̃)/‖x‖; a zero row (x̃ = Π(0) = 0) gets none."""
    y = one_hot(labels, v.shape[0], x.dtype)
    logits = x @ v.T if bias is None else torch.addmm(bias, x, v.T)
    losses, d = losses_and_d(logits, y, row_scale, lam, delta, need_x or need_w)
    dx = dv = db = x.new_empty(0)
    if need_x:
        nonzero = torch.linalg.vector_norm(x, dim=1) > 0
        dx = (d * nonzero[:, None].to(d.dtype)) @ v
    if need_w:
        dv = d.T @ x
        db = d.sum(dim=0) if bias is not None else db
    return losses, (dx if need_x else None), dv, db


def _run_backend(x, labels, v, row_scale, scalars, backend, need_x, need_w, group_size, bias):
    """The backend contract (op/dispatch.py) on x (b×d), V (C×d) and (α, η, λ, δ); η = 0:
    `_unmoved`. Returns (losses, dX or None, dV (C×d) or empty, db)."""
    alpha, eta, lam, delta = scalars.tolist()
    if eta == 0:
        return _unmoved(x, labels, v, row_scale, lam, delta, bias, need_x, need_w)
    hyper = Hyper(alpha, eta, lam, delta, False, group_size)
    forward = forward_of(backend)
    extra = {"input_grad": True} if need_x else {}
    out = forward(x, labels, v.T, row_scale, hyper, need_w, bias, **extra)
    return out[0], (out[3] if need_x else None), (out[1].T if need_w else out[1]), out[2]


@torch.library.custom_op("sea_kernels::sea_linear_loss", mutates_args=())
def linear_loss_op(x: Tensor, labels: Tensor, linear_weight: Tensor, row_scale: Tensor,
                   scalars: Tensor, backend: str, reduce: bool, need_x: bool, need_w: bool,
                   group_size: int | None = None,
                   bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss, dX, dV, db) of Σ_i s_i ℓ(x̃_i) (reduce; s = row_scale) or the per-row losses
    ℓ(x̃_i) (b,) with empty gradients (not reduce). x (b×d) and V (C×d) in the compute dtype,
    labels int64, scalars (α, η, λ, δ); dX only with need_x, dV (C×d) and db only with need_w
    (db also not without a bias): else empty tensors. The direction is computed from x inside
    the backend and held fixed."""
    return _linear_loss(x, labels, linear_weight, row_scale, scalars, backend, reduce, need_x,
                        need_w, group_size, bias)


def _linear_loss(x, labels, linear_weight, row_scale, scalars, backend, reduce, need_x, need_w,
                 group_size=None, bias=None):
    """The body of `linear_loss_op` (also `_LinearLoss`'s forward)."""
    need_x, need_w = need_x and reduce, need_w and reduce
    losses, dx, dv, db = _run_backend(x, labels, linear_weight, row_scale, scalars, backend,
                                      need_x, need_w, group_size, bias)
    loss = (losses * row_scale).sum() if reduce else losses

    def empty():
        return x.new_empty(0)
    return (loss, empty() if dx is None else dx.contiguous(),
            dv.contiguous() if need_w else empty(),
            db if need_w and bias is not None else empty())


@linear_loss_op.register_fake
def _(x, labels, linear_weight, row_scale, scalars, backend, reduce, need_x, need_w,
      group_size=None, bias=None):
    c, d = linear_weight.shape
    need_x, need_w = need_x and reduce, need_w and reduce
    loss = x.new_empty(() if reduce else (x.shape[0],))
    dx = x.new_empty(x.shape if need_x else (0,))
    dv = x.new_empty((c, d) if need_w else (0,))
    db = x.new_empty((c,) if need_w and bias is not None else (0,))
    return loss, dx, dv, db


def _setup_context(ctx, inputs, output):
    (x, labels, v, row_scale, scalars, backend, reduce, need_x, need_w, group_size,
     bias) = tuple(inputs) + (None, None)[len(inputs) - 9:]     # defaults left out
    ctx.args = (backend, reduce, need_x, need_w, group_size)
    ctx.has_bias = bias is not None
    ctx.set_materialize_grads(False)     # the gradient outputs get no (zero) gradient of theirs
    saved = (x, labels, v, row_scale, scalars) + ((bias,) if bias is not None else ())
    ctx.save_for_backward(*saved, *(output[1:] if reduce else ()))


def _backward(ctx, grad, *_):
    x, labels, v, row_scale, scalars, *rest = ctx.saved_tensors
    bias = rest.pop(0) if ctx.has_bias else None
    backend, reduce, need_x, need_w, group_size = ctx.args
    if torch.is_grad_enabled():          # backward(create_graph=True): the autograd path's graph
        wants = ctx.needs_input_grad
        dx, dv, db = _graph_grads(x, labels, v, bias, row_scale * grad, scalars, group_size,
                                  wants[0], wants[2], ctx.has_bias and wants[10])
    elif reduce:
        dx, dv, db = rest
        if not is_unit_grad(grad):                                           # Liger: skip × 1
            dx, dv, db = (t * grad for t in (dx, dv, db))
    else:                                # "none": the row weights are known now: run it again
        _, dx, dv, db = linear_loss_op(x, labels, v, row_scale * grad, scalars, backend, True,
                                       need_x, need_w, group_size, bias)
    return (dx if need_x else None, None, dv if need_w else None, None, None, None, None, None,
            None, None, db if need_w and bias is not None else None)


def _graph_grads(x, labels, v, bias, row_scale, scalars, group_size, need_x, need_v, need_b):
    """∂(Σ_i s_i ℓ(x̃_i))/∂(x, V, b) as differentiable ops (for double backward), from the
    autograd path with the same fixed direction."""
    alpha, eta, lam, delta = scalars.unbind()
    with torch.no_grad():
        u = _direction(x.detach(), labels, v.detach().T, None if bias is None else bias.detach(),
                       alpha, lam, delta, group_size, None)
    rows = _row_losses(x, labels, v, bias, eta, lam, delta, u)
    on = (need_x, need_v, need_b)
    wrt = [t for t, want in zip((x, v, bias), on) if want]
    grads = iter(torch.autograd.grad((rows * row_scale).sum(), wrt, create_graph=True))
    return tuple(next(grads) if want else None for want in on)


linear_loss_op.register_autograd(_backward, setup_context=_setup_context)


class _LinearLoss(torch.autograd.Function):
    """`linear_loss_op` in eager mode without torch.library's per-call dispatch (the same body,
    `_setup_context` and `_backward`); torch.compile traces the custom op."""

    @staticmethod
    def forward(*args):
        return _linear_loss(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


def _fused(x, labels, valid, v, bias, hypers, group_size, reduction, backend):
    """The loss through `linear_loss_op`. Ignored rows (valid false) enter as zero rows (out of
    every span) with row scale 0; "mean" divides by the other rows' count."""
    ct, b = x.dtype, x.shape[0]
    grad_on = torch.is_grad_enabled()
    need_x = grad_on and x.requires_grad
    need_w = grad_on and (v.requires_grad or (bias is not None and bias.requires_grad))
    weights = valid.to(ct)
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    if not eager_cpu or not bool(valid.all()):     # (no host sync on a GPU: always mask there)
        x = x.masked_fill(~valid[:, None], 0)
    scalars = _scalars(hypers, ct, x.device)
    group = group_size_of(group_size, b)
    op = linear_loss_op if torch.compiler.is_compiling() else _LinearLoss.apply
    if reduction == "none":
        losses = op(x, labels, v, weights, scalars, backend, False, need_x, need_w, group,
                    bias)[0]
        return losses * weights
    scale = weights / weights.sum() if reduction == "mean" else weights
    return op(x, labels, v, scale, scalars, backend, True, need_x, need_w, group, bias)[0]


class SeALinear(nn.Module):
    """nn.Linear(in_features, out_features) whose forward(input, target) is the SeA loss
    (`sea_linear_cross_entropy` of its weight and bias) and forward(input) the logits of the
    normalised input, F.linear(F.normalize(input), weight, bias). Parameters, initialisation and
    state_dict are nn.Linear's (weight C×d, bias C). alpha, eta, lam, delta, group_size,
    process_group, reduction, ignore_index and backend are plain attributes that may change
    between steps. Wrap it in DistributedDataParallel: the parameters are used inside the
    module's own forward, so DDP all-reduces their gradients; with process_group the SeA span is
    the ranks' concatenated batch, and DDP over N ranks trains as one process on the global
    batch (reduction "mean", the same batch size on every rank and no ignored rows)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 alpha=DEFAULTS["alpha"], eta=DEFAULTS["eta"], lam=DEFAULTS["lam"],
                 delta=DEFAULTS["delta"], group_size: int | None = None, process_group=None,
                 reduction: str = "mean", ignore_index: int = -100, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=2)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        for name, value in zip(_HYPER_NAMES, (alpha, eta, lam, delta)):
            _hyper(name, value)     # checked here too, so that a bad value fails at construction
        check_group_size(group_size)
        check_choice("reduction", reduction, REDUCTIONS)
        self.alpha, self.eta, self.lam, self.delta = alpha, eta, lam, delta
        self.group_size, self.process_group = group_size, process_group
        self.reduction, self.ignore_index, self.backend = reduction, ignore_index, backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation."""
        nn.Linear.reset_parameters(self)

    def forward(self, input: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return F.linear(F.normalize(input, dim=1), self.weight, self.bias)
        return sea_linear_cross_entropy(
            input, self.weight, target, linear_bias=self.bias, alpha=self.alpha, eta=self.eta,
            lam=self.lam, delta=self.delta, group_size=self.group_size,
            process_group=self.process_group, reduction=self.reduction,
            ignore_index=self.ignore_index, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, alpha={self.alpha}, eta={self.eta}, "
                f"lam={self.lam}, delta={self.delta}, group_size={self.group_size}")

