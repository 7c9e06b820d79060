"""The `sea` parser's pieces: the one-line-error parser, its help formatter, argument types
(number, integer), the argument groups the commands share (data, second data sets, progress,
device, grid axes), the version, and the run-time reading of --progress.

Nothing here imports torch or numpy (the parser is built without them).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..params import DEFAULTS, GRID_PARAMS
from .errors import UsageError


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


def show_progress(args) -> bool:
    """Progress bars: --progress / --no-progress, else when stderr is a terminal; never without
    tqdm installed."""
    import importlib.util
    p = getattr(args, "progress", None)
    p = sys.stderr.isatty() if p is None else p
    return bool(p) and importlib.util.find_spec("tqdm") is not None
