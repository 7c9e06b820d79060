"""Which backends a test can run here, as pytest parameters (one definition for the test files
that run every backend): torch always, cpp when the extension is built, triton on a GPU or under
TRITON_INTERPRET=1 (set by conftest.py before collection); and the one-thread fixture of the
small-case suites."""
from __future__ import annotations

import inspect

import pytest
import torch

from sea_kernels.op import cpp_backend, dispatch, triton_backend

TRITON_OK = triton_backend.AVAILABLE and (torch.cuda.is_available() or
                                          triton_backend.interpreter_on())
_AVAILABLE = (("torch", True, ""),
              ("cpp", cpp_backend.CPP_AVAILABLE,
               f"C++ extension not built: {cpp_backend.CPP_ERROR}"),
              ("triton", TRITON_OK,
               "triton unavailable, or not under TRITON_INTERPRET=1 without a GPU"))


def takes(backend: str, *names: str) -> bool:
    """Whether the backend's sea_forward accepts these keywords."""
    params = inspect.signature(dispatch.forward_of(backend)).parameters
    return all(n in params for n in names)


def backend_params(*features: str) -> list:
    """torch, cpp and triton as pytest params, each skipped when unavailable here or when its
    sea_forward takes none of the keywords `features`."""
    out = []
    for name, ok, why in _AVAILABLE:
        marks = [pytest.mark.skipif(not ok, reason=why)]
        if features:
            marks.append(pytest.mark.skipif(
                not takes(name, *features),
                reason=f"{name}.sea_forward takes no {'/'.join(features)}"))
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for the small cases (each parallel pass is one task anyway): on a busy
    machine OpenMP's spin-waits made every call ~100× slower with two. Import it into a test
    module to apply it there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
