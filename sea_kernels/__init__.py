"""sea_kernels — fast Semantic Adversarial Augmentation (SeA, Qian, Xu & Hu, ECCV 2024).

    loss = sea_kernels.fused_sea(x, labels, weight)   # SeA loss, autograd w.r.t. weight
    x_aug = sea_kernels.sea_augment(x, labels, weight)
    loss = sea_kernels.sea_linear_cross_entropy(h, lin.weight, y)   # drop-in, input gradient
    clf = sea_kernels.SeAClassifier().fit(X, y)       # Alg. 1 on fixed features
    result = sea_kernels.sweep(X, y, grid)             # a whole grid in one pass
    sea_kernels.info()                                 # versions and usable backends

The package is in wings by job (docs/design.md §6): `op` (the spec `op.reference`, the custom op,
its backends and their dispatch, the batched engine), `train` (the estimator, augmentation
strategies, baselines, checkpoints, divergence, devices, processes, metrics), `sweeps` (grids,
the sweep engine, sharding, results), `compare` (honest comparisons over seeds), `data` (feature
files, writers, labels, feature preparation, extraction) and `cli` (one module per `sea`
command); `params` holds every name and default once, `plots` every PNG. The public names below
are imported on first use, so `import sea_kernels` (and the command line's parser) does not
import torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → (module, attribute; None for the module itself)
_PUBLIC = {
    "fused_sea": ("sea_kernels.op.fused", "fused_sea"),
    "sea_augment": ("sea_kernels.op.fused", "sea_augment"),
    "sea_linear_cross_entropy": ("sea_kernels.op.linear", "sea_linear_cross_entropy"),
    "SeALinear": ("sea_kernels.op.linear", "SeALinear"),
    "reference": ("sea_kernels.op.reference", None),
    "resolve_backend": ("sea_kernels.op.dispatch", "resolve_backend"),
    "backend_status": ("sea_kernels.op.dispatch", "backend_status"),
    "info": ("sea_kernels.op.dispatch", "info"),
    "SeAClassifier": ("sea_kernels.train.estimator", "SeAClassifier"),
    "TrainingDiverged": ("sea_kernels.train.divergence", "TrainingDiverged"),
    "NonFiniteLoss": ("sea_kernels.op.validation", "NonFiniteLoss"),
    "sweep": ("sea_kernels.sweeps.search", "sweep"),
    "train_many": ("sea_kernels.sweeps.engine", "train_many"),
    "SweepResult": ("sea_kernels.sweeps.results", "SweepResult"),
    "prepare_features": ("sea_kernels.data.features", "prepare_features"),
    "top1": ("sea_kernels.train.metrics", "top1"),
    "mean_per_class": ("sea_kernels.train.metrics", "mean_per_class"),
    "ParameterError": ("sea_kernels.params", "ParameterError"),
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'sea_kernels' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
