// Fused CPU kernel of the SeA loss in Gram space (docs/design.md §2); registered as
// torch.ops.sea_kernels.sea_fwd_cpu by sea_cpu.cpp.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace sea_kernels {

// Per-row losses ℓ(x̃_i) (b,) and dW = ∂(Σ_i row_scale_i ℓ(x̃_i))/∂W (d×C; an empty tensor when
// compute_grad is false), both in the compute dtype: float64 if x or weight is float64, else
// float32. Same function, corner cases included, as sea_kernels.torch_sea.sea_forward.
std::tuple<at::Tensor, at::Tensor> sea_fwd_cpu(const at::Tensor& x, const at::Tensor& labels,
                                               const at::Tensor& weight,
                                               const at::Tensor& row_scale, double alpha,
                                               double eta, double lam, double delta,
                                               bool negative_only, bool compute_grad);

}  // namespace sea_kernels
