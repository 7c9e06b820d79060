"""The error of a file that cannot be read or fails verification — torch- and numpy-free, so the
command line can tell it apart (exit status 3, `sea_kernels.cli.main`) without importing either.
"""
from __future__ import annotations

__all__ = ["BadFileError"]


class BadFileError(ValueError):
    """A file that cannot be read or fails verification: truncated, corrupt (a checksum or CRC
    mismatch), in the wrong format, not readable, or holding non-finite weights. A ValueError;
    the message names the file and what is wrong, and `path` holds the file's path."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)
