"""Versions, and which backends are built and usable here (and why not): `sea_kernels.info()`."""
from __future__ import annotations

import os
import platform
import sys

import torch


def backend_status() -> dict[str, tuple[bool, str]]:
    """{backend: (usable on this machine, why / where)}."""
    from . import _ext, triton_sea

    status = {"torch": (True, "eager Gram-space PyTorch, every device")}
    if _ext.CPP_AVAILABLE:
        threads = torch.get_num_threads()
        omp = "OpenMP" if torch.backends.openmp.is_available() else "no OpenMP"
        status["cpp"] = (True, f"fused CPU kernel (sea_kernels._C, {omp}, {threads} threads)")
    else:
        status["cpp"] = (False, f"C++ extension not built: {_ext.CPP_ERROR}")
    if not triton_sea.AVAILABLE:
        status["triton"] = (False, triton_sea.UNAVAILABLE_REASON)
    elif torch.cuda.is_available():
        status["triton"] = (True, f"fused Triton kernel on {torch.cuda.get_device_name()}")
    elif os.environ.get("TRITON_INTERPRET") == "1":
        status["triton"] = (True, "Triton interpreter on CPU (TRITON_INTERPRET=1; testing only)")
    else:
        status["triton"] = (False, "triton is installed but no CUDA device is visible "
                                   "(TRITON_INTERPRET=1 runs it on the CPU for testing)")
    return status


def info(file=None) -> None:
    """Print versions, the usable backends and what backend='auto' picks."""
    from . import __version__, resolve_backend

    file = file or sys.stdout
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = "not installed"
    print(f"sea_kernels {__version__}", file=file)
    print(f"python      {platform.python_version()} ({platform.machine()})", file=file)
    print(f"torch       {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
          f"cuda available: {torch.cuda.is_available()})", file=file)
    print(f"triton      {triton_version}", file=file)
    print("backends:", file=file)
    for name, (usable, why) in backend_status().items():
        print(f"  {name:7s} {'usable ' if usable else 'missing'}  {why}", file=file)
    print(f"auto picks: cpu → {resolve_backend('auto', torch.device('cpu'))}"
          + (f", cuda → {resolve_backend('auto', torch.device('cuda'))}"
             if torch.cuda.is_available() else ""), file=file)

