"""The `cpp` backend: the Gram-space stages of docs/design.md §2/§5 as one fused C++ CPU kernel.

What differs from the common formulation (the kernel is csrc/sea_cpu.cpp, its stage functions
carry the names of §5):

* CPU only, in the compute dtype (float64 stays float64; bf16/fp16 inputs accumulate in fp32).
* The GEMMs go through ATen (MKL); every elementwise stage is one OpenMP (at::parallel_for) pass
  over rows. [K | L] is one b×(G+C) buffer and Q one b×G buffer (G: the group size, b for the
  whole batch), its softmax done in place.

How the kernel is obtained (importing it registers `torch.ops.sea_kernels.sea_fwd_cpu`,
TORCH_LIBRARY in csrc/; this module then registers the op's FakeTensor kernel, `_register_fake`),
in order:

1. the prebuilt extension `sea_kernels._C` (setup.py, `pip install --no-build-isolation .`);
2. else the same sources compiled on first use (op/cpp_build.py names them, their flags and the
   per-user cache folder): loaded at once when that cache already holds this build, else compiled
   the first time the backend is consulted (`backend="cpp"`, `"auto"`, `info()`), which prints one
   line saying so and where it is cached; later processes reuse the cache without compiling;
3. else the backend is unavailable: CPP_AVAILABLE is False, CPP_ERROR says what is missing (no
   `_C`, and the compiler or ninja that the compile needs, or SEA_KERNELS_NO_JIT=1) and how to
   get the kernel, one RuntimeWarning is emitted, backend="auto" falls back to the eager `torch`
   backend (op/dispatch.py) and backend="cpp" raises a ValueError with that reason.

CPP_AVAILABLE, CPP_ERROR and CPP_ORIGIN ("prebuilt (sea_kernels._C)", "compiled on first use
(<cache dir>)", None while unavailable) are settled on first access, so that importing the
package never waits for a compile. SEA_KERNELS_NO_JIT=1 turns step 2 off (tests, and users who
want the torch backend); SEA_KERNELS_CACHE moves the cache.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from . import cpp_build

_STATE = ("CPP_AVAILABLE", "CPP_ERROR", "CPP_ORIGIN")
_LOCK = threading.RLock()
_PENDING = None   # (why _C is missing, csrc folder, build folder) while a compile is due
_MODULE = None    # the loaded extension module (sea_kernels._C or its compiled twin)
#: A lock file this old is left by a killed compile, not by one in progress.
_STALE_LOCK_S = 30 * 60

#: The warnings' stack level from _start(): the module that imports this one.
_AT_IMPORT = 3
#: The warnings end with it; the ValueError of backend="cpp" (op/dispatch.py) says the same.
_HOW_TO_GET = ("to build sea_kernels._C against the torch you run: `pip install "
               "--no-build-isolation -e .` in the source tree")


def _settle(available: bool, error: str | None, origin: str | None) -> None:
    g = globals()
    g["CPP_AVAILABLE"], g["CPP_ERROR"], g["CPP_ORIGIN"] = available, error, origin


def _unavailable(error: str, stacklevel: int) -> None:
    _settle(False, error, None)
    warnings.warn(f"sea_kernels: C++ kernel unavailable: {error}; using the torch backend on CPU "
                  f"({_HOW_TO_GET})", RuntimeWarning, stacklevel=stacklevel + 1)


def _register_fake() -> None:
    """The FakeTensor kernel of torch.ops.sea_kernels.sea_fwd_cpu (shapes and dtypes only, for
    torch.compile and torch.library.opcheck): every output in row_scale's dtype (the compute
    dtype); losses (b,), dW (d×C; (0,) without compute_grad), db (C,; (0,) without compute_grad or
    without a bias), dX (b×d; (0,) without input_grad)."""

    @torch.library.register_fake("sea_kernels::sea_fwd_cpu")
    def _(x, labels, weight, row_scale, alpha, eta, lam, delta, negative_only, compute_grad,
          group_size=None, bias=None, input_grad=False):
        ct = row_scale.dtype
        losses = x.new_empty((x.shape[0],), dtype=ct)
        grad = x.new_empty(tuple(weight.shape) if compute_grad else (0,), dtype=ct)
        grad_b = x.new_empty((weight.shape[1],) if compute_grad and bias is not None else (0,),
                             dtype=ct)
        grad_x = x.new_empty(tuple(x.shape) if input_grad else (0,), dtype=ct)
        return losses, grad, grad_b, grad_x


def _loaded(module, origin: str, stacklevel: int) -> None:
    global _MODULE
    try:
        _register_fake()
    except Exception as exc:
        return _unavailable(f"the kernel {origin} registers no usable op ({type(exc).__name__}: "
                            f"{exc})", stacklevel + 1)
    _MODULE = module
    _settle(True, None, origin)


def _import_prebuilt():
    """(sea_kernels._C, None), or (None, what is wrong with it)."""
    try:
        found = importlib.util.find_spec("sea_kernels._C") is not None
    except Exception:
        found = False
    if not found:
        return None, "sea_kernels._C is not built (this install has no prebuilt extension)"
    try:
        return importlib.import_module("sea_kernels._C"), None
    except Exception as exc:  # an ABI mismatch surfaces as ImportError/OSError
        return None, f"sea_kernels._C does not load ({type(exc).__name__}: {exc})"


def _marker(build: Path) -> Path:
    return build / f"{cpp_build.JIT_MODULE}.json"


def _library(build: Path) -> Path:
    from torch.utils.cpp_extension import LIB_EXT
    return build / f"{cpp_build.JIT_MODULE}{LIB_EXT}"


def _import_cached(build: Path):
    """The module compiled earlier into `build`, or None when there is no finished build."""
    lib = _library(build)
    if not (_marker(build).is_file() and lib.is_file()) or (build / "lock").exists():
        return None
    spec = importlib.util.spec_from_file_location(cpp_build.JIT_MODULE, lib)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_error_line(text: str) -> str:
    """The compiler's first `error:` line of a failed build's output (else its first line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [text]
    return next((line for line in lines if "error:" in line), lines[0])[:400]


def _compile(missing: str, csrc: Path, build: Path):
    """torch.utils.cpp_extension.load of cpp_build.SOURCES into `build`; returns the module."""
    from torch.utils.cpp_extension import load

    print(f"sea_kernels: {missing}; compiling the C++ kernel now, once (about a minute), cached "
          f"in {build} (set {cpp_build.ENV_NO_JIT}=1 to use the torch backend instead)",
          file=sys.stderr, flush=True)
    build.mkdir(parents=True, exist_ok=True)
    lock = build / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > _STALE_LOCK_S:
        lock.unlink(missing_ok=True)   # left by a compile that was killed
    openmp = torch.backends.openmp.is_available()
    path = os.environ.get("PATH", "")
    ninja = cpp_build.ninja_dir()
    try:
        if ninja and ninja not in path.split(os.pathsep):
            os.environ["PATH"] = ninja + os.pathsep + path   # torch runs `ninja` from PATH
        module = load(name=cpp_build.JIT_MODULE,
                      sources=[str(csrc / name) for name in cpp_build.SOURCES],
                      extra_cflags=cpp_build.cxx_flags(openmp),
                      extra_ldflags=cpp_build.link_flags(openmp),
                      build_directory=str(build), verbose=False)
    finally:
        os.environ["PATH"] = path
    _marker(build).write_text(json.dumps({
        "torch": torch.__version__, "python": sys.version.split()[0],
        "sources": {p.name: str(p) for p in cpp_build.kernel_files(csrc)},
        "cxx_flags": cpp_build.cxx_flags(openmp), "built": time.strftime("%Y-%m-%d %H:%M:%S")},
        indent=1) + "\n")
    return module


def _start() -> None:
    """At import: the prebuilt _C, else a cached build, else note what the compile needs."""
    global _PENDING
    module, missing = _import_prebuilt()
    if module is not None:
        return _loaded(module, "prebuilt (sea_kernels._C)", _AT_IMPORT)
    if cpp_build.env_flag(cpp_build.ENV_NO_JIT):
        return _unavailable(f"{missing}, and compiling it on first use is disabled "
                            f"({cpp_build.ENV_NO_JIT}=1): unset {cpp_build.ENV_NO_JIT} to compile "
                            "it (needs a C++ compiler and ninja)", _AT_IMPORT)
    csrc = cpp_build.find_csrc()
    if csrc is None:
        return _unavailable(f"{missing}, and its C++ sources are not in the package to compile it "
                            f"(looked in {', '.join(map(str, cpp_build.csrc_candidates()))})",
                            _AT_IMPORT)
    try:
        build = cpp_build.build_dir(csrc, torch.__version__, torch.backends.openmp.is_available())
    except Exception as exc:   # unreadable sources; no home folder for the default cache
        return _unavailable(f"{missing}, and its C++ sources or cache folder cannot be read "
                            f"({type(exc).__name__}: {exc})", _AT_IMPORT)
    try:
        cached = _import_cached(build)
    except Exception:   # a damaged cache entry: link it again
        cached = None
        with contextlib.suppress(OSError):
            _library(build).unlink(missing_ok=True)
    if cached is not None:
        return _loaded(cached, f"compiled on first use ({build})", _AT_IMPORT)
    problems = cpp_build.toolchain_problems()
    if problems:
        return _unavailable(f"{missing}, and it cannot be compiled here: {'; '.join(problems)}",
                            _AT_IMPORT)
    _PENDING = (missing, csrc, build)


def ensure() -> bool:
    """Settle how the kernel is obtained, compiling it now if that is due; CPP_AVAILABLE."""
    global _PENDING
    with _LOCK:
        if _PENDING is not None:
            missing, csrc, build = _PENDING
            try:
                module = _compile(missing, csrc, build)
            except Exception as exc:   # (an interrupt leaves the compile due: the next use retries)
                _PENDING = None
                log = build / "build.log"
                try:
                    log.write_text(f"{type(exc).__name__}: {exc}\n")
                except OSError:
                    log = None
                _unavailable(f"{missing}, and compiling it in {build} failed: "
                             f"{_first_error_line(str(exc))}"
                             + (f" (compiler output in {log})" if log else ""), stacklevel=3)
            else:
                _PENDING = None
                _loaded(module, f"compiled on first use ({build})", stacklevel=3)
        return globals()["CPP_AVAILABLE"]


def __getattr__(name: str):
    if name in _STATE:
        ensure()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sea_forward(x, labels, weight, row_scale, hyper, compute_grad=True, bias=None,
                input_grad=False):
    """The backend contract (op/dispatch.py, docs/design.md §5) through
    torch.ops.sea_kernels.sea_fwd_cpu: (losses, dW, db) in row_scale's dtype (the compute dtype:
    the kernel computes in it); dW and db empty without compute_grad, db also without a bias;
    input_grad: (losses, dW, db, dX), dX (b×d) computed in the same pass (op/input_grad.py).
    hyper.group_size: None (the whole batch) or G ≥ 1 (block-diagonal Q, groups of G)."""
    if _MODULE is None and not ensure():
        raise RuntimeError(f"the C++ kernel is unavailable: {globals()['CPP_ERROR']}")
    alpha, eta, lam, delta, negative_only, group_size = hyper
    out = torch.ops.sea_kernels.sea_fwd_cpu(x, labels, weight, row_scale, alpha, eta, lam, delta,
                                            negative_only, compute_grad, group_size, bias,
                                            input_grad)
    return out if input_grad else out[:3]


with _LOCK:
    _start()
