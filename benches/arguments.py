"""Argument types the benchmark scripts share (argparse `type=` callables)."""
from __future__ import annotations

import argparse


def shapes(text: str) -> list[tuple[int, int, int]]:
    """`b,d,C;b,d,C;...` → [(b, d, C), ...], every entry a positive integer."""
    try:
        out = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]
    except ValueError:
        out = []
    if not out or any(len(s) != 3 or min(s) < 1 for s in out):
        raise argparse.ArgumentTypeError(f"expected b,d,C;b,d,C;... (positive integers), "
                                         f"got {text!r}")
    return out


def at_least(minimum: int):
    """An argparse type: an integer ≥ minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {minimum}, got {text!r}")
        return value
    return parse
