"""Backends declare what they support; `auto` walks a priority list and says why each refused.

As xformers' operators do, every backend states the devices, the dtypes and the features it takes
and says *why* it refuses a call (docs/design.md §5): `Backend.not_supported_reasons(device,
dtypes, features)` is empty when the backend can run it. The features are "groups" (a group size),
"bias" and "input_grad" (∂loss/∂x, §8). An explicit `backend=` that
refuses raises a ValueError/TypeError naming the reasons; `backend="auto"` takes the first of
PRIORITY that does not refuse, and when none takes the call its error lists every backend's
reasons (`explain`). The declarations need no device to be present:
`resolve_backend("auto", torch.device("cuda"), (torch.float64,))` answers on a CPU-only machine.

The contract every `Backend.forward` obeys (docs/design.md §5):

    forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None, input_grad=False)
        -> (losses (b,), dW (d×C), db (C,))                     input_grad=False
        -> (losses (b,), dW (d×C), db (C,), dX (b×d))           input_grad=True

labels int64, `hyper` an op.call.Hyper (α, η, λ, δ, negative_only, group_size: None or
1 ≤ G < b), everything computed in row_scale's dtype (the compute dtype, op/call.py; Triton:
float32); dW and db are empty tensors without compute_grad, db also without a bias. With
input_grad (a backend declaring "input_grad"), dX = ∂(Σ_i s_i ℓ(x̃_i))/∂X in the same pass, the
direction u held fixed (x̃_i = Π(x_i + η u_i)): (γ_i − β_i x̃_i)/n_i, op/input_grad.py, one more
b·C·d GEMM; nothing extra without it. The arguments are already validated (op/call.py): a
backend checks nothing again.
"""
from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..params import BACKENDS, check_choice
from . import cpp_backend, torch_backend, triton_backend
from .validation import FLOAT_DTYPES

#: The features a call can need; a backend declares those it takes.
FEATURES = ("groups", "bias", "input_grad")


@dataclass(frozen=True)
class Backend:
    """One implementation of the `forward` contract and what it can run on."""
    name: str
    summary: str
    forward: Callable
    devices: tuple[str, ...] | None              # device types it runs on (None: every one)
    dtypes: tuple[torch.dtype, ...]
    features: frozenset[str]                    # of FEATURES
    unavailable: Callable[[], str | None]       # why it cannot run at all here (None: it can)
    extra_devices: Callable[[], tuple[str, ...]] = tuple

    def supported_devices(self, explicit: bool = True) -> tuple[str, ...] | None:
        """The device types it runs on (None: every one); `extra_devices` (the Triton
        interpreter on the CPU, a testing aid) count only when the backend is asked for by name,
        never for "auto"."""
        if self.devices is None:
            return None
        return self.devices + (self.extra_devices() if explicit else ())

    def not_supported_reasons(self, device: torch.device | str, dtypes, features=(),
                              explicit: bool = True) -> list[str]:
        """Why this backend cannot run a call on tensors of `dtypes` on `device` that needs
        `features` ([] when it can). Only the declarations are consulted: the device need not
        exist on this machine."""
        why = self.unavailable()
        if why:
            return [f"is not available: {why}"]
        reasons = []
        device = torch.device(device)
        devices = self.supported_devices(explicit)
        if devices is not None and device.type not in devices:
            names = "/".join(_DEVICE_NAMES.get(d, d) for d in devices)
            reasons.append(f"runs on {names} tensors, got tensors on {device}")
        bad = sorted({_dtype_name(d) for d in dtypes if d not in self.dtypes})
        if bad:
            reasons.append(f"computes in {'/'.join(map(_dtype_name, self.dtypes))} and does not "
                           f"take {', '.join(bad)} inputs")
        missing = sorted(set(features) - self.features)
        if missing:
            reasons.append(f"does not support {', '.join(missing)}")
        return reasons


