"""`python -m sea_kernels.info`: print versions and which backends are built and usable here.

(The package exposes the same as the function `sea_kernels.info()`; it lives in `_info.py` so that
running this module does not find it imported already.)"""
from sea_kernels.op.dispatch import backend_status, info

__all__ = ["info", "backend_status"]

if __name__ == "__main__":
    info()
