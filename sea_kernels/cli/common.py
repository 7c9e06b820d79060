"""What the `sea` commands share: errors, argument types and groups, the checks made before any
training (output locations, the checkpoint, the device), data loading, output staging.

Nothing here imports torch or numpy at import time (the parser is built without them); the
loaders import them when they run.

Errors and their exit status (`sea_kernels.cli.main`): UsageError 2 (bad command line, argument or
input data), `sea_kernels.data.errors.BadFileError` 3 (a file that cannot be read or fails
verification), OutputError 4 (the output location cannot be written), RunFailed 1.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..params import DEFAULTS, GRID_PARAMS


class UsageError(ValueError):
    """A bad command line or bad input: exit status 2."""


class RunFailed(RuntimeError):
    """The command ran but failed (e.g. every configuration diverged): exit status 1."""


class OutputError(ValueError):
    """The output location (--out, --checkpoint) cannot be written: exit status 4."""


# ----------------------------------------------------------------------------------------------
# parser, argument types and groups
# ----------------------------------------------------------------------------------------------

class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: …)`` to an option's help, unless its help already says the default or
    the default is None/False (a flag or an optional file)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False
                or default is argparse.SUPPRESS
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line `sea: error: …` (exit 2) instead of usage + message, and
    whose help shows the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


def number(text: str) -> float:
    """argparse type: a finite float."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def integer(text: str) -> int:
    """argparse type: an int (no float spellings)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_data_args(p, split_default: str):
    """The features / labels / key / split / classes arguments of train, sweep and eval."""
    p.add_argument("features", nargs="+",
                   help="feature file(s): .npy .npz .pt .safetensors; several files for the same "
                        "examples are concatenated per example; FILE:KEY selects an array")
    p.add_argument("--labels", default=None,
                   help="labels file (.npy/.npz/.pt/.safetensors/.txt/.csv); default: y or "
                        "y_<split> in the features file")
    p.add_argument("--key", default=None, help="features array name (e.g. x_train)")
    p.add_argument("--label-key", default=None, help="labels array name (e.g. y_train)")
    p.add_argument("--split", default=split_default,
                   help="use x_<split>/y_<split> when the file has them "
                        f"(default: {split_default})")
    p.add_argument("--classes", default=None,
                   help="class names (JSON list or one per line): their order is the label index "
                        "of name labels")


def add_set_args(p, name: str, what: str):
    """--NAME FEATURES…, --NAME-labels, --NAME-key: a second data set (test, validation)."""
    p.add_argument(f"--{name}", nargs="+", default=None, metavar="FEATURES",
                   help=f"{what} feature file(s) (default: the {name} split of the features file "
                        "when it has one)")
    p.add_argument(f"--{name}-labels", default=None, help=f"{what} labels file")
    p.add_argument(f"--{name}-key", default=None, help=f"{what} features array name")


def add_progress(p):
    """--progress / --no-progress (default: when stderr is a terminal)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def add_device(p):
    """--device auto|cpu|cuda[:N]."""
    p.add_argument("--device", default="auto",
                   help="auto (cuda when visible, else cpu), cpu, cuda")


#: What each grid axis (params.GRID_PARAMS) holds, for --help of `sea sweep` / `sea compare`.
AXIS_HELP = {"lr": "SGD learning rates, for a batch of 256", "weight_decay": "SGD weight decays",
             "alpha": "projection temperatures α", "lam": "loss temperatures λ",
             "delta": "margins δ", "eta": "augmentation steps η, 0 disables it"}


