"""The `sea` command line: train, sweep, eval, extract, bench, info.

    sea train features.npz --out run/                 # x_train/y_train; x_test scored when present
    sea train a.npy b.npy --labels y.npy --eta 0.4 --lr 0.5 --out run/
    sea sweep features.npz --lr 0.25 0.5 1 --eta 0 0.4 0.8 --epochs 30 --out sweep/
    sea eval run/model.pt features.npz                # → JSON: top1, mean_per_class, n
    sea extract data/banking77/train.csv --classes data/banking77/categories.json --out train.npz
    sea extract photos/ --out photos.npz              # ImageFolder tree → EfficientNet-Lite0
    sea bench                                         # benches/run.py when in the checkout
    sea info

One module per command (`sea_kernels.cli.train`, `.sweep`, `.eval`, `.extract`, `.bench`,
`.info`: each its ``add_parser(subparsers)`` and ``run(args)``); what they share is in
`sea_kernels.cli.common`. The parser is built without importing torch: its defaults and choices
come from `sea_kernels.params` (docs/design.md §1), and each command imports torch and the heavy
modules only when it runs.

Feature files: .npy, .npz, .pt, .safetensors (`sea_kernels.data.files`); several files for the
same examples are concatenated per example (Eq. 1). In a file holding x_<split>/y_<split> arrays,
``--split`` picks the split (train/sweep: ``train``, eval: ``test``), ``--key`` (or
``FILE:KEY``) names the array; ``--test``/``--val`` take their own files, or default to the
``test``/``val`` split of the features file when it has one.

Every bad input (missing file, label/feature count mismatch, NaN/Inf, one class only, a bad option
or value) ends the command with ONE line ``sea: error: …`` on stderr and exit status 2; a run that
fails (training diverged, every sweep configuration diverged, out of memory) exits with status 1.
Outputs are all-or-nothing: they are written into a hidden staging folder next to ``--out`` and
moved in only when the command succeeded, each file atomically (`sea_kernels.data.writers`).
Set SEA_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from . import bench, extract, info, sweep, train
from . import eval as evaluate
from .common import Parser, RunFailed, UsageError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "RunFailed", "UsageError", "build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
#: The command modules, in the order `sea --help` lists them.
COMMANDS = (train, sweep, evaluate, extract, bench, info)
# Harmless warnings of the libraries underneath that are not worth a line on the terminal.
_QUIET_WARNINGS = (r"The given NumPy array is not writable",)
# Errors of bad input (exit 2); other exceptions are failures of the run (exit 1).
_BAD_INPUT = (ValueError, TypeError, KeyError, ImportError, FileNotFoundError, IsADirectoryError,
              NotADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The `sea` parser with one subcommand per module of COMMANDS (imports no torch)."""
    p = Parser(prog="sea", description="Semantic Adversarial Augmentation (SeA, ECCV 2024) for "
                                       "linear classifiers on fixed deep features.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _pass_through(argv) -> bool:
    """Whether the command of `argv` hands its unknown options on (`sea bench`)."""
    names = {c.__name__.rsplit(".", 1)[1] for c in COMMANDS if getattr(c, "PASS_THROUGH", False)}
    return bool(argv) and argv[0] in names


def _dispatch(parser, argv) -> int:
    """Parse `argv` and run its command; --help and a bench script's own exit give their code."""
    try:
        if _pass_through(argv):
            args, rest = parser.parse_known_args(argv)
            return args.func(args, rest)
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_BAD_INPUT)


def main(argv=None) -> int:
    """Run `sea`; returns the exit status: 0 ok, 2 bad input, 1 the run failed."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    # Warnings are collected and printed after the command, one line each ("sea: warning: …");
    # when the command fails only its error line is printed.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            code = _dispatch(parser, argv)
        except KeyboardInterrupt:
            print("sea: error: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 — every failure becomes one line
            return _report(e)
    _print_warnings(caught)
    return code


def _print_warnings(caught):
    """Each distinct warning once, as `sea: warning: …` on stderr."""
    seen = set()
    for w in caught:
        msg = " ".join(str(w.message).split())
        if msg not in seen:
            seen.add(msg)
            print(f"sea: warning: {msg}", file=sys.stderr)


def _report(e: BaseException) -> int:
    """Print the one `sea: error: …` line of `e`; returns its exit status."""
    name = type(e).__name__
    if name == "TrainingDiverged" or isinstance(e, (RunFailed, MemoryError)):
        code = EXIT_FAILURE
    elif isinstance(e, _BAD_INPUT):
        code = EXIT_BAD_INPUT
    else:   # RuntimeError (e.g. out of memory in torch), OSError (disk full), anything else
        code = EXIT_FAILURE
    msg = " ".join(str(e).split()) or name
    if isinstance(e, KeyError):
        msg = f"missing key {msg}"
    elif code == EXIT_FAILURE and name not in ("TrainingDiverged", "RunFailed"):
        msg = f"{name}: {msg}"
    if os.environ.get("SEA_DEBUG"):
        import traceback
        traceback.print_exc()
    print(f"sea: error: {msg}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
