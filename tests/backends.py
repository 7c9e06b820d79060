"""Which backends a test can run here, as pytest parameters (one definition for the test files
that run every backend): torch always, cpp when the extension is built, triton on a GPU or under
TRITON_INTERPRET=1 (set by conftest.py before collection); and the one-thread fixture of the
small-case suites."""
from __future__ import annotations

import pytest
import torch

from sea_kernels.op import cpp_backend, dispatch, triton_backend
from sea_kernels.op.call import Hyper, compute_dtype

TRITON_OK = triton_backend.AVAILABLE and (torch.cuda.is_available() or
                                          triton_backend.interpreter_on())
_AVAILABLE = (("torch", True, ""),
              ("cpp", cpp_backend.CPP_AVAILABLE,
               f"C++ extension not built: {cpp_backend.CPP_ERROR}"),
              ("triton", TRITON_OK,
               "triton unavailable, or not under TRITON_INTERPRET=1 without a GPU"))


_FEATURE_OF = {"group_size": "groups", "bias": "bias"}


def takes(backend: str, *names: str) -> bool:
    """Whether the backend declares the features of these keywords (group_size, bias) or
    feature names (op/dispatch.py)."""
    features = dispatch.BACKENDS_BY_NAME[backend].features
    return all(_FEATURE_OF.get(n, n) in features for n in names)


def forward(fn, x, labels, weight, row_scale, *args, compute_grad=True, bias=None, **hyper):
    """A backend's forward (`fn`, the contract of op/dispatch.py) with the hyper-parameters as
    arguments (alpha, eta, lam, delta, negative_only, compute_grad positionally, or by name;
    group_size 0: the whole batch): (losses, dW) without a bias, (losses, dW, db) with one."""
    names = ("alpha", "eta", "lam", "delta", "negative_only", "compute_grad")
    hyper.update(zip(names, args))
    compute_grad = hyper.pop("compute_grad", compute_grad)
    hyper["group_size"] = hyper.get("group_size") or None
    out = fn(x, labels, weight, row_scale, Hyper(**hyper), compute_grad, bias)
    return out if bias is not None else out[:2]


def augment(x, labels, weight, bias=None, **hyper):
    """torch_backend.sea_augment with the hyper-parameters by name, in the compute dtype."""
    from sea_kernels.op import torch_backend
    hyper["group_size"] = hyper.get("group_size") or None
    return torch_backend.sea_augment(x, labels, weight, Hyper(**hyper),
                                     compute_dtype(x, weight, bias), bias)


def backend_params(*features: str) -> list:
    """torch, cpp and triton as pytest params, each skipped when unavailable here or when it
    does not declare the features of the keywords `features`."""
    out = []
    for name, ok, why in _AVAILABLE:
        marks = [pytest.mark.skipif(not ok, reason=why)]
        if features:
            marks.append(pytest.mark.skipif(
                not takes(name, *features),
                reason=f"{name} does not declare {'/'.join(features)}"))
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
