// Fused CPU kernel of the SeA loss in Gram space (docs/design.md §2); registered as
// torch.ops.sea_kernels.sea_fwd_cpu by sea_cpu.cpp.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace sea_kernels {

// Per-row losses ℓ(x̃_i) (b,), dW = ∂(Σ_i row_scale_i ℓ(x̃_i))/∂W (d×C) and, with a bias (C,) on
// the logits (L = XW + 1bᵀ; not on the attention scores), db = Σ_i D_i (C,); dW and db are empty
// tensors when compute_grad is false, db also without a bias. All in row_scale's dtype (float32 or
// float64: the compute dtype the host chose). group_size ≥ 1 projects each row only onto the
// other rows of its group of group_size consecutive rows (the last one shorter); none (or ≥ b):
// the whole batch. Same function, corner cases included, as
// sea_kernels.op.torch_backend.sea_forward. The arguments are validated by the host; the kernel
// checks only what guards memory. input_grad: also dX = ∂(Σ_i row_scale_i ℓ(x̃_i))/∂X (b×d) with
// the direction u held fixed (x̃_i = Π(x_i + ηu_i); op/input_grad.py), the fourth output (empty
// without it; it needs D, computed then even without compute_grad).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sea_fwd_cpu(
    const at::Tensor& x, const at::Tensor& labels, const at::Tensor& weight,
    const at::Tensor& row_scale, double alpha, double eta, double lam, double delta,
    bool negative_only, bool compute_grad, std::optional<int64_t> group_size = std::nullopt,
    const std::optional<at::Tensor>& bias = std::nullopt, bool input_grad = false);

}  // namespace sea_kernels