_DEVICE_NAMES = {"cpu": "CPU", "cuda": "CUDA"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _triton_interpreter() -> tuple[str, ...]:
    return ("cpu",) if triton_backend.interpreter_on() else ()


BACKENDS_BY_NAME = {
    "torch": Backend(
        "torch", "Gram-space eager PyTorch", torch_backend.sea_forward,
        None, FLOAT_DTYPES, frozenset({"groups", "bias", "input_grad"}), lambda: None),
    "cpp": Backend(
        "cpp", "fused C++ kernel (sea_kernels._C, ATen GEMMs + OpenMP rows)",
        cpp_backend.sea_forward, ("cpu",), FLOAT_DTYPES,
        frozenset({"groups", "bias", "input_grad"}),
        lambda: None if cpp_backend.CPP_AVAILABLE else
        f"{cpp_backend.CPP_ERROR}; use backend='torch' or reinstall with "
        "`pip install --no-build-isolation -e .`"),
    "triton": Backend(
        "triton", "fused Triton kernels (scores once into a b×G Q, tensor-core dots)",
        triton_backend.sea_forward,
        ("cuda",), (torch.float32, torch.bfloat16, torch.float16),
        frozenset({"groups", "bias", "input_grad"}),
        lambda: None if triton_backend.AVAILABLE else triton_backend.UNAVAILABLE_REASON,
        _triton_interpreter),
}
#: What backend="auto" tries, in order (the last, `torch`, takes every input).
PRIORITY = ("triton", "cpp", "torch")
assert set(BACKENDS_BY_NAME) == set(PRIORITY) == set(BACKENDS) - {"auto"}
assert BACKENDS_BY_NAME[PRIORITY[-1]].devices is None

_INTERPRETER_HINT = (" (set TRITON_INTERPRET=1 before importing sea_kernels to run the Triton "
                     "kernels on the CPU, for testing)")


def explain(device: torch.device | str, dtypes=(torch.float32,), features=(),
            explicit: bool = False) -> dict[str, list[str]]:
    """{backend: why it refuses a call on tensors of `dtypes` on `device` needing `features`}
    for every backend, in PRIORITY order ([] for those that take it). explicit=False: as
    backend="auto" sees them (no Triton interpreter on the CPU)."""
    device = torch.device(device)
    return {name: BACKENDS_BY_NAME[name].not_supported_reasons(device, dtypes, features, explicit)
            for name in PRIORITY}


def resolve_backend(backend: str, device: torch.device | str, dtypes=(torch.float32,),
                    features=()) -> str:
    """The backend that runs a call on tensors of `dtypes` on `device` needing `features`: the
    first of PRIORITY that supports it for "auto", else the one named (ValueError/TypeError
    saying why when it cannot: a TypeError when the dtype is the only reason; for "auto" the
    reasons of every backend)."""
    check_choice("backend", backend, BACKENDS)
    device = torch.device(device)
    if backend == "auto":
        for name in PRIORITY:
            if not BACKENDS_BY_NAME[name].not_supported_reasons(device, dtypes, features,
                                                                explicit=False):
                return name
        why = "; ".join(f"{name} {' and '.join(reasons)}"
                        for name, reasons in explain(device, dtypes, features).items())
        raise ValueError(f"no backend takes this call (tensors on {device}"
                         + (f", needing {', '.join(sorted(features))}" if features else "")
                         + f"): {why}")
    reasons = BACKENDS_BY_NAME[backend].not_supported_reasons(device, dtypes, features)
    if reasons:
        exc = TypeError if all("does not take" in r for r in reasons) else ValueError
        hint = "use backend='auto'" + (_INTERPRETER_HINT if backend == "triton" and
                                       device.type == "cpu" else "")
        raise exc(f"backend={backend!r} {'; and '.join(reasons)}; {hint}")
    return backend


def forward_of(name: str) -> Callable:
    """The `forward` of a resolved backend name."""
    return BACKENDS_BY_NAME[name].forward


def _visible_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def backend_status() -> dict[str, tuple[bool, str]]:
    """{backend: (usable on some device here, what it is / why not)} for every backend of
    BACKENDS_BY_NAME, from the declarations. For `cpp` it also says how the kernel was obtained:
    "prebuilt (sea_kernels._C)", "compiled on first use (<cache folder>)" or "unavailable: why"."""
    status = {}
    for name, spec in BACKENDS_BY_NAME.items():
        why = spec.unavailable()
        if why:
            status[name] = (False, f"unavailable: {why}" if name == "cpp" else why)
            continue
        usable = [d for d in _visible_devices() if not spec.not_supported_reasons(d, ())]
        dtypes = "/".join(map(_dtype_name, spec.dtypes))
        dtypes += "; " + ", ".join(f for f in FEATURES if f in spec.features)
        if not usable:
            status[name] = (False, f"{spec.summary}: needs a {'/'.join(spec.devices)} device, none "
                                   "is visible" + (_INTERPRETER_HINT if name == "triton" else ""))
            continue
        where = ", ".join(usable)
        if name == "cpp":
            omp = "OpenMP" if torch.backends.openmp.is_available() else "no OpenMP"
            where += f", {omp}, {torch.get_num_threads()} threads"
        if name == "triton" and "cuda" in usable:
            where += f", {torch.cuda.get_device_name()}"
        elif name == "triton":
            where += ": Triton interpreter (TRITON_INTERPRET=1; testing only)"
        # how the C++ kernel was obtained: "prebuilt (sea_kernels._C)" or "compiled on first
        # use (<cache folder>)" (op/cpp_backend.py)
        origin = cpp_backend.CPP_ORIGIN if name == "cpp" else None
        origin = f"; kernel {origin}" if origin else ""
        status[name] = (True, f"{spec.summary} [{where}; {dtypes}]{origin}")
    return status


def info(file=None) -> None:
    """Print versions, the usable backends and what backend='auto' picks."""
    from .. import __version__

    file = file or sys.stdout
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = "not installed"
    print(f"sea_kernels {__version__}", file=file)
    print(f"python      {platform.python_version()} ({platform.machine()})", file=file)
    print(f"torch       {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
          f"cuda available: {torch.cuda.is_available()})", file=file)
    print(f"triton      {triton_version}", file=file)
    print("backends:", file=file)
    for name, (usable, why) in backend_status().items():
        print(f"  {name:7s} {'usable ' if usable else 'missing'}  {why}", file=file)
    devices = _visible_devices()
    picks = ", ".join(f"{d} {_dtype_name(t)} → "
                      f"{resolve_backend('auto', torch.device(d), (t,))}"
                      for d in devices for t in (torch.float32, torch.float64))
    print(f"auto picks: {picks}  (priority {' > '.join(PRIORITY)})", file=file)
    takes = {f: [n for n in PRIORITY if f in BACKENDS_BY_NAME[n].features] for f in FEATURES}
    print("features:   " + "; ".join(f"{f}: {', '.join(names) or 'no backend'}"
                                     for f, names in takes.items()), file=file)
