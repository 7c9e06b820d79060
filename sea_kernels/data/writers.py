"""The one way every output file is written: atomically, with the usual file mode.

The data goes to a temporary file in the destination folder, which is renamed over the
destination only when writing succeeded — a failed or interrupted run never leaves a partial file
behind — and which gets the permissions a plain `open()` would give (0666 & ~umask; `mkstemp`
alone makes 0600). JSON, CSV, text, `.npz` and `torch.save` outputs all go through
`atomic_write`.

Model and checkpoint files (`save_verified`) are a `torch.save`d dict that
`torch.load(weights_only=True)` reads:

    {"format": "<tag>/<version>",          # e.g. "sea_kernels.SeAClassifier/2"
     "container": "sea_kernels.sha256/1",  # VERIFIED_CONTAINER
     "sha256": "<64 hex digits>",          # SHA-256 of the payload bytes
     "size": <number of payload bytes>,
     "payload": <uint8 tensor: the torch.save bytes of the content dict>}

The content dict carries the same "format". `sea_kernels.data.files.load_verified` reads it back
and checks the container, the tag, the size and the checksum.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path next to ``path``; renamed over ``path`` on success.

    The temporary file keeps the destination's suffix (so `np.savez`, `torch.save` and
    `matplotlib.savefig` see the right format). On an exception the temporary file is removed and
    ``path`` is left as it was (absent, or its previous content). Parent directories are created.

        with atomic_write("out/metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                    suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to the temporary file for {path}")
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """`open()` for writing, atomically: the file appears at ``path`` only when the block
    succeeds."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "" if path and str(path).endswith(".csv") else None)
    with atomic_write(path) as tmp:
        with open(tmp, mode.replace("x", "w"), **kwargs) as f:
            yield f


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    try:
        import torch
        if isinstance(obj, torch.Tensor):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _json_clean(obj):
    """NaN/Inf → None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    """Atomic JSON (numpy/torch scalars and arrays converted; NaN/Inf written as null)."""
    text = json.dumps(_json_clean(json.loads(json.dumps(obj, default=_json_default))),
                      indent=indent)
    with atomic_open(path, "w") as f:
        f.write(text + "\n")
    return Path(path)


def write_csv(path: str | os.PathLike, rows: Sequence[dict],
              fieldnames: Sequence[str] | None = None) -> Path:
    """Atomic CSV of a list of dicts (columns: ``fieldnames`` or the union of keys, in order)."""
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames += [k for k in row if k not in fieldnames]
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return Path(path)


def _csv_value(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return repr(v) if np.isfinite(v) else ("nan" if np.isnan(v) else repr(v))
    return v


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Atomic `np.savez` (uncompressed, so that reading is fast)."""
    with atomic_write(path) as tmp:
        np.savez(tmp, **arrays)
    return Path(path)



def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic text file (UTF-8, newlines as given)."""
    with atomic_open(path, "w", newline="") as f:
        f.write(text)
    return Path(path)


def save_torch(obj, path: str | os.PathLike) -> Path:
    """Atomic `torch.save`."""
    import torch
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


#: The "container" value of a file written by `save_verified`.
VERIFIED_CONTAINER = "sea_kernels.sha256/1"


def verified_container(obj: dict, tag: str) -> dict:
    """The dict `save_verified` writes for the content `obj` under the format `tag`: the
    torch.save bytes of obj (which must carry ``"format": tag``), their size and SHA-256."""
    import hashlib
    import io

    import torch
    if not isinstance(obj, dict) or obj.get("format") != tag:
        raise ValueError(f"the content of a {tag!r} file must be a dict with format={tag!r}")
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return {"format": tag, "container": VERIFIED_CONTAINER,
            "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload),
            "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}


def save_verified(obj: dict, path: str | os.PathLike, *, tag: str) -> Path:
    """Atomic `torch.save` of `obj` (a dict with ``"format": tag``) wrapped with its format tag,
    size and SHA-256 checksum (see the module docstring): models and checkpoints."""
    return save_torch(verified_container(obj, tag), path)
