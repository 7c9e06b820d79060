"""The checks a command makes before it reads data or trains: the device, matplotlib when a plot
is asked for, the output locations (--out, --checkpoint and other output files: writable, or
creatable), and an existing checkpoint (verified).

Imports no torch at import time.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import OutputError, UsageError


def device(name: str) -> str:
    """--device: "auto" → cuda when a GPU is visible, else cpu; anything else as given, after
    `sea_kernels.train.devices.check_device` (UsageError naming the available devices)."""
    import torch

    from ..train.devices import check_device
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        check_device(name, "--device")
    except ValueError as e:
        raise UsageError(f"{e} (or auto)") from None
    return name


def need_matplotlib(args):
    """Fail before training, not after it, when a plot is asked for and matplotlib is missing."""
    import importlib.util
    if args.out is not None and not args.no_plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("plots need matplotlib: pip install matplotlib (or pass --no-plot)")


def _probe(folder: Path, what: str, target: Path) -> None:
    """OutputError unless a file can be created in `folder` (a real probe: permissions, a
    read-only file system, a full inode table)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"{what} {target}: cannot write in {folder} "
                          f"({e.strerror or type(e).__name__})") from None


def _check_creatable(folder: Path, what: str, target: Path) -> None:
    """`folder` exists as a writable folder, or can be created: its nearest existing ancestor is a
    folder (not a file) that can be written."""
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"{what} {target}: {base} is a file, not a folder; nothing can be "
                          "written under it")
    _probe(base, what, target)


def check_output_dir(out, what: str = "--out") -> None:
    """Before any work: `out` is an existing writable folder, or can be created (its parent,
    where the staging folder goes, creatable and writable; not under a file); OutputError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{what} {out} exists and is not a folder")
    _check_creatable(out.parent, what, out)
    if out.is_dir():
        _probe(out, what, out)


def check_output_file(path, what: str) -> None:
    """Before any work: `path` can be written (atomically, so its folder must be creatable and
    writable, and it must not be a folder); OutputError."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; name a file")
    _check_creatable(path.parent, what, path)


def check_checkpoint(path) -> int:
    """--checkpoint: its folder writable (OutputError), and an existing file a verified
    SeAClassifier checkpoint (BadFileError, exit 3) — before any data is read or trained on.
    Returns the epochs it holds (0 without one)."""
    if path is None:
        return 0
    check_output_file(path, "--checkpoint")
    if not Path(path).exists():
        return 0
    from ..train.checkpoint import read_checkpoint
    return int(read_checkpoint(path, keep=True)["epoch"])   # fit resumes without a second read
