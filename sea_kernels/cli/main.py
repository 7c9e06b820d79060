"""The `sea` command line: train, sweep, eval, extract, bench, info.

    sea train features.npz --out run/                 # x_train/y_train; x_test scored when present
    sea train a.npy b.npy --labels y.npy --eta 0.4 --lr 0.5 --out run/
    sea sweep features.npz --lr 0.25 0.5 1 --eta 0 0.4 0.8 --epochs 30 --out sweep/
    sea eval run/model.pt features.npz                # → JSON: top1, mean_per_class, n
    sea extract data/banking77/train.csv --classes data/banking77/categories.json --out train.npz
    sea extract photos/ --out photos.npz              # ImageFolder tree → EfficientNet-Lite0
    sea bench                                         # benches/run.py when in the checkout
    sea info
    sea --version                                     # the installed (or checkout's) version

One module per command (`sea_kernels.cli.train`, `.sweep`, `.eval`, `.extract`, `.bench`,
`.info`: each its ``add_parser(subparsers)`` and ``run(args)``); what they share, by concern:
`cli.errors` (the error kinds), `cli.arguments` (the parser, argument types and groups),
`cli.preflight` (device, output locations, checkpoint: checked before any data is read),
`cli.inputs` (every input file read once) and `cli.outputs` (metrics, the staged --out
folder). The parser is built without importing torch: its defaults and choices come from
`sea_kernels.params` (docs/design.md §1), and each command imports torch and the heavy modules
only when it runs.

Feature files: .npy, .npz, .pt, .safetensors (`sea_kernels.data.files`); several files for the
same examples are concatenated per example (Eq. 1). In a file holding x_<split>/y_<split> arrays,
``--split`` picks the split (train/sweep: ``train``, eval: ``test``), ``--key`` (or
``FILE:KEY``) names the array; ``--test``/``--val`` take their own files, or default to the
``test``/``val`` split of the features file when it has one.

Everything a command needs is checked BEFORE any training: the options and their values (--set
keys too), the device, the output locations (--out, --checkpoint's folder), every input file
(read and verified) and the data in it. Every error ends the command with ONE line
``sea: error: …`` on stderr and one exit status per kind of error:

    0    success
    1    the run itself failed: training diverged, every sweep configuration diverged, out of
         memory, or an unexpected error
    2    bad usage, a bad argument or bad input data: an unknown option, a value out of range, a
         missing input file, an unknown extension, label/feature count mismatch, NaN/Inf
         features, one class only, a device this machine does not have, a checkpoint of other
         parameters or other data
    3    a file that cannot be read or fails verification: truncated, corrupt (checksum or CRC
         mismatch), wrong format or tag, not readable, non-finite weights in a model/checkpoint
    4    the output location cannot be written: --out (or --checkpoint, eval/extract --out) is an
         existing file, lies under a file, or its folder cannot be created or written
    130  interrupted (Ctrl-C)

Outputs are all-or-nothing: they are written into a hidden staging folder next to ``--out`` and
moved in only when the command succeeded, each file atomically (`sea_kernels.data.writers`).
Set SEA_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..data.errors import BadFileError
from . import bench, compare, extract, info, sweep, train
from . import eval as evaluate
from .arguments import Parser, package_version
from .errors import OutputError, RunFailed, UsageError

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_BAD_INPUT", "EXIT_BAD_FILE", "EXIT_OUTPUT",
           "EXIT_INTERRUPTED", "EXIT_CODES", "BadFileError", "OutputError", "RunFailed",
           "UsageError", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_BAD_FILE = 3
EXIT_OUTPUT = 4
EXIT_INTERRUPTED = 130
#: The exit statuses, as `sea --help` lists them.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "the run failed (training diverged, every configuration diverged, out of "
                  "memory)",
    EXIT_BAD_INPUT: "bad usage, argument or input data",
    EXIT_BAD_FILE: "a file cannot be read or fails verification (truncated, corrupt, wrong "
                   "format)",
    EXIT_OUTPUT: "the output location cannot be written",
    EXIT_INTERRUPTED: "interrupted",
}
#: The command modules, in the order `sea --help` lists them.
COMMANDS = (train, sweep, compare, evaluate, extract, bench, info)
# Harmless warnings of the libraries underneath that are not worth a line on the terminal.
_QUIET_WARNINGS = (r"The given NumPy array is not writable",)
# Errors of bad input (exit 2); other exceptions are failures of the run (exit 1).
_BAD_INPUT = (ValueError, TypeError, KeyError, ImportError, FileNotFoundError, IsADirectoryError,
              NotADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The `sea` parser with one subcommand per module of COMMANDS (imports no torch)."""
    epilog = "exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."
    p = Parser(prog="sea", description="Semantic Adversarial Augmentation (SeA, ECCV 2024) for "
                                       "linear classifiers on fixed deep features.",
               epilog=epilog)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the version of sea-kernels and exit")
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
    """Run `sea`; returns the exit status (EXIT_CODES: 0 ok, 1 the run failed, 2 bad input,
    3 a bad file, 4 the output cannot be written, 130 interrupted)."""
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
            return EXIT_INTERRUPTED
        except Exception as e:  # noqa: BLE001 — every failure becomes one line
            return _report(e)
    _print_warnings(caught)
    return code


def _print_warnings(caught):
    """Each distinct warning once, as `sea: warning: …` on stderr (under torchrun: rank 0's)."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
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
    elif isinstance(e, OutputError):
        code = EXIT_OUTPUT
    elif isinstance(e, BadFileError):
        code = EXIT_BAD_FILE
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
    if not getattr(e, "sea_quiet", False):   # an error all ranks share: rank 0 prints it
        print(f"sea: error: {msg}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
