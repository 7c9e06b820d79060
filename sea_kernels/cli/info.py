"""`sea info`: versions, the usable backends and what backend="auto" picks."""
from __future__ import annotations


def add_parser(sub):
    """The `info` subcommand (no options)."""
    i = sub.add_parser("info", help="versions and usable backends")
    i.set_defaults(func=run)
    return i


def run(args) -> int:
    """Print `sea_kernels.op.dispatch.info()`."""
    from ..op.dispatch import info
    info()
    return 0
