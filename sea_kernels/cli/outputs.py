"""A command's results: accuracy metrics of a fitted model, percentages for the terminal, and the
all-or-nothing output folder (files staged beside --out, moved in when the command succeeded)."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path

from .errors import OutputError
from .preflight import check_output_dir


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
