"""Reading feature and label files (one row per example) and checking what was read.

Feature files (one row per example):

- `.npy`: read with `np.load(mmap_mode="r")` — memory-mapped; holds one array: the features.
- `.npz`: read with `np.load` (arrays read on access); holds named arrays, see the keys below.
- `.pt`, `.pth`: read with `torch.load(weights_only=True)`; holds a tensor, or a dict of tensors.
- `.safetensors`: memory-mapped (`numpy.memmap` of the data block); holds named tensors.

Key convention for the files holding named arrays (`.npz`, `.pt` dicts, `.safetensors`):
`x` / `y` (one split), or `x_<split>` / `y_<split>` (`x_train`, `y_train`, `x_test`, `y_test`,
`x_val`, …). The keys `features` / `labels` are accepted too. An explicit ``key`` selects the
features array (`key="x_test"`), and ``label_key`` the labels; without ``label_key`` the labels
are the key with its leading ``x`` replaced by ``y`` (`x_test` → `y_test`). A key may also be
written after the path: ``"features.npz:x_test"``.

Labels come from the features file itself, or from a separate file (``labels=``): any of the
formats above, or a `.txt`/`.csv` file with one label per line (integers, or names that are mapped
to indices in sorted order, unless ``classes`` gives the order; `sea_kernels.data.labels` does the
mapping and the integer check).

Several feature files for the same examples (``paths=[a, b]``) load as a list of arrays — one block
per file, concatenated per example by `sea_kernels.features.prepare_features`.

A file that cannot be read or fails verification is a `BadFileError` (a ValueError, from
`sea_kernels.data.errors`) naming the file and what is wrong: a truncated `.npy`, `.npz`, `.pt` or
`.safetensors` file, a zip CRC mismatch (`.npz` members when read, every member of a `.pt` archive
before it is loaded), a safetensors header whose offsets do not fit the file, an unreadable file.
`.npy` and `.safetensors` hold no checksum: bytes overwritten inside their data are only caught
when they make a value NaN/Inf (`check_features`).

Model and checkpoint files (`load_verified`) carry a format tag, a version and a SHA-256 checksum
(`sea_kernels.data.writers.save_verified`); `sea_kernels.train.checkpoint` checks what they hold.

Outputs are written by `sea_kernels.data.writers` (atomically).
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import BadFileError
from .labels import encode_labels, integer_values
from .safetensors_file import SafetensorsFile

FEATURE_EXTENSIONS = (".npy", ".npz", ".pt", ".pth", ".safetensors")
LABEL_EXTENSIONS = FEATURE_EXTENSIONS + (".txt", ".csv")
_FEATURE_KEYS = ("x", "features")
_LABEL_KEYS = ("y", "labels")


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

def split_key(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``"file.npz:x_test"`` → (Path("file.npz"), "x_test"); a plain existing path →
    (path, None)."""
    s = os.fspath(spec)
    if os.path.exists(s) or ":" not in s:
        return Path(s), None
    head, key = s.rsplit(":", 1)
    if (key and "/" not in key and os.sep not in key
            and Path(head).suffix.lower() in FEATURE_EXTENSIONS):
        return Path(head), key
    return Path(s), None


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise ValueError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} path is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise BadFileError(f"{what} file {path} cannot be read (permission denied)", path)


def _check_extension(path: Path, allowed: Sequence[str], what: str) -> str:
    ext = path.suffix.lower()
    if ext not in allowed:
        raise ValueError(f"{path}: unknown {what} file extension {ext or '(none)'!r} "
                         f"(expected one of {', '.join(allowed)})")
    return ext


