"""SeAClassifier's files: the training checkpoint (resume exactly) and the saved model
(docs/design.md §7).

Both are written atomically by `sea_kernels.data.writers.save_verified`: a `torch.save`d dict
(`torch.load(weights_only=True)` reads it) holding the format tag and version ("format"), the
SHA-256 checksum and size of the payload, and the payload — the torch.save bytes of the content
dict below. Every load verifies what it reads (`sea_kernels.data.files.load_verified`: the file
loads, the tag and version, the size and checksum; then here: the expected keys and types, shapes
that agree with each other, finite weights, optimizer buffers and augmentation state); anything
wrong is a `sea_kernels.data.errors.BadFileError` (a ValueError) naming the file and the fault.
Files of the earlier formats (plain dicts without a checksum: model FORMAT_MODEL_V1, checkpoints
FORMAT_CKPT_V1 and FORMAT_CKPT_V2) still load, with the same checks of their content.

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
import os
import warnings

import numpy as np
import torch
from torch import Tensor

from ..data.errors import BadFileError
from ..data.files import load_verified
from ..data.writers import save_verified
from ..params import SEED_LIMIT
from .devices import check_device, device_problem

__all__ = ["FORMAT_MODEL", "FORMAT_MODEL_V1", "FORMAT_CKPT", "FORMAT_CKPT_V2", "FORMAT_CKPT_V1",
           "RESUME_FREE", "plain_params", "fingerprint", "same_fingerprint",
           "save_training_state", "read_checkpoint", "load_training_state", "restore_generators",
           "save_model", "read_model", "load_model", "BadFileError"]

FORMAT_MODEL = "sea_kernels.SeAClassifier/2"
FORMAT_MODEL_V1 = "sea_kernels.SeAClassifier/1"
FORMAT_CKPT = "sea_kernels.SeAClassifier.checkpoint/3"
FORMAT_CKPT_V2 = "sea_kernels.SeAClassifier.checkpoint/2"
FORMAT_CKPT_V1 = "sea_kernels.SeAClassifier.checkpoint/1"
#: Parameters that may differ between a checkpoint and the run resuming it.
RESUME_FREE = ("epochs", "backend", "device", "verbose", "compile")
_PLAIN = (str, int, float, bool, bytes)


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


def _label_list(classes) -> list:
    """The classes as a list of plain values (anything else as its str): the fingerprint's and
    the checkpoint's record of them."""
    arr = np.asarray(classes)
    if arr.dtype.kind in "mM":
        return arr.view(np.int64).tolist()
    return [v if isinstance(v, _PLAIN) else str(v) for v in arr.tolist()]


def fingerprint(x: Tensor, labels: Tensor, classes: np.ndarray) -> list:
    """Cheap content check of the training data: shape, classes and two weighted sums.
    x: the prepared tensor, or a `data.features.LazyRows` (its row sums, from its chunked scan,
    are bitwise those of the prepared tensor, so both give the same fingerprint)."""
    n, d = x.shape
    rows = x.row_sums() if hasattr(x, "row_sums") else x.double().sum(1)
    pos = torch.arange(n, dtype=torch.float64, device=x.device) / max(n, 1)
    return [int(n), int(d), int(len(classes)), float(rows.sum()), float((rows * pos).sum()),
            int(labels.sum()), float((labels.double() * pos).sum()), _label_list(classes)]


def same_fingerprint(a, b) -> bool:
    if list(a[:3]) != list(b[:3]) or a[5] != b[5] or list(a[7]) != list(b[7]):
        return False
    return all(math.isclose(a[i], b[i], rel_tol=1e-6, abs_tol=1e-6) for i in (3, 4, 6))


# ---------------------------------------------------------------------- verification helpers
def _bad(what: str, path, msg: str) -> BadFileError:
    p = os.fspath(path)
    return BadFileError(f"{what} {p!r} {msg}", p)


def _entry(blob: dict, key: str, types, what: str, path, expected: str):
    """blob[key], a BadFileError when it is missing or not of `types`."""
    if key not in blob:
        raise _bad(what, path, f"lacks the entry {key!r} (a truncated or foreign file?)")
    value = blob[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in
                                        (types if isinstance(types, tuple) else (types,))):
        raise _bad(what, path, f"is corrupt: entry {key!r} is {type(value).__name__}, expected "
                               f"{expected}")
    return value


def _check_weight(W, what: str, path) -> tuple[int, int]:
    if not isinstance(W, Tensor) or not W.is_floating_point() or W.dim() != 2 or W.numel() == 0:
        desc = (f"a {W.dtype} tensor of shape {tuple(W.shape)}" if isinstance(W, Tensor)
                else type(W).__name__)
        raise _bad(what, path, f"is corrupt: W is {desc}, expected a non-empty 2-D float tensor")
    bad = int((~torch.isfinite(W)).sum())
    if bad:
        raise _bad(what, path, f"holds non-finite weights ({bad} NaN/Inf values in W of shape "
                               f"{tuple(W.shape)}); the file is corrupt or was written from a "
                               "diverged run")
    return int(W.shape[0]), int(W.shape[1])


