"""Builds the C++ CPU extension `sea_kernels._C` against the installed torch, and ships the
kernel's sources in the package (sea_kernels/csrc/) so that an install without `_C` compiles it
on first use (sea_kernels/op/cpp_backend.py).

Install with `pip install --no-build-isolation .` (or `-e .`) so that the extension is compiled
against the torch you run. Where torch is absent at build time (a plain `pip install .`, whose
isolated build environment has no torch), a compiler is missing or the compile fails, the install
still succeeds with one warning line and no prebuilt `_C`: the kernel is then compiled once on
first use (needs a C++ compiler and ninja; cached per user), or, if that is impossible or disabled
(SEA_KERNELS_NO_JIT=1), the package says so and uses its eager `torch` backend on CPU.
The sources and flags are those of sea_kernels/op/cpp_build.py, shared with that run-time build.
"""
import importlib.util
import sys
from pathlib import Path

import setuptools

# pyproject.toml's `license = "MIT"` and `license-files` are PEP 639 licence metadata, which
# setuptools reads from version 77 on; an older one stops with a schema error that does not name
# the version. An isolated build gets setuptools>=77 from [build-system]; a --no-build-isolation
# build (or `python setup.py ...`) uses the installed one, so say what it needs here.
SETUPTOOLS_MIN = 77
if int(setuptools.__version__.split(".")[0]) < SETUPTOOLS_MIN:
    sys.exit(f"sea-kernels needs setuptools>={SETUPTOOLS_MIN} (PEP 639 licence metadata), this "
             f"environment has setuptools {setuptools.__version__}: "
             f"pip install -U 'setuptools>={SETUPTOOLS_MIN}'")

from setuptools import setup  # noqa: E402
from setuptools.command.build_py import build_py  # noqa: E402

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def _load_cpp_build():
    """sea_kernels/op/cpp_build.py by path: importing the package would need its dependencies."""
    spec = importlib.util.spec_from_file_location("_sea_cpp_build",
                                                  ROOT / "sea_kernels" / "op" / "cpp_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpp_build = _load_cpp_build()


def _warn(msg):
    print(f"WARNING: sea_kernels: {msg}; this build has no prebuilt sea_kernels._C: the C++ kernel "
          "will be compiled on first use instead (needs a C++ compiler and ninja; cached per "
          "user), else the torch backend is used on CPU. To build it now, against your torch: "
          "pip install --no-build-isolation .", file=sys.stderr)


class BuildPyWithKernelSources(build_py):
    """build_py that also copies the kernel's sources (cpp_build.kernel_files of csrc/) into the
    package as sea_kernels/csrc/, for the compile on first use. An editable install finds them in
    the checkout's csrc/ instead."""

    def _kernel_targets(self):
        target = Path(self.build_lib, "sea_kernels", "csrc")
        return [(src, target / src.name) for src in cpp_build.kernel_files(CSRC)]

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst in self._kernel_targets():
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst))

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(dst) for _, dst in self._kernel_targets()]


ext_modules, cmdclass = [], {"build_py": BuildPyWithKernelSources}
if cpp_build.env_flag(cpp_build.ENV_NO_EXT):
    _warn(f"{cpp_build.ENV_NO_EXT} is set")
else:
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:
        _warn(f"torch is not importable at build time ({exc}; an isolated build, e.g. a plain "
              "`pip install .`)")
    else:
        openmp = torch.backends.openmp.is_available()
        ext_modules = [CppExtension(
            "sea_kernels._C", [str(Path("csrc", name)) for name in cpp_build.SOURCES],
            extra_compile_args={"cxx": cpp_build.cxx_flags(openmp)},
            extra_link_args=cpp_build.link_flags(openmp))]

        class OptionalBuildExtension(BuildExtension):
            """build_ext that turns a failed compile into one warning instead of a failed
            install."""

            def run(self):
                try:
                    super().run()
                except Exception as exc:  # no compiler, a compile or a link error
                    _warn(f"building sea_kernels._C failed ({type(exc).__name__}: {exc})")

        cmdclass["build_ext"] = OptionalBuildExtension.with_options(use_ninja=True)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
