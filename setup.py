"""Builds the optional C++ CPU extension `sea_kernels._C` against the installed torch.

Install with `pip install --no-build-isolation -e .` so that the extension is compiled against
the torch you run. If torch or a compiler is missing, or the compile fails, the install still
succeeds with one warning line and the package uses its eager `torch` backend on CPU.
"""
import sys

from setuptools import setup


def _warn(msg):
    print(f"WARNING: sea_kernels: {msg}; the C++ backend is unavailable, the torch backend will "
          "be used on CPU", file=sys.stderr)


ext_modules, cmdclass = [], {}
try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError as exc:
    _warn(f"torch is not importable at build time ({exc})")
else:
    openmp = ["-fopenmp"] if torch.backends.openmp.is_available() else []
    # -fno-trapping-math lets the row loops (and their polynomial exp) vectorise; torch itself is
    # built with it. No -march: the extension must run on any x86-64 / aarch64 CPU.
    cxx_flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", *openmp]
    ext_modules = [CppExtension("sea_kernels._C", ["csrc/sea_cpu.cpp", "csrc/module.cpp"],
                                extra_compile_args={"cxx": cxx_flags}, extra_link_args=openmp)]

    class OptionalBuildExtension(BuildExtension):
        """build_ext that turns a failed compile into one warning instead of a failed install."""

        def run(self):
            try:
                super().run()
            except Exception as exc:  # no compiler, a compile or a link error
                _warn(f"building sea_kernels._C failed ({type(exc).__name__}: {exc})")

    cmdclass = {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
