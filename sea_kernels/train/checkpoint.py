"""SeAClassifier's files: the training checkpoint (resume exactly) and the saved model
(docs/design.md §7). Both are plain dicts that `torch.load(weights_only=True)` reads, written
atomically by `sea_kernels.data.writers.save_torch`.

Checkpoint (FORMAT_CKPT): params, epoch (epochs done), seed, W, optimizer state (momentum
buffers), the shuffling generator's state, the augmentation's `state_dict()` (rand/mixup generator,
ISDA estimator, ME-ADA rows), history, a fingerprint of the training data, classes and feature
dims. Resuming checks that the params (but RESUME_FREE) and the data match. Files of the first
format (FORMAT_CKPT_V1, the augmentation state in top-level keys) are read too.

Model (FORMAT_MODEL): params, W, classes (and their dtype), feature dims, n_features_in, history,
seed, n_iter.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from ..data.writers import save_torch

__all__ = ["FORMAT_MODEL", "FORMAT_CKPT", "RESUME_FREE", "plain_params", "fingerprint",
           "same_fingerprint", "save_training_state", "load_training_state", "save_model",
           "load_model"]

FORMAT_MODEL = "sea_kernels.SeAClassifier/1"
FORMAT_CKPT = "sea_kernels.SeAClassifier.checkpoint/2"
FORMAT_CKPT_V1 = "sea_kernels.SeAClassifier.checkpoint/1"
#: Parameters that may differ between a checkpoint and the run resuming it.
RESUME_FREE = ("epochs", "backend", "device", "verbose")


def plain_params(params: dict) -> dict:
    """Params as plain Python values (weights_only-loadable)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, torch.device):
            v = str(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def fingerprint(x: Tensor, labels: Tensor, classes: np.ndarray) -> list:
    """Cheap content check of the training data: shape, classes and two weighted sums."""
    n, d = x.shape
    rows = x.double().sum(1)
    pos = torch.arange(n, dtype=torch.float64, device=x.device) / max(n, 1)
    return [int(n), int(d), int(len(classes)), float(rows.sum()), float((rows * pos).sum()),
            int(labels.sum()), float((labels.double() * pos).sum()),
            [int(c) for c in classes]]


def same_fingerprint(a, b) -> bool:
    if list(a[:3]) != list(b[:3]) or a[5] != b[5] or list(a[7]) != list(b[7]):
        return False
    return all(math.isclose(a[i], b[i], rel_tol=1e-6, abs_tol=1e-6) for i in (3, 4, 6))


# ---------------------------------------------------------------------- training checkpoints
def save_training_state(path, *, params: dict, epoch: int, seed: int, weight: Tensor,
                        optimizer: torch.optim.Optimizer, generator: torch.Generator,
                        augmentation: dict, history: list, data_fingerprint: list,
                        classes, feature_dims) -> None:
    """Write the complete training state after `epoch` epochs to `path` (atomically)."""
    save_torch({
        "format": FORMAT_CKPT,
        "params": plain_params(params),
        "epoch": int(epoch),
        "seed": int(seed),
        "W": weight.detach().cpu().clone(),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "generator": generator.get_state(),
        "augmentation": _to_cpu(augmentation),
        "history": [dict(r) for r in history],
        "fingerprint": data_fingerprint,
        "classes": [int(c) for c in classes],
        "feature_dims": list(feature_dims),
    }, path)


def _augmentation_v1(ckpt: dict) -> dict:
    """The augmentation state of a FORMAT_CKPT_V1 file (top-level aug_gen / isda / extra_x)."""
    state = {"x": ckpt.get("extra_x"), "y": ckpt.get("extra_y")}
    if ckpt.get("aug_gen") is not None:
        state["generator"] = ckpt["aug_gen"]
    if ckpt.get("isda") is not None:
        state["estimator"] = ckpt["isda"]
    return state


def load_training_state(path, *, params: dict, data_fingerprint: list, weight: Tensor,
                        optimizer: torch.optim.Optimizer) -> dict:
    """Read the checkpoint at `path`, check it belongs to this run, and restore W (in place) and
    the optimizer. Returns the checkpoint dict (epoch, seed, generator, augmentation, history).

    ValueError when the file is no SeAClassifier checkpoint, was written with other training
    parameters (all but RESUME_FREE; random_state=None adopts the saved seed) or other data.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT_CKPT, FORMAT_CKPT_V1):
        raise ValueError(f"checkpoint {path!r} is not a SeAClassifier training checkpoint")
    saved, now = ckpt["params"], plain_params(params)
    for key, value in now.items():
        if key in RESUME_FREE or (key == "random_state" and value is None):
            continue
        if saved.get(key) != value:
            raise ValueError(f"checkpoint {path!r} was written with "
                             f"{key}={saved.get(key)!r}, this run has {key}={value!r}; use the "
                             "same training parameters or another checkpoint path")
    if not same_fingerprint(ckpt["fingerprint"], data_fingerprint):
        raise ValueError(f"checkpoint {path!r} was written for different training data "
                         f"(n, d, C) = {tuple(ckpt['fingerprint'][:3])} vs "
                         f"{tuple(data_fingerprint[:3])} or different values; use another path")
    if ckpt["format"] == FORMAT_CKPT_V1:
        ckpt["augmentation"] = _augmentation_v1(ckpt)
    with torch.no_grad():
        weight.copy_(ckpt["W"].to(weight.device, weight.dtype))
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


# ---------------------------------------------------------------------- saved models
def save_model(clf, path) -> None:
    """Write a fitted SeAClassifier (see the module docstring) to `path` (atomically)."""
    save_torch({
        "format": FORMAT_MODEL,
        "params": plain_params(clf.get_params()),
        "W": clf.W_.detach().cpu().clone(),
        "classes": clf.classes_.tolist(),
        "classes_dtype": str(clf.classes_.dtype),
        "feature_dims": list(clf.feature_dims_),
        "n_features_in": int(clf.n_features_in_),
        "history": [dict(r) for r in clf.history_],
        "seed": int(clf.seed_),
        "n_iter": int(clf.n_iter_),
    }, path)


def load_model(cls, path, *, device=None):
    """The fitted `cls` (SeAClassifier) written by `save_model`; device overrides the saved one
    (a CUDA model loads on the CPU, with a RuntimeWarning, where CUDA is absent)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_MODEL:
        raise ValueError(f"{path!r} is not a saved SeAClassifier (use SeAClassifier.save)")
    params = dict(blob["params"])
    if device is not None:
        params["device"] = str(device)
    elif torch.device(params["device"]).type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"{path!r} was saved on {params['device']}; no CUDA here, loading on CPU",
                      RuntimeWarning, stacklevel=3)
        params["device"] = "cpu"
    clf = cls(**params)
    clf.W_ = blob["W"].to(torch.device(clf.device))
    clf.classes_ = np.asarray(blob["classes"], dtype=np.dtype(blob["classes_dtype"]))
    clf.feature_dims_ = list(blob["feature_dims"])
    clf.n_features_in_ = int(blob["n_features_in"])
    clf.history_ = list(blob["history"])
    clf.seed_ = int(blob["seed"])
    clf.n_iter_ = int(blob["n_iter"])
    clf.backend_ = None
    return clf
