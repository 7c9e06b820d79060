"""FakeTensor kernel of torch.ops.sea_kernels.sea_fwd_cpu (shapes and dtypes only), so the C++ op
works under torch.compile and torch.library.opcheck. The dtypes follow the contract of
docs/design.md §5: float64 if x, weight or bias is float64, else float32. Outputs: losses (b,),
dW (d×C; (0,) without compute_grad), db (C,; (0,) without compute_grad or without a bias).

op/cpp_backend.py imports this once the op is registered (by the prebuilt sea_kernels._C or by
the kernel compiled on first use); imported on its own, it has cpp_backend obtain the kernel first.
"""
import torch

if not hasattr(torch.ops.sea_kernels, "sea_fwd_cpu"):
    from . import cpp_backend

    if not cpp_backend.ensure():
        raise ImportError(f"the C++ kernel is unavailable: {cpp_backend.CPP_ERROR}")


@torch.library.register_fake("sea_kernels::sea_fwd_cpu")
def _(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only, compute_grad,
      group_size=0, bias=None):
    dtypes = (x.dtype, weight.dtype) + (() if bias is None else (bias.dtype,))
    ct = torch.float64 if torch.float64 in dtypes else torch.float32
    losses = x.new_empty((x.shape[0],), dtype=ct)
    grad = x.new_empty(tuple(weight.shape) if compute_grad else (0,), dtype=ct)
    grad_b = x.new_empty((weight.shape[1],) if compute_grad and bias is not None else (0,),
                         dtype=ct)
    return losses, grad, grad_b
