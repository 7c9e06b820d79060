"""How the C++ kernel is built: the one place that names its sources and flags.

Two builds read this module: setup.py, which compiles the prebuilt extension `sea_kernels._C`
(it loads this file by path, without importing the package, so it works with torch absent), and
op/cpp_backend.py, which compiles the same sources on first use when an install has no `_C`
(`torch.utils.cpp_extension.load`, as DeepSpeed's op builder does). Nothing here imports torch.

Where the sources are: an installed wheel carries them as `sea_kernels/csrc/` (setup.py copies
csrc/ there, see `kernel_files`); a source checkout (editable install, running from the tree) has
them in `csrc/` beside the package. The compile on first use goes to a per-user cache:

    $SEA_KERNELS_CACHE, else $XDG_CACHE_HOME/sea_kernels, else ~/.cache/sea_kernels
      └── torch<version>-<python cache tag>-<machine>-<sha256[:16]>/
            build.ninja, *.o, sea_kernels_C<ext suffix>   (torch.utils.cpp_extension.load)
            sea_kernels_C.json                           (written once the build succeeded)

The SHA-256 covers every file the build reads (the sources and headers of csrc/), the flags,
the torch version and the Python extension suffix: changed sources or another torch give
another folder, never a stale kernel.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import sysconfig
from pathlib import Path

#: The translation units of the extension, in csrc/ (module.cpp: the Python module; sea_cpu.cpp:
#: the kernel and its TORCH_LIBRARY registration). The one list, for setup.py and the JIT build.
SOURCES = ("sea_cpu.cpp", "module.cpp")
#: The other files of csrc/ the build reads (included by the sources); shipped and hashed too.
HEADER_GLOBS = ("*.h", "*.hpp")
#: -fno-trapping-math lets the row loops (and their polynomial exp) vectorise; torch itself is
#: built with it. No -march: the extension must run on any x86-64 / aarch64 CPU. (CMakeLists.txt
#: repeats these as SEA_KERNEL_FLAGS.)
BASE_CXX_FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math")

#: The module name of the compiled-on-first-use build (the prebuilt one is sea_kernels._C).
JIT_MODULE = "sea_kernels_C"
#: SEA_KERNELS_NO_JIT=1: never compile the kernel at run time, nor use one compiled earlier; only
#: a prebuilt sea_kernels._C counts (else backend="auto" uses torch on CPU).
ENV_NO_JIT = "SEA_KERNELS_NO_JIT"
#: The cache folder of the compile on first use (default ~/.cache/sea_kernels).
ENV_CACHE = "SEA_KERNELS_CACHE"
#: SEA_KERNELS_NO_EXT=1 at build time: setup.py builds no sea_kernels._C (a wheel that relies
#: on the compile on first use; the packaging tests use it).
ENV_NO_EXT = "SEA_KERNELS_NO_EXT"

_PACKAGE = Path(__file__).resolve().parents[1]       # .../sea_kernels


def env_flag(name: str) -> bool:
    """True when the environment variable is set to something other than '', 0, false, no."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def cxx_flags(openmp: bool) -> list[str]:
    return [*BASE_CXX_FLAGS, *(["-fopenmp"] if openmp else [])]


def link_flags(openmp: bool) -> list[str]:
    return ["-fopenmp"] if openmp else []


def kernel_files(csrc: Path) -> list[Path]:
    """What the build reads from `csrc`: SOURCES, then its headers (sorted). setup.py ships
    exactly these in the wheel, as sea_kernels/csrc/."""
    csrc = Path(csrc)
    headers = sorted({p for pattern in HEADER_GLOBS for p in csrc.glob(pattern) if p.is_file()})
    return [csrc / name for name in SOURCES] + headers


def csrc_candidates() -> list[Path]:
    """Where the sources may be: in the installed package, then in the checkout beside it."""
    return [_PACKAGE / "csrc", _PACKAGE.parent / "csrc"]


def find_csrc() -> Path | None:
    """The first of `csrc_candidates()` holding every one of SOURCES (None: none does)."""
    for folder in csrc_candidates():
        if all((folder / name).is_file() for name in SOURCES):
            return folder
    return None


def cache_root() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sea_kernels"


def source_digest(csrc: Path, torch_version: str, openmp: bool) -> str:
    """SHA-256 of everything that decides the compiled kernel (see the module docstring)."""
    h = hashlib.sha256()
    for part in (torch_version, sysconfig.get_config_var("EXT_SUFFIX") or "", platform.machine(),
                 " ".join(cxx_flags(openmp)), " ".join(link_flags(openmp))):
        h.update(part.encode() + b"\0")
    for path in kernel_files(csrc):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_dir(csrc: Path, torch_version: str, openmp: bool) -> Path:
    """The cache folder of the compile on first use for these sources and this torch."""
    digest = source_digest(csrc, torch_version, openmp)
    name = f"torch{torch_version}-{sys.implementation.cache_tag}-{platform.machine()}-{digest[:16]}"
    return cache_root() / name


def compiler() -> str:
    """The C++ compiler torch.utils.cpp_extension runs: $CXX, else c++."""
    return os.environ.get("CXX") or "c++"


def ninja_dir() -> str | None:
    """A folder holding the ninja executable: the one on PATH, else that of the `ninja` Python
    package (its bin/ is on PATH only in an activated virtual environment), else next to this
    Python; None when there is none."""
    found = shutil.which("ninja")
    if found:
        return str(Path(found).parent)
    try:
        import ninja  # the PyPI package: the executable lives in its data folder
        candidates = [Path(getattr(ninja, "BIN_DIR", ""))]
    except Exception:
        candidates = []
    candidates.append(Path(sysconfig.get_path("scripts")))
    candidates.append(Path(sys.executable).parent)
    for folder in candidates:
        if str(folder) not in ("", ".") and shutil.which("ninja", path=str(folder)):
            return str(folder)
    return None


def toolchain_problems() -> list[str]:
    """What the compile on first use needs and this machine lacks ([] when nothing)."""
    problems = []
    cxx = compiler()
    if not shutil.which(cxx.split()[0]):
        problems.append(f"no C++ compiler ({cxx!r} not found: install g++ or clang++, or set CXX)")
    if ninja_dir() is None:
        problems.append("ninja is not installed (pip install ninja)")
    return problems
