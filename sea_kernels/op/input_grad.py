"""The input gradient of the SeA loss with the direction held fixed (docs/design.md §8).

With x̃_i = Π(x_i + η u_i), n_i = ‖x_i + η u_i‖ and u a constant of the step, ∂x̃_i/∂x_i =
(I − x̃_i x̃_iᵀ)/n_i. With D = ∂ℓ/∂L̃ (b×C, the row scales folded in), γ = D Wᵀ (one b·C·d GEMM)
and β_i = γ_i·x̃_i = D_i·(L̃_i − b) (the logits without their bias: no d-length work):

    ∂ℓ/∂x_i = (γ_i − β_i x̃_i) / n_i.

Every backend forms X̃ its own way (Gram space: X̃ = diag(c1) X + diag(c2) Q X, the untrusted
rows directly) and calls `input_grad` with it; the backend contract's `input_grad=True` returns
this as a fourth value (op/dispatch.py).
"""
from __future__ import annotations

from torch import Tensor


def input_grad(d: Tensor, weight: Tensor, aug_logits: Tensor, x_aug: Tensor,
               inv_n: Tensor) -> Tensor:
    """∂(Σ_i s_i ℓ(x̃_i))/∂X (b×d) = diag(1/n)(D Wᵀ − diag(β) X̃), β_i = D_i·L̃_i.

    d: D (b×C), weight: W (d×C), aug_logits: L̃ = X̃W (b×C, without the bias), x_aug: X̃ (b×d),
    inv_n: 1/n_i (b,) — 1 where x̃_i = x_i (η = 0 on unit rows)."""
    beta = (d * aug_logits).sum(dim=1)
    gamma = d @ weight.T
    return (gamma - beta[:, None] * x_aug) * inv_n[:, None]
