"""sea_kernels — fast Semantic Adversarial Augmentation (SeA, Qian, Xu & Hu, ECCV 2024).

    loss = sea_kernels.fused_sea(x, labels, weight)   # SeA loss, autograd w.r.t. weight
    x_aug = sea_kernels.sea_augment(x, labels, weight)
    sea_kernels.info()                                 # versions and usable backends

`sea_kernels.reference` is the paper-literal specification every backend is tested against.
"""
from . import reference
from .info import backend_status, info
from .ops import fused_sea, resolve_backend, sea_augment

__version__ = "0.1.0"
__all__ = ["fused_sea", "sea_augment", "reference", "info", "backend_status", "resolve_backend",
           "__version__"]
