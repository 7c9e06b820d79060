"""Which backends a test can run here, and what each declares it computes (one definition for
every test that runs all backends): torch always, cpp when the extension is built, triton on a GPU
or under TRITON_INTERPRET=1 (set by conftest.py before collection); and the one-thread fixture of
the small-case suites.

A backend's features ("groups", "bias", ...) and dtypes are read from its declaration in
sea_kernels.op.dispatch (`Backend.features`, `Backend.dtypes`), so a test never skips a backend
for a feature it supports: a (backend, case) pair whose features or dtype the backend does not
declare is not generated at all; one that is declared but cannot run here (no extension, no GPU
or interpreter) is a skip with the reason.
"""
from __future__ import annotations

import pytest
import torch

from sea_kernels.op import cpp_backend, triton_backend
from sea_kernels.op.dispatch import BACKENDS_BY_NAME

NAMES = ("torch", "cpp", "triton")
TRITON_OK = triton_backend.AVAILABLE and (torch.cuda.is_available() or
                                          triton_backend.interpreter_on())
#: Triton without a GPU runs in the interpreter, whose cost grows with the number of programs
#: and the tile sizes: the per-backend tables give it shapes up to this size (b, d, C) only.
INTERPRETED = TRITON_OK and not torch.cuda.is_available()
TRITON_MAX = 64
_USABLE = {"torch": (True, ""),
           "cpp": (cpp_backend.CPP_AVAILABLE, f"C++ extension not built: {cpp_backend.CPP_ERROR}"),
           "triton": (TRITON_OK, "triton unavailable, or not under TRITON_INTERPRET=1 without a "
                                 "GPU")}


def features(name: str) -> frozenset:
    """The features the backend declares (dispatch.Backend.features)."""
    return BACKENDS_BY_NAME[name].features


def dtypes(name: str) -> tuple:
    return tuple(BACKENDS_BY_NAME[name].dtypes)


def declares(name: str, needs=(), dtype: torch.dtype | None = None) -> bool:
    """Whether the backend declares every feature in `needs` and (if given) the dtype."""
    return set(needs) <= features(name) and (dtype is None or dtype in dtypes(name))


def device(name: str) -> str:
    return "cuda" if name == "triton" and torch.cuda.is_available() else "cpu"


def param(name: str, *values, id: str | None = None, marks=()):
    """A pytest param (name, *values) skipped where the backend cannot run here."""
    ok, why = _USABLE[name]
    return pytest.param(name, *values, id=id,
                        marks=[pytest.mark.skipif(not ok, reason=why), *marks])


def backend_params(*needs: str, dtype: torch.dtype | None = None) -> list:
    """The backends declaring `needs` (and `dtype`) as pytest params, each skipped when it
    cannot run here."""
    return [param(n) for n in NAMES if declares(n, needs, dtype)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for the small cases (each parallel pass is one task anyway): on a busy
    machine OpenMP's spin-waits made every call ~100× slower with two. Import it into a test
    module to apply it there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