def _zip_problem(path) -> str | None:
    """What is wrong with a zip archive (a .pt file): a member whose CRC-32 does not match
    (torch.load itself does not check them) or an unreadable member; None when it is fine or no
    zip file (torch's legacy format). Reads the whole file once."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
        return f"its zip archive cannot be read ({type(e).__name__}: {e})"
    if bad is not None:
        return (f"CRC-32 mismatch in its member {bad!r}: the file was damaged after it was "
                "written")
    return None


def _check_zip_crc(path: Path, what: str = "file") -> None:
    """BadFileError naming the file when `_zip_problem` finds one."""
    problem = _zip_problem(path)
    if problem is not None:
        raise BadFileError(f"{path}: corrupt {what} ({problem})", path)


def _open_named(path: Path, ext: str):
    """dict-like {name: array} for .npz / .pt / .safetensors; an array for .npy / a bare tensor."""
    try:
        if ext == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if ext == ".npz":
            return _NpzFile(path, np.load(path, allow_pickle=False))
        if ext == ".safetensors":
            return SafetensorsFile(path)
        import torch
        _check_zip_crc(path, f"{ext} file")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except BadFileError:
        raise
    except ValueError as e:
        raise BadFileError(f"{path}: cannot read {ext} file ({e}); is it truncated or "
                           "corrupt?", path) from None
    except Exception as e:  # corrupt files, pickles that are not plain tensors, …
        raise BadFileError(f"{path}: cannot read {ext} file ({type(e).__name__}: {e})",
                           path) from None
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                for k, v in obj.items() if isinstance(v, (torch.Tensor, list, tuple, np.ndarray))}
    raise ValueError(f"{path}: expected a tensor or a dict of tensors, got {type(obj).__name__}")


class _NpzFile:
    """An open .npz (dict-like: keys(), [name]) whose members' read errors — a zip CRC mismatch,
    a truncated member — are BadFileErrors naming the file."""

    def __init__(self, path: Path, npz):
        self.path, self.npz = path, npz

    def keys(self):
        return list(self.npz.files)

    def __contains__(self, key):
        return key in self.npz.files

    def __getitem__(self, key):
        try:
            return self.npz[key]
        except KeyError:
            raise
        except Exception as e:   # BadZipFile (CRC-32), zlib.error, EOFError, ValueError, …
            raise BadFileError(f"{self.path}: cannot read array {key!r} ({type(e).__name__}: "
                               f"{e}); the file is truncated or corrupt", self.path) from None


def _feature_key(path: Path, keys: Sequence[str], key: str | None, split: str | None) -> str:
    if key is not None:
        if key not in keys:
            raise ValueError(f"{path}: no array named {key!r} "
                             f"(it has: {', '.join(keys) or 'none'})")
        return key
    candidates = list(_FEATURE_KEYS)
    if split:
        candidates = [f"x_{split}", f"features_{split}"] + candidates
    for k in candidates:
        if k in keys:
            return k
    xs = [k for k in keys if k.startswith("x_")]
    if len(xs) == 1:
        return xs[0]
    raise ValueError(f"{path}: cannot tell which array holds the features (it has: "
                     f"{', '.join(keys) or 'none'}); name it with --key / key=, "
                     f"or use the keys x/y or x_<split>/y_<split>")


def _label_key_for(feature_key: str) -> list[str]:
    out = []
    if feature_key.startswith("x"):
        out.append("y" + feature_key[1:])
    if feature_key.startswith("features"):
        out.append("labels" + feature_key[len("features"):])
    return out


def load_array(spec: str | os.PathLike, *, key: str | None = None, split: str | None = None,
               what: str = "features") -> np.ndarray:
    """One features array from one file (see the module doc for formats and keys)."""
    path, inline_key = split_key(spec)
    key = key if key is not None else inline_key
    _check_exists(path, what)
    ext = _check_extension(path, FEATURE_EXTENSIONS, what)
    obj = _open_named(path, ext)
    if isinstance(obj, np.ndarray):
        if key is not None:
            raise ValueError(f"{path}: holds a single array, there is no key {key!r} to select")
        return obj
    k = _feature_key(path, list(obj.keys()), key, split)
    return obj[k]


def load_labels(spec: str | os.PathLike, *, key: str | None = None, split: str | None = None,
                classes: Sequence[str] | None = None) -> np.ndarray:
    """Labels from a separate file: an array file, or .txt/.csv with one label per line."""
    path, inline_key = split_key(spec)
    key = key if key is not None else inline_key
    _check_exists(path, "labels")
    ext = _check_extension(path, LABEL_EXTENSIONS, "labels")
    if ext in (".txt", ".csv"):
        try:
            with open(path, encoding="utf-8") as f:
                values = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise BadFileError(f"{path}: cannot read the labels ({type(e).__name__}: {e})",
                               path) from None
        if (values and ext == ".csv" and not _is_int(values[0])
                and all(_is_int(v) for v in values[1:])):
            values = values[1:]   # a header line
        return labels_to_indices(values, classes, source=str(path))
    obj = _open_named(path, ext)
    if isinstance(obj, np.ndarray):
        return np.asarray(obj)
    keys = list(obj.keys())
    if key is None:
        cands = ([f"y_{split}", f"labels_{split}"] if split else []) + list(_LABEL_KEYS)
        key = next((k for k in cands if k in keys), None)
        if key is None:
            ys = [k for k in keys if k.startswith("y_")]
            if len(ys) != 1:
                raise ValueError(f"{path}: cannot tell which array holds the labels (it has: "
                                 f"{', '.join(keys) or 'none'}); name it with --label-key / "
                                 "label_key=")
            key = ys[0]
    elif key not in keys:
        raise ValueError(f"{path}: no array named {key!r} (it has: {', '.join(keys) or 'none'})")
    return np.asarray(obj[key])


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def labels_to_indices(values: Sequence, classes: Sequence[str] | None = None, *,
                      source: str = "labels") -> np.ndarray:
    """Integer labels kept; names mapped to their index in ``classes`` (default: sorted names)."""
    values = list(values)
    if classes is None and all(isinstance(v, (int, np.integer)) or _is_int(str(v)) for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    names = np.asarray([str(v) for v in values], dtype=str)
    return encode_labels(names, None if classes is None else [str(c) for c in classes],
                         name=source)[1]


def load_dataset(features: str | os.PathLike | Sequence[str | os.PathLike], labels=None, *,
                 key: str | None = None, label_key: str | None = None, split: str | None = None,
                 classes: Sequence[str] | None = None, check: bool = True):
    """(X, y) from one feature file or several (X then a list of arrays, one per file):
    `FeatureFiles(features).dataset(...)`.

    ``labels``: a separate labels file; otherwise they are read from the (first) features file
    (key ``label_key``, or derived from the features key: x → y, x_test → y_test). ``split``
    picks `x_<split>`/`y_<split>` when no key is given. With ``check`` (default) the data is
    validated with `check_dataset`. Raises ValueError with a clear message on any problem.
    """
    return FeatureFiles(features).dataset(labels, key=key, label_key=label_key, split=split,
                                          classes=classes, check=check)


class FeatureFiles:
    """Feature files opened once (each checked to exist, its extension known, its container read
    by `_open_named`): every split is then taken from the open files, so a `.pt` is loaded once
    and a `.npz` member is read once however many splits a command uses."""

    def __init__(self, features: str | os.PathLike | Sequence[str | os.PathLike]):
        specs = [features] if isinstance(features, (str, os.PathLike)) else list(features)
        if not specs:
            raise ValueError("no features file given")
        #: (path, key written after the path, the open file: an array or a dict-like) per file
        self.files = []
        for spec in specs:
            path, inline_key = split_key(spec)
            _check_exists(path, "features")
            ext = _check_extension(path, FEATURE_EXTENSIONS, "features")
            self.files.append((path, inline_key, _open_named(path, ext)))

    def has_split(self, split: str) -> bool:
        """Whether every file holds named arrays with an ``x_<split>`` array (and no key after its
        path pins one array)."""
        return all(inline is None and not isinstance(obj, np.ndarray)
                   and f"x_{split}" in obj.keys() for _, inline, obj in self.files)

    def dataset(self, labels=None, *, key: str | None = None, label_key: str | None = None,
                split: str | None = None, classes: Sequence[str] | None = None,
                check: bool = True):
        """(X, y) of these files, as `load_dataset` describes."""
        arrays, keys_used = [], []
        for path, inline_key, obj in self.files:
            k = key if key is not None else inline_key
            if isinstance(obj, np.ndarray):
                if k is not None:
                    raise ValueError(f"{path}: holds a single array, there is no key {k!r} to "
                                     "select")
                arrays.append(obj)
                keys_used.append((path, None, None))
            else:
                fk = _feature_key(path, list(obj.keys()), k, split)
                arrays.append(obj[fk])
                keys_used.append((path, fk, obj))
        if labels is not None:
            y = load_labels(labels, key=label_key, split=split, classes=classes)
            label_source = str(split_key(labels)[0])
        else:
            y, label_source = _labels_in(keys_used, label_key)
        for (path, _, _), a in zip(keys_used, arrays):
            if a.ndim == 1:
                raise ValueError(f"{path}: features must be 2-D (examples × dims), got a 1-D "
                                 f"array of {a.shape[0]} values")
        X = arrays[0] if len(arrays) == 1 else arrays
        y = np.asarray(y)
        if check:
            y = check_dataset(X, y, names=[str(p) for p, _, _ in keys_used],
                              label_source=label_source)
        return X, y


def _labels_in(keys_used, label_key: str | None):
    """(labels, their source) from the first named-array file that holds them (`label_key`, or
    the features key's y-name, or the default label keys); ValueError when none does."""
    for path, fk, obj in keys_used:
        if obj is None:
            continue
        names = list(obj.keys())
        cands = [label_key] if label_key else _label_key_for(fk) + list(_LABEL_KEYS)
        lk = next((c for c in cands if c in names), None)
        if label_key and lk is None:
            raise ValueError(f"{path}: no array named {label_key!r} (it has: {', '.join(names)})")
        if lk is not None:
            return np.asarray(obj[lk]), f"{path}:{lk}"
    raise ValueError(f"no labels found in {', '.join(str(p) for p, _, _ in keys_used)}: "
                     "give a labels file (--labels) or store them as y / y_<split>")


def _flatten(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1) if a.ndim > 2 else a


def check_features(X, names: Sequence[str] | None = None, *, chunk: int = 8192) -> None:
    """ValueError on NaN/Inf, empty arrays, non-numeric data or row counts that differ between
    blocks."""
    blocks = X if isinstance(X, (list, tuple)) else [X]
    names = list(names) if names else [f"features[{i}]" for i in range(len(blocks))]
    if len(names) == 1 and len(blocks) > 1:
        names = [f"{names[0]}[{i}]" for i in range(len(blocks))]
    n0 = None
    for name, a in zip(names, blocks):
        shape = getattr(a, "shape", None)
        if shape is None or len(shape) < 2:
            raise ValueError(f"{name}: features must be 2-D (examples × dims), got shape {shape}")
        if n0 is None:
            n0 = (name, shape[0])
        elif shape[0] != n0[1]:
            raise ValueError("feature files disagree on the number of examples: "
                             f"{n0[0]} has {n0[1]}, "
                             f"{name} has {shape[0]}")
        if shape[0] == 0 or int(np.prod(shape[1:])) == 0:
            raise ValueError(f"{name}: features are empty (shape {tuple(shape)})")
        arr = a if isinstance(a, np.ndarray) else np.asarray(a)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{name}: features must be numbers, got dtype {arr.dtype}")
        if arr.dtype.kind != "f":
            continue
        for start in range(0, shape[0], chunk):
            part = np.asarray(arr[start:start + chunk])
            finite = np.isfinite(part)
            if not finite.all():
                bad = np.argwhere(~finite)[0]
                row = start + int(bad[0])
                kind = "NaN" if np.isnan(part[tuple(bad)]) else "Inf"
                count = int((~finite).sum())
                raise ValueError(f"{name}: features contain {kind} (first at row {row}; "
                                 f"{count}+ non-finite values)")


def check_labels(y, n: int | None = None, *, source: str = "labels",
                 min_classes: int = 2) -> np.ndarray:
    """Labels as int64; ValueError for a count mismatch, non-integers (`data.labels.integer_values`
    decides), negatives or one class only."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{source}: labels must be 1-D, got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{source}: {y.shape[0]} labels for {n} feature rows (counts must match)")
    ints = integer_values(y, allow_bool=True)
    if ints is None:
        got = "non-integer values" if y.dtype.kind == "f" else f"dtype {y.dtype}"
        raise ValueError(f"{source}: labels must be integer class indices, got {got}")
    y = ints.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{source}: labels must be ≥ 0, got {int(y.min())}")
    classes = np.unique(y)
    if classes.size < min_classes:
        only = int(classes[0]) if classes.size else "none"
        raise ValueError(f"{source}: only one class ({only}) in the labels; a classifier needs at "
                         f"least {min_classes}")
    return y


def check_dataset(X, y, *, names: Sequence[str] | None = None, label_source: str | None = None,
                  min_classes: int = 2) -> np.ndarray:
    """Validate features + labels together (`check_features`, `check_labels`); returns int64 y."""
    check_features(X, names)
    n = (X[0] if isinstance(X, (list, tuple)) else X).shape[0]
    return check_labels(y, n, source=label_source or "labels", min_classes=min_classes)


def num_rows(X) -> int:
    return (X[0] if isinstance(X, (list, tuple)) else X).shape[0]


def take_rows(X, idx):
    """Rows ``idx`` of X (an array or a list of arrays, one per feature file)."""
    if isinstance(X, (list, tuple)):
        return [np.asarray(a[idx]) for a in X]
    return np.asarray(X[idx])


# ----------------------------------------------------------------------------------------------
# Verified model and checkpoint files (written by `writers.save_verified`)
# ----------------------------------------------------------------------------------------------

def load_verified(path: str | os.PathLike, formats: Sequence[str], *,
                  legacy: Sequence[str] = (), what: str = "file",
                  not_ours: str | None = None) -> tuple[str, dict]:
    """(format, content) of a model/checkpoint file: one written by `writers.save_verified` with a
    format in `formats`, or a plain dict of an older format in `legacy` (no checksum; the caller
    checks its content).

    BadFileError naming the file for: a missing or unreadable file, a file torch cannot load
    (truncated, corrupt, not a torch file), a CRC-32 mismatch of its zip archive, a payload whose
    size or SHA-256 does not match the header, and — with the message `not_ours` — a file of
    another format (another tag or version, or no SeA file at all).
    """
    import torch

    from .writers import VERIFIED_CONTAINER
    p = os.fspath(path)
    not_ours = not_ours or f"{what} {p!r} is not in a known format ({', '.join(formats)})"
    if not os.path.exists(p):
        raise BadFileError(f"{what} {p!r} not found", p)
    if os.path.isdir(p):
        raise BadFileError(f"{what} {p!r} is a directory, not a file", p)
    problem = _zip_problem(p)
    if problem is not None:
        raise BadFileError(f"{what} {p!r} is corrupt: {problem}", p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:   # RuntimeError (zip), EOFError, OSError, UnpicklingError, …
        msg = " ".join(str(e).split()).split(". ")[0][:160]
        raise BadFileError(f"{what} {p!r} cannot be read: it is truncated, corrupt or not a "
                           f"torch file ({type(e).__name__}: {msg})", p) from None
    if not isinstance(obj, dict):
        raise BadFileError(not_ours, p)
    fmt = obj.get("format")
    if "container" not in obj:
        if fmt in legacy:
            return fmt, obj
        raise BadFileError(not_ours, p)
    if obj.get("container") != VERIFIED_CONTAINER or fmt not in formats:
        newer = isinstance(fmt, str) and any(fmt.split("/")[0] == f.split("/")[0]
                                             for f in formats)
        raise BadFileError(f"{not_ours}" + (f" (format {fmt!r}, container "
                                            f"{obj.get('container')!r}: written by another "
                                            "version of sea_kernels?)" if newer else ""), p)
    payload, size, digest = obj.get("payload"), obj.get("size"), obj.get("sha256")
    if not (isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8
            and payload.dim() == 1 and isinstance(size, int) and isinstance(digest, str)):
        raise BadFileError(f"{what} {p!r} is corrupt: its header lacks the payload, size or "
                           "checksum", p)
    data = payload.numpy().tobytes()
    if len(data) != size:
        raise BadFileError(f"{what} {p!r} is corrupt: the payload holds {len(data)} bytes, the "
                           f"header says {size}", p)
    if hashlib.sha256(data).hexdigest() != digest:
        raise BadFileError(f"{what} {p!r} is corrupt: the SHA-256 checksum of its content does "
                           "not match (the file was changed or damaged after it was written)", p)
    try:
        content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadFileError(f"{what} {p!r} is corrupt: its content cannot be read "
                           f"({type(e).__name__}: {e})", p) from None
    if not isinstance(content, dict) or content.get("format") != fmt:
        raise BadFileError(f"{what} {p!r} is corrupt: its content is not a {fmt!r} dict", p)
    return fmt, content
