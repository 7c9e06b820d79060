"""sea_kernels — fast Semantic Adversarial Augmentation (SeA, Qian, Xu & Hu, ECCV 2024).

    loss = sea_kernels.fused_sea(x, labels, weight)   # SeA loss, autograd w.r.t. weight
    x_aug = sea_kernels.sea_augment(x, labels, weight)
    clf = sea_kernels.SeAClassifier().fit(X, y)       # Alg. 1 on fixed features
    result = sea_kernels.sweep(X, y, grid)             # a whole grid in one pass
    sea_kernels.info()                                 # versions and usable backends

`sea_kernels.reference` is the paper-literal specification every backend is tested against.
(`sea_kernels.sweep` is the function; its module is imported with
`from sea_kernels.sweep import ...`.)
"""
from . import reference
from .features import prepare_features
from ._info import backend_status, info
from .metrics import mean_per_class, top1
from .ops import fused_sea, resolve_backend, sea_augment
from .sweep import SweepResult, sweep, train_many
from .trainer import SeAClassifier, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["fused_sea", "sea_augment", "reference", "SeAClassifier", "TrainingDiverged", "sweep",
           "train_many", "SweepResult", "prepare_features", "top1", "mean_per_class", "info",
           "backend_status", "resolve_backend", "__version__"]
