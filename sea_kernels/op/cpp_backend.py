"""The `cpp` backend: the Gram-space stages of docs/design.md §2/§5 as one fused C++ CPU kernel.

What differs from the common formulation (the kernel is csrc/sea_cpu.cpp, its stage functions
carry the names of §5):

* CPU only, in the compute dtype (float64 stays float64; bf16/fp16 inputs accumulate in fp32).
* The GEMMs go through ATen (MKL); every elementwise stage is one OpenMP (at::parallel_for) pass
  over rows. [K | L] is one b×(b+C) buffer; Q (b×b) is stored, its softmax done in place.

This module only loads the compiled extension `sea_kernels._C`, whose import registers
`torch.ops.sea_kernels.sea_fwd_cpu` (TORCH_LIBRARY in csrc/). When the build failed or is missing,
CPP_AVAILABLE is False, CPP_ERROR says why, one warning is emitted, and backend="auto" falls back
to the eager `torch` backend (op/dispatch.py); the package still works.
"""
from __future__ import annotations

import warnings

import torch

try:
    from .. import _C  # noqa: F401  (registers the op)
    from . import cpp_fake  # noqa: F401  (its FakeTensor kernel, for torch.compile / opcheck)
    CPP_AVAILABLE, CPP_ERROR = True, None
except Exception as exc:  # ImportError, or an ABI mismatch surfacing as OSError
    CPP_AVAILABLE, CPP_ERROR = False, f"{type(exc).__name__}: {exc}"
    warnings.warn(f"sea_kernels: C++ extension unavailable ({CPP_ERROR}); "
                  "using the torch backend on CPU", RuntimeWarning, stacklevel=2)


def sea_forward(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only=False,
                compute_grad=True):
    """The `sea_forward` contract (docs/design.md §5) through torch.ops.sea_kernels.sea_fwd_cpu."""
    return torch.ops.sea_kernels.sea_fwd_cpu(x, labels, weight, row_scale, alpha, eta, lam, delta,
                                             negative_only, compute_grad)
