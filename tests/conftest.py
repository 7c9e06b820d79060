"""Test-wide set-up. Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors;
the variable must be set before any kernel is defined, so it is set here, before collection.

Inductor's on-disk cache (/tmp/torchinductor_<user> by default) outlives a run and is keyed by the
traced graph, not by the schema of the package's custom ops: an entry compiled against another
checkout's op can be served to this one. Each test run compiles into a cache of its own."""
import os
import tempfile

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="sea-inductor-"))


@pytest.fixture()
def no_training(monkeypatch):
    """Training raises if it is ever reached (the sweep engine and the estimator's epochs): for
    the tests that bad input is refused before any work (its AssertionError would exit the CLI
    with status 1)."""
    from sea_kernels.sweeps import search as sweep_mod
    from sea_kernels.train.estimator import SeAClassifier

    def trained(*a, **k):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(SeAClassifier, "_run_epoch", trained)
    monkeypatch.setattr(sweep_mod, "train_many", trained)
