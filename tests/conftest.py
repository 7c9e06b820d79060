"""Test-wide set-up. Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors;
the variable must be set before any kernel is defined, so it is set here, before collection."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