def add_axis_args(g, base: str, base_values: dict, extra: dict | None = None):
    """One option per grid axis (--lr, --wd/--weight-decay, --alpha, --lam, --delta, --eta; several
    values each; None when not given). `base_values` (axis → its values as text) are the axes of
    the command's grid `base`, used when no axis is given (`sea_kernels.sweeps.grid.
    command_line_grid`); every other axis defaults to its one value of params.DEFAULTS."""
    for name in GRID_PARAMS:
        flags = ["--wd", "--weight-decay"] if name == "weight_decay" else [f"--{name}"]
        one = format(DEFAULTS[name], "g")
        many = base_values.get(name, one)
        text = (f"default: {one}" if many == one else
                f"default: {many} when no axis is given or with --grid {base}, else {one}")
        if extra and name in extra:
            text += "; " + extra[name]
        g.add_argument(*flags, dest=name, nargs="+", type=number, default=None,
                       help=f"{AXIS_HELP[name]} ({text})")


def given_axes(args) -> dict:
    """The grid axes given on the command line: axis → its values (the options of
    `add_axis_args` that are not None)."""
    return {k: getattr(args, k) for k in GRID_PARAMS if getattr(args, k) is not None}


#: The distribution name (pyproject.toml [project] name).
DISTRIBUTION = "sea-kernels"


