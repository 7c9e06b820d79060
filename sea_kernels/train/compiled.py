"""One whole training step of SeAClassifier(augment="sea"/"sea_neg", compile=True) as one compiled
graph: the fused op and the SGD update, no autograd, no host sync (docs/design.md §7).

    step = make_step(config, W, optimizer, lr=..., momentum=..., weight_decay=...)
    loss = step(xb, yb)                  # W and the momentum buffer updated in place

The op's forward already returns ∂ℓ/∂W (op/fused.py), so the step is
    (ℓ, G) = fused_sea_op(xb, yb, W, ..., need_grad=True);  G ← G + wd·W;
    buf ← momentum·buf + G;  W ← W − lr·buf
— torch.optim.SGD's update (dampening 0, no Nesterov) written out, equal to it up to the rounding
of fused multiply-adds. buf is the optimizer's own state["momentum_buffer"] (so checkpoints and
resumption see it); it starts at zero where SGD starts from buf = G, the same value exactly
(0·momentum + G = G). torch.compile(fullgraph=True, dynamic=False): mode "reduce-overhead" (CUDA
graphs: one replay per step) on CUDA, the default mode elsewhere; W and buf are marked static
addresses so the graph updates them in place. The custom op is one opaque node of the graph: it
compiles with fullgraph; a CUDA-graph capture also needs the backend inside it to be sync-free.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..op.call import SeaConfig
from ..op.fused import fused_sea_op

__all__ = ["make_step", "step_function", "compile_mode"]


def compile_mode(device: torch.device) -> str | None:
    """"reduce-overhead" (CUDA graphs) on CUDA, None (torch.compile's default) elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else None


def step_function(config: SeaConfig, *, lr: float, momentum: float,
                  weight_decay: float) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """The plain (uncompiled) step fn(xb, yb, W, buf) → ℓ; W (detached) and buf change in place."""

    def step(x: Tensor, labels: Tensor, w: Tensor, buf: Tensor) -> Tensor:
        call = config.bind(x, labels, w)
        h = call.hyper
        loss, grad, _ = fused_sea_op(call.x, call.labels, w, h.alpha, h.eta, h.lam, h.delta,
                                     call.reduction, call.backend, h.negative_only, True,
                                     h.group_size, None)
        if weight_decay:
            grad = grad + weight_decay * w
        if momentum:
            buf.mul_(momentum).add_(grad)
            grad = buf
        w.sub_(lr * grad)
        return loss

    return step


def make_step(config: SeaConfig, weight: Tensor, optimizer: torch.optim.Optimizer, *,
              lr: float, momentum: float, weight_decay: float,
              backend: str | None = "inductor") -> Callable[[Tensor, Tensor], Tensor]:
    """step(xb, yb) → the batch loss (a 0-d tensor on the device), W and the optimizer's momentum
    buffer updated in place; compiled with fullgraph=True (`backend` is torch.compile's; None:
    the step runs eagerly, the reference the compiled one is tested against)."""
    w = weight.detach()
    state = optimizer.state[weight]
    buf = state.get("momentum_buffer")
    if momentum and buf is None:
        buf = state["momentum_buffer"] = torch.zeros_like(w)
    elif buf is None:
        buf = w.new_empty(0)
    buf = buf.detach()
    fn = step_function(config, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if backend is not None:
        for t in (w, buf):
            torch._dynamo.mark_static_address(t)
        fn = torch.compile(fn, fullgraph=True, dynamic=False, backend=backend,
                           mode=compile_mode(w.device) if backend == "inductor" else None)

    def step(x: Tensor, labels: Tensor) -> Tensor:
        return fn(x, labels, w, buf)

    return step