def _check_finite(obj, what: str, path, where: str) -> None:
    """Every float tensor inside obj (dicts, lists) finite."""
    if isinstance(obj, Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise _bad(what, path, f"holds non-finite values in {where}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, what, path, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, what, path, f"{where}[{i}]")


def _check_dims(feature_dims, d: int, what: str, path) -> None:
    if (not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in feature_dims)
            or sum(feature_dims) != d):
        raise _bad(what, path, f"is corrupt: feature_dims {list(feature_dims)!r} do not add up "
                               f"to the {d} rows of W")


def _check_seed(seed, what: str, path) -> None:
    if not 0 <= seed < SEED_LIMIT:
        raise _bad(what, path, f"is corrupt: seed {seed} is outside [0, 2**64)")


# ---------------------------------------------------------------------- training checkpoints
def save_training_state(path, *, params: dict, epoch: int, seed: int, weight: Tensor,
                        optimizer: torch.optim.Optimizer, generator: torch.Generator,
                        augmentation: dict, history: list, data_fingerprint: list,
                        classes, feature_dims) -> None:
    """Write the complete training state after `epoch` epochs to `path` (atomically, verified)."""
    save_verified({
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
        "classes": _label_list(classes),
        "feature_dims": list(feature_dims),
    }, path, tag=FORMAT_CKPT)


def _augmentation_v1(ckpt: dict) -> dict:
    """The augmentation state of a FORMAT_CKPT_V1 file (top-level aug_gen / isda / extra_x)."""
    state = {"x": ckpt.get("extra_x"), "y": ckpt.get("extra_y")}
    if ckpt.get("aug_gen") is not None:
        state["generator"] = ckpt["aug_gen"]
    if ckpt.get("isda") is not None:
        state["estimator"] = ckpt["isda"]
    return state


def _verify_checkpoint(ck: dict, fmt: str, path) -> dict:
    """The checks of a checkpoint's content (every format); returns it with "augmentation" set
    (FORMAT_CKPT_V1's top-level keys gathered)."""
    what = "checkpoint"
    _entry(ck, "params", dict, what, path, "a dict")
    epoch = _entry(ck, "epoch", int, what, path, "an int")
    seed = _entry(ck, "seed", int, what, path, "an int")
    W = _entry(ck, "W", Tensor, what, path, "a tensor")
    opt = _entry(ck, "optimizer", dict, what, path, "a dict")
    gen = _entry(ck, "generator", Tensor, what, path, "a uint8 tensor")
    history = _entry(ck, "history", list, what, path, "a list")
    fp = _entry(ck, "fingerprint", (list, tuple), what, path, "a list")
    classes = _entry(ck, "classes", (list, tuple), what, path, "a list")
    dims = _entry(ck, "feature_dims", (list, tuple), what, path, "a list")
    d, c = _check_weight(W, what, path)
    if epoch < 0 or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise _bad(what, path, f"is corrupt: it says {epoch} epochs done but holds "
                               f"{len(history)} history records")
    _check_seed(seed, what, path)
    _check_dims(dims, d, what, path)
    if len(classes) != c or len(fp) != 8 or list(fp[1:3]) != [d, c]:
        raise _bad(what, path, f"is corrupt: W is {d}×{c} but it records {len(classes)} classes "
                               f"and data of shape {tuple(fp[1:3]) if len(fp) == 8 else fp}")
    want = torch.Generator().get_state()
    if gen.dtype != torch.uint8 or gen.shape != want.shape:
        raise _bad(what, path, f"is corrupt: the generator state is a {gen.dtype} tensor of "
                               f"shape {tuple(gen.shape)}, expected {tuple(want.shape)} uint8")
    state, groups = opt.get("state"), opt.get("param_groups")
    if not isinstance(state, dict) or not isinstance(groups, list) or len(groups) != 1:
        raise _bad(what, path, "is corrupt: the optimizer state is not one SGD parameter group")
    for entry in state.values():
        buf = entry.get("momentum_buffer") if isinstance(entry, dict) else None
        if buf is not None and (not isinstance(buf, Tensor) or tuple(buf.shape) != (d, c)):
            raise _bad(what, path, f"is corrupt: the momentum buffer does not have W's shape "
                                   f"({d}, {c})")
    _check_finite(state, what, path, "the optimizer's momentum buffer")
    if fmt == FORMAT_CKPT_V1:
        ck["augmentation"] = _augmentation_v1(ck)
    aug = _entry(ck, "augmentation", dict, what, path, "a dict")
    _check_finite(aug, what, path, "the augmentation state")
    rows, labels = aug.get("x"), aug.get("y")
    if rows is not None and not (isinstance(rows, Tensor) and isinstance(labels, Tensor)
                                 and rows.dim() == 2 and rows.shape[1] == d and labels.dim() == 1
                                 and labels.shape[0] == rows.shape[0]
                                 and (labels.numel() == 0 or 0 <= int(labels.min())
                                      and int(labels.max()) < c)):
        raise _bad(what, path, f"is corrupt: the appended training rows do not fit W ({d}×{c})")
    return ck


#: The checkpoint last read with `read_checkpoint(path, keep=True)`: {"id": the file's identity,
#: "content": what was read}, handed once to the next read of the same unchanged file.
_kept: dict = {}


def _file_id(path: str):
    """(real path, size, modification time in ns) of an existing file; None when it is absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def read_checkpoint(path, *, keep: bool = False) -> dict:
    """The verified content of the checkpoint at `path` (any format): BadFileError naming the
    file when it is no SeAClassifier checkpoint, cannot be read, or fails verification.

    With `keep`, the content is kept for the next read of the same, unchanged file, which takes
    it instead of reading the file again (once): the command line verifies a checkpoint before it
    reads any data, and `fit` then resumes from it without a second read."""
    p = os.fspath(path)
    fid = _file_id(p)
    if fid is not None and _kept.get("id") == fid:
        content = _kept.pop("content")
        _kept.clear()
        return content
    fmt, ck = load_verified(p, (FORMAT_CKPT,), legacy=(FORMAT_CKPT_V2, FORMAT_CKPT_V1),
                            what="checkpoint",
                            not_ours=f"checkpoint {p!r} is not a SeAClassifier training "
                                     "checkpoint")
    content = _verify_checkpoint(ck, fmt, p)
    _kept.clear()
    if keep and fid is not None:
        _kept.update(id=fid, content=content)
    return content


def load_training_state(path, *, params: dict, data_fingerprint: list, weight: Tensor,
                        optimizer: torch.optim.Optimizer) -> dict:
    """Read and verify the checkpoint at `path` (`read_checkpoint`), check it belongs to this run,
    and restore W (in place) and the optimizer. Returns the checkpoint dict (epoch, seed,
    generator, augmentation, history).

    BadFileError when the file is no SeAClassifier checkpoint or fails verification; ValueError
    when it was written with other training parameters (all but RESUME_FREE; random_state=None
    adopts the saved seed) or other data.
    """
    p = os.fspath(path)
    ckpt = read_checkpoint(p)
    saved, now = ckpt["params"], plain_params(params)
    for key, value in now.items():
        if key in RESUME_FREE or (key == "random_state" and value is None):
            continue
        if saved.get(key) != value:
            raise ValueError(f"checkpoint {p!r} was written with "
                             f"{key}={saved.get(key)!r}, this run has {key}={value!r}; use the "
                             "same training parameters or another checkpoint path")
    if not same_fingerprint(ckpt["fingerprint"], data_fingerprint):
        raise ValueError(f"checkpoint {p!r} was written for different training data "
                         f"(n, d, C) = {tuple(ckpt['fingerprint'][:3])} vs "
                         f"{tuple(data_fingerprint[:3])} or different values; use another path")
    if tuple(ckpt["W"].shape) != tuple(weight.shape):
        raise ValueError(f"checkpoint {p!r} holds W of shape {tuple(ckpt['W'].shape)}, this run "
                         f"trains {tuple(weight.shape)}")
    with torch.no_grad():
        weight.copy_(ckpt["W"].to(weight.device, weight.dtype))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise _bad("checkpoint", p, f"is corrupt: its optimizer state cannot be restored "
                                    f"({type(e).__name__}: {e})") from None
    return ckpt


def restore_generators(path, ckpt: dict, generator: torch.Generator, strategy) -> None:
    """Put the checkpoint's shuffling-generator state and augmentation state back
    (BadFileError naming the file when they do not fit)."""
    try:
        generator.set_state(ckpt["generator"])
        strategy.load_state_dict(ckpt["augmentation"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise _bad("checkpoint", path, f"is corrupt: its generator or augmentation state cannot "
                                       f"be restored ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------- saved models
def _classes_record(classes: np.ndarray) -> tuple[list, str]:
    """(values, dtype string) that rebuild `classes` exactly (weights_only-loadable values)."""
    arr = np.asarray(classes)
    if arr.dtype.kind in "mM":
        return arr.view(np.int64).tolist(), str(arr.dtype)
    values = arr.tolist()
    for v in values:
        if not isinstance(v, _PLAIN):
            raise ValueError(f"class label {v!r} of type {type(v).__name__} cannot be stored in a "
                             "model file; use integer, float, string or bool labels")
    return values, str(arr.dtype)


def _classes_from_record(values: list, dtype: str, c: int, path) -> np.ndarray:
    try:
        dt = np.dtype(dtype)
        if dt.kind in "mM":
            arr = np.asarray(values, dtype=np.int64).view(dt)
        elif dt.kind == "O":
            arr = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):
                arr[i] = v
        else:
            arr = np.asarray(values, dtype=dt)
        unique = len(np.unique(arr))
    except (TypeError, ValueError) as e:
        raise _bad("model", path, f"is corrupt: its classes cannot be rebuilt ({e})") from None
    if arr.ndim != 1 or len(arr) != c or unique != c:
        raise _bad("model", path, f"is corrupt: it records {len(values)} classes "
                                  f"({unique} distinct) for the {c} columns of W")
    return arr


def save_model(clf, path) -> None:
    """Write a fitted SeAClassifier (see the module docstring) to `path` (atomically, verified)."""
    classes, dtype = _classes_record(clf.classes_)
    save_verified({
        "format": FORMAT_MODEL,
        "params": plain_params(clf.get_params()),
        "W": clf.W_.detach().cpu().clone(),
        "classes": classes,
        "classes_dtype": dtype,
        "feature_dims": list(clf.feature_dims_),
        "n_features_in": int(clf.n_features_in_),
        "history": [dict(r) for r in clf.history_],
        "seed": int(clf.seed_),
        "n_iter": int(clf.n_iter_),
    }, path, tag=FORMAT_MODEL)


def read_model(path) -> dict:
    """The verified content of the model file at `path` (FORMAT_MODEL or FORMAT_MODEL_V1), with
    "classes" rebuilt as a numpy array: BadFileError naming the file otherwise."""
    p = os.fspath(path)
    _, blob = load_verified(p, (FORMAT_MODEL,), legacy=(FORMAT_MODEL_V1,), what="model",
                            not_ours=f"{p!r} is not a saved SeAClassifier (use "
                                     "SeAClassifier.save)")
    what = "model"
    params = _entry(blob, "params", dict, what, p, "a dict")
    W = _entry(blob, "W", Tensor, what, p, "a tensor")
    values = _entry(blob, "classes", (list, tuple), what, p, "a list")
    dtype = _entry(blob, "classes_dtype", str, what, p, "a dtype name")
    dims = _entry(blob, "feature_dims", (list, tuple), what, p, "a list")
    n_in = _entry(blob, "n_features_in", int, what, p, "an int")
    history = _entry(blob, "history", list, what, p, "a list")
    seed = _entry(blob, "seed", int, what, p, "an int")
    n_iter = _entry(blob, "n_iter", int, what, p, "an int")
    d, c = _check_weight(W, what, p)
    _check_dims(dims, d, what, p)
    if n_in != d or n_iter < 0 or not all(isinstance(r, dict) for r in history):
        raise _bad(what, p, f"is corrupt: n_features_in={n_in}, n_iter={n_iter} do not fit W of "
                            f"shape ({d}, {c}) and its history")
    _check_seed(seed, what, p)
    if "device" not in params:
        raise _bad(what, p, "is corrupt: its params lack 'device'")
    return {**blob, "classes": _classes_from_record(list(values), dtype, c, p)}


def load_model(cls, path, *, device=None):
    """The fitted `cls` (SeAClassifier) written by `save_model` (verified by `read_model`);
    device overrides the saved one and must be usable here (`train.devices.check_device`); a
    model saved on a device this machine lacks (CUDA) loads on the CPU, with a RuntimeWarning."""
    if device is not None:
        check_device(device)
    p = os.fspath(path)
    blob = read_model(p)
    params = dict(blob["params"])
    if device is not None:
        params["device"] = str(device)
    else:
        try:
            why = device_problem(torch.device(params["device"]))
        except (RuntimeError, TypeError, ValueError):
            raise _bad("model", p, f"is corrupt: device {params['device']!r} is not a torch "
                                   "device") from None
        if why is not None:
            warnings.warn(f"{p!r} was saved on {params['device']}; no CUDA here, loading on CPU"
                          if torch.device(params["device"]).type == "cuda" else
                          f"{p!r} was saved on {params['device']} ({why}); loading on CPU",
                          RuntimeWarning, stacklevel=3)
            params["device"] = "cpu"
    try:
        clf = cls(**params)
        clf.checked_params()
    except (TypeError, ValueError) as e:
        raise _bad("model", p, f"holds invalid parameters ({e})") from None
    clf.W_ = blob["W"].to(torch.device(clf.device))
    clf.classes_ = blob["classes"]
    clf.feature_dims_ = list(blob["feature_dims"])
    clf.n_features_in_ = int(blob["n_features_in"])
    clf.history_ = list(blob["history"])
    clf.seed_ = int(blob["seed"])
    clf.n_iter_ = int(blob["n_iter"])
    clf.backend_ = None
    return clf
