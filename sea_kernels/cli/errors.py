"""The errors of the `sea` commands and their exit status (`sea_kernels.cli.main`): UsageError 2
(bad command line, argument or input data), `sea_kernels.data.errors.BadFileError` 3 (a file that
cannot be read or fails verification), OutputError 4 (the output location cannot be written),
RunFailed 1."""
from __future__ import annotations

__all__ = ["UsageError", "RunFailed", "OutputError"]


class UsageError(ValueError):
    """A bad command line or bad input: exit status 2."""


class RunFailed(RuntimeError):
    """The command ran but failed (e.g. every configuration diverged): exit status 1."""


class OutputError(ValueError):
    """The output location (--out, --checkpoint) cannot be written: exit status 4."""