def package_version() -> str:
    """The version of sea-kernels: the installed distribution's (importlib.metadata), else — a
    checkout run without installing — the [project] version of the checkout's pyproject.toml,
    else the package's ``__version__``. Imports no torch."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        import re
        text = pyproject.read_text(encoding="utf-8")
        project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        found = project and re.search(r'^version\s*=\s*["\']([^"\']+)["\']', project.group(1),
                                      re.M)
        if found:
            return found.group(1)
    from .. import __version__
    return __version__


# ----------------------------------------------------------------------------------------------
# run-time checks
# ----------------------------------------------------------------------------------------------

def show_progress(args) -> bool:
    """Progress bars: --progress / --no-progress, else when stderr is a terminal; never without
    tqdm installed."""
    import importlib.util
    p = getattr(args, "progress", None)
    p = sys.stderr.isatty() if p is None else p
    return bool(p) and importlib.util.find_spec("tqdm") is not None


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


def check_checkpoint(path) -> None:
    """--checkpoint: its folder writable (OutputError), and an existing file a verified
    SeAClassifier checkpoint (BadFileError, exit 3) — before any data is read or trained on."""
    if path is None:
        return
    check_output_file(path, "--checkpoint")
    if Path(path).exists():
        from ..train.checkpoint import read_checkpoint
        read_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

def read_classes(spec):
    """Class names from a JSON list ({name: index} also works) or a text file, one per line."""
    if spec is None:
        return None
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"classes file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            classes = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
        if isinstance(classes, dict):
            classes = [k for k, _ in sorted(classes.items(), key=lambda kv: kv[1])]
        if not isinstance(classes, list) or not classes:
            raise UsageError(f"{path}: expected a JSON list of class names")
        return [str(c) for c in classes]
    return [line.strip() for line in text.splitlines() if line.strip()]


def array_names(spec) -> list[str] | None:
    """Names of the arrays in a named-array file (.npz/.pt dict/.safetensors); None otherwise."""
    from ..data import files
    path, key = files.split_key(spec)
    if key is not None or not path.is_file():
        return None
    try:
        return _array_names(path, path.suffix.lower())
    except Exception:
        return None


def _array_names(path: Path, ext: str) -> list[str] | None:
    """`array_names` of an existing file, by extension (may raise on a corrupt file)."""
    if ext == ".npz":
        import numpy as np
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    if ext == ".safetensors":
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return [k for k in json.loads(f.read(n)) if k != "__metadata__"]
    if ext in (".pt", ".pth"):
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True)
        return [str(k) for k in obj] if isinstance(obj, dict) else None
    return None


def load(features, labels=None, *, key=None, label_key=None, split=None, classes=None):
    """(X, y) via `sea_kernels.data.files.load_dataset` (X a list of arrays for several files)."""
    from ..data import files
    return files.load_dataset(features if len(features) > 1 else features[0], labels, key=key,
                              label_key=label_key, split=split, classes=classes)


def load_main(args):
    """(X, y, classes) of the positional features and --labels/--key/--split/--classes."""
    classes = read_classes(args.classes)
    X, y = load(args.features, args.labels, key=args.key, label_key=args.label_key,
                split=args.split, classes=classes)
    return X, y, classes


def load_extra(args, name, classes):
    """(X, y) of `--test` / `--val`, or the `name` split of the main features file(s) when every
    one holds x_<name> (and no --key/--labels pin the main arrays); None when there is none."""
    feats = getattr(args, name)
    labels = getattr(args, f"{name}_labels")
    key = getattr(args, f"{name}_key")
    if feats is None:
        if labels is not None or key is not None:
            raise UsageError(f"--{name}-labels / --{name}-key need --{name} FEATURES")
        if args.key is not None or args.labels is not None or args.split == name:
            return None
        names = [array_names(f) for f in args.features]
        if all(n is not None and f"x_{name}" in n for n in names):
            return load(args.features, split=name, classes=classes)
        return None
    return load(feats, labels, key=key, split=name, classes=classes)


def dims(X) -> list[int]:
    """The width of each feature block of X (one array, or a list of them)."""
    blocks = X if isinstance(X, (list, tuple)) else [X]
    return [int(math.prod(b.shape[1:])) for b in blocks]


def check_same_layout(X_ref, X_other, what):
    """UsageError unless `X_other` has the feature blocks of the training features `X_ref`."""
    a, b = dims(X_ref), dims(X_other)
    if a != b:
        raise UsageError(f"the {what} features have block widths {b}, the training features {a}; "
                         "give the same feature files in the same order")


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

def metrics(model, X, y) -> dict:
    """top1, mean_per_class and n of `model` on (X, y)."""
    import numpy as np

    from ..train.metrics import mean_per_class, top1
    pred = np.asarray(model.predict(X))
    y = np.asarray(y)
    return {"top1": top1(pred, y), "mean_per_class": mean_per_class(pred, y), "n": int(len(y))}


def pct(v) -> str:
    """A fraction as a percentage with two decimals; — for None/NaN."""
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


# ----------------------------------------------------------------------------------------------
# all-or-nothing output folder
# ----------------------------------------------------------------------------------------------

class Output:
    """Files are written into a hidden staging folder beside ``out``; `commit` moves them in.

    Every file is written by `sea_kernels.data.writers` (atomically) at ``path(name)``. On failure
    the staging folder is removed and ``out`` is left exactly as it was (absent, or with its
    previous content)."""

    def __init__(self, out):
        self.out = None if out is None else Path(out)
        if self.out is not None:
            check_output_dir(self.out)
        self.stage = None
        self.names: list[str] = []

    @contextlib.contextmanager
    def writing(self):
        """Writing the outputs: an OSError (disk full, the folder removed meanwhile) becomes an
        OutputError (exit 4)."""
        try:
            yield self
        except OSError as e:
            raise OutputError(f"cannot write the outputs to {self.out}: "
                              f"{type(e).__name__}: {e}") from e

    def path(self, name: str) -> Path:
        """Where to write the output file `name` (in the staging folder, created on first use)."""
        if self.stage is None:
            parent = self.out.parent
            parent.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp",
                                               dir=parent))
        self.names.append(name)
        return self.stage / name

    def commit(self) -> list[Path]:
        """Move the staged files into ``out`` (each by one rename); returns their paths."""
        if self.stage is None:
            return []
        self.out.mkdir(parents=True, exist_ok=True)
        done = []
        for name in self.names:
            src = self.stage / name
            if src.exists():
                os.replace(src, self.out / name)
                done.append(self.out / name)
        shutil.rmtree(self.stage, ignore_errors=True)
        self.stage = None
        return done

    def discard(self):
        """Remove the staging folder and what is in it."""
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None


@contextlib.contextmanager
def output(out):
    """An `Output` for ``--out`` that is discarded unless committed inside the block."""
    o = Output(out)
    try:
        yield o
    finally:
        o.discard()
