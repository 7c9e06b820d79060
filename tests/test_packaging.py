"""Packaging (issue #10): the sdist is complete, a wheel built from it carries the kernel, and an
install without the prebuilt `sea_kernels._C` compiles it on first use (once, into a cache that
later processes reuse), or says clearly why it cannot and uses the torch backend.

The build tests (`slow`, `build`) work in temporary folders only: the sdist and the wheels are
built from a copy, each install goes to a fresh virtual environment (no pip, no downloads: the
wheel is installed by this environment's pip with `--python`, torch is seen through a .pth file
naming this environment's site-packages) and every run of the installed package is a subprocess
whose working directory lies outside the source tree. The in-place sea_kernels/_C*.so is never
touched. The fast tests check the shared build description (op/cpp_build.py).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from sea_kernels.op import cpp_build

ROOT = Path(__file__).resolve().parents[1]
NAME = "sea_kernels-0.1.0"
BUILD_TIMEOUT = 300    # one compile of the extension takes about a minute on 2 cores
RUN_TIMEOUT = 240      # a run that compiles the kernel on first use
COMPILING = "compiling the C++ kernel now"
build = [pytest.mark.slow, pytest.mark.build]

# Run by the installed package: the C++ op against the torch backend, and how it was obtained.
PROBE = """
import sys
import torch
import sea_kernels
from sea_kernels.op import cpp_backend
torch.manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(8, 16, dtype=torch.float64), dim=1)
y = torch.randint(0, 5, (8,))
w = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
loss = sea_kernels.fused_sea(x, y, w, backend="cpp")
(grad,) = torch.autograd.grad(loss, w)
w2 = w.detach().clone().requires_grad_(True)
ref = sea_kernels.fused_sea(x, y, w2, backend="torch")
(ref_grad,) = torch.autograd.grad(ref, w2)
assert torch.allclose(loss, ref, rtol=1e-9, atol=1e-12), (loss, ref)
assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
print("PACKAGE", sea_kernels.__file__)
print("ORIGIN", cpp_backend.CPP_ORIGIN)
"""

# Run by the installed package with no kernel: auto falls back, cpp says how to get the kernel.
NO_KERNEL = """
import torch
import sea_kernels
from sea_kernels.op import cpp_backend
x = torch.nn.functional.normalize(torch.randn(4, 6), dim=1)
y = torch.tensor([0, 1, 2, 0])
w = torch.randn(6, 3)
assert not cpp_backend.CPP_AVAILABLE and cpp_backend.CPP_ORIGIN is None
assert sea_kernels.resolve_backend("auto", torch.device("cpu")) == "torch"
sea_kernels.fused_sea(x, y, w)                      # auto: the torch backend
try:
    sea_kernels.fused_sea(x, y, w, backend="cpp")
except ValueError as exc:
    print("VALUEERROR", exc)
else:
    raise SystemExit("backend='cpp' did not raise")
sea_kernels.info()
"""


# ----------------------------------------------------------------------------- helpers

def _run(cmd, *, timeout, env=None, cwd=None, check=True):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _build_env(**extra):
    """This environment, its bin/ first on PATH (ninja from the pip package, as if activated)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SEA_KERNELS_") and k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _run_env(cache: Path, **extra):
    """What an installed package runs with: no PYTHONPATH, no SEA_KERNELS_* but the cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SEA_KERNELS_") and k != "PYTHONPATH"}
    env[cpp_build.ENV_CACHE] = str(cache)
    env.update(extra)
    return env


def _site_dirs() -> list[str]:
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")
            and Path(p).is_dir()]


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh virtual environment holding `wheel` (no dependencies installed: torch and the
    rest are found through a .pth naming this environment's site-packages); its python."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", where],
         timeout=120)
    python = where / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--no-compile", "--disable-pip-version-check", wheel], timeout=120)
    purelib = sysconfig.get_path("purelib", vars={"base": str(where), "platbase": str(where)})
    # Added after the venv's own site-packages: the installed wheel wins over the checkout's
    # (its editable-install finder is a .pth file there, which a .pth line does not run).
    Path(purelib, "_sea_test_deps.pth").write_text("\n".join(_site_dirs()) + "\n")
    return python


def _build_wheel(srcdir: Path, out: Path, **env) -> tuple[Path, str]:
    proc = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                 "--skip-dependency-check", "--outdir", out,
                 srcdir], timeout=BUILD_TIMEOUT, env=_build_env(**env), cwd=srcdir)
    (wheel,) = out.glob("*.whl")
    return wheel, proc.stdout + proc.stderr


def _wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _kernel_in_package(names: list[str]) -> None:
    """The wheel ships what the compile on first use reads, as sea_kernels/csrc/."""
    for path in cpp_build.kernel_files(ROOT / "csrc"):
        assert f"sea_kernels/csrc/{path.name}" in names, (path.name, names)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """`python -m build --sdist` of a copy of the checkout (build writes its egg-info there)."""
    tmp = tmp_path_factory.mktemp("sdist")
    src = tmp / "src"
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", ".cache", "*.so",
                                    "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks")
    shutil.copytree(ROOT, src, ignore=ignore)
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--skip-dependency-check",
          "--outdir", tmp / "dist", src], timeout=BUILD_TIMEOUT, env=_build_env(), cwd=src)
    (tarball,) = (tmp / "dist").glob("*.tar.gz")
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp / "unpacked", filter="data")
        names = tf.getnames()
    return tarball, names, tmp / "unpacked" / NAME


@pytest.fixture(scope="module")
def jit_venv(sdist, tmp_path_factory):
    """A fresh environment holding a wheel built from the sdist WITHOUT sea_kernels._C."""
    tmp = tmp_path_factory.mktemp("jit")
    wheel, log = _build_wheel(sdist[2], tmp / "wheel", **{cpp_build.ENV_NO_EXT: "1"})
    names = _wheel_names(wheel)
    assert not any(re.match(r"sea_kernels/_C\b", n) for n in names), names
    _kernel_in_package(names)
    assert "compiled on first use" in log   # setup.py's warning says what replaces _C
    return _venv_with(wheel, tmp / "venv"), tmp


# ----------------------------------------------------------------------------- fast tests

def test_every_translation_unit_of_csrc_is_built():
    """cpp_build.SOURCES is the one list of setup.py and of the compile on first use: a new .cpp
    in csrc/ must be added there (csrc/tests/ holds the C++ unit tests, built by CMake only)."""
    assert sorted(p.name for p in (ROOT / "csrc").glob("*.cpp")) == sorted(cpp_build.SOURCES)
    shipped = {p.name for p in cpp_build.kernel_files(ROOT / "csrc")}
    assert shipped == {p.name for p in (ROOT / "csrc").iterdir() if p.is_file()}
    assert cpp_build.find_csrc() == ROOT / "csrc"   # a checkout: csrc/ beside the package


def test_cache_folder_is_keyed_by_torch_and_sources(tmp_path, monkeypatch):
    csrc = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", csrc)
    monkeypatch.setenv(cpp_build.ENV_CACHE, str(tmp_path / "cache"))
    first = cpp_build.build_dir(csrc, "2.13.0+cpu", True)
    assert first.parent == tmp_path / "cache"
    assert re.fullmatch(rf"torch2\.13\.0\+cpu-{sys.implementation.cache_tag}-[\w-]+-[0-9a-f]{{16}}",
                        first.name), first.name
    assert cpp_build.build_dir(csrc, "2.13.0+cpu", True) == first
    assert cpp_build.build_dir(csrc, "2.14.0+cpu", True) != first
    assert cpp_build.build_dir(csrc, "2.13.0+cpu", False) != first    # the flags change
    header = csrc / "sea_exp.h"
    header.write_text(header.read_text() + "\n// changed\n")
    assert cpp_build.build_dir(csrc, "2.13.0+cpu", True) != first     # a header is hashed too
    monkeypatch.delenv(cpp_build.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpp_build.cache_root() == tmp_path / "xdg" / "sea_kernels"


def test_toolchain_problems_name_what_is_missing(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setattr(cpp_build, "ninja_dir", lambda: None)
    problems = cpp_build.toolchain_problems()
    assert any("no C++ compiler" in p and "/nonexistent/g++" in p for p in problems), problems
    assert any("pip install ninja" in p for p in problems), problems


# ----------------------------------------------------------------------------- build tests

@pytest.mark.slow
@pytest.mark.build
def test_sdist_is_complete(sdist):
    tarball, names, _ = sdist
    inside = {n.split("/", 1)[1] for n in names if "/" in n}
    tracked = [p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc").rglob("*") if p.is_file()]
    assert tracked and "csrc/sea_cpu.h" in tracked and "csrc/sea_exp.h" in tracked
    wanted = [*tracked, "CMakeLists.txt", "docs/design.md", "LICENSE", "README.md", "setup.py",
              "pyproject.toml", "MANIFEST.in", "sea_kernels/op/cpp_build.py",
              "tests/helpers.py", "tests/conftest.py", "data/banking77/LICENSE",
              "data/banking77/README.md"]
    missing = [w for w in wanted if w not in inside]
    assert not missing, (missing, sorted(inside))
    assert not [n for n in inside if n.endswith((".so", ".o", ".pyc"))]


@pytest.mark.slow
@pytest.mark.build
def test_wheel_from_sdist_carries_the_kernel(sdist, tmp_path):
    """A wheel built from the sdist (torch present: --no-isolation) holds the compiled _C, and the
    installed package runs the C++ op from outside the source tree without compiling anything."""
    wheel, _ = _build_wheel(sdist[2], tmp_path / "wheel")
    names = _wheel_names(wheel)
    assert any(re.match(r"sea_kernels/_C\..*\.so$", n) for n in names), names
    _kernel_in_package(names)
    python = _venv_with(wheel, tmp_path / "venv")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # SEA_KERNELS_NO_JIT=1: should _C be missing after all, this fails instead of compiling.
    env = _run_env(tmp_path / "cache", **{cpp_build.ENV_NO_JIT: "1"})
    out = _run([python, "-c", PROBE], timeout=RUN_TIMEOUT, env=env, cwd=cwd).stdout
    assert f"PACKAGE {tmp_path / 'venv'}" in out, out
    assert "ORIGIN prebuilt (sea_kernels._C)" in out, out
    info = _run([python, "-m", "sea_kernels"], timeout=RUN_TIMEOUT, env=env, cwd=cwd).stdout
    cpp = next(line for line in info.splitlines() if line.split()[:1] == ["cpp"])
    assert "usable" in cpp and "prebuilt (sea_kernels._C)" in cpp, info
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.build
def test_kernel_is_compiled_once_on_first_use(jit_venv):
    """No _C in the install: the first use compiles the kernel into the cache, saying so in one
    line; a second process, and `sea_kernels.info`, reuse that build without compiling."""
    python, tmp = jit_venv
    cache, cwd = tmp / "cache", tmp / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = _run_env(cache)
    first = _run([python, "-c", PROBE], timeout=RUN_TIMEOUT, env=env, cwd=cwd)
    notes = [line for line in first.stderr.splitlines() if COMPILING in line]
    assert len(notes) == 1, first.stderr
    (build,) = [p for p in cache.iterdir() if p.is_dir()]
    assert str(build) in notes[0] and "sea_kernels._C is not built" in notes[0], notes
    assert f"ORIGIN compiled on first use ({build})" in first.stdout, first.stdout
    lib = next(build.glob(f"{cpp_build.JIT_MODULE}.*so"))
    assert (build / f"{cpp_build.JIT_MODULE}.json").is_file()
    stamp = lib.stat().st_mtime_ns

    # The second process also prints what `python -m sea_kernels` prints.
    second = _run([python, "-c", PROBE + "sea_kernels.info()\n"], timeout=RUN_TIMEOUT, env=env,
                  cwd=cwd)
    assert COMPILING not in second.stderr, second.stderr
    assert f"ORIGIN compiled on first use ({build})" in second.stdout, second.stdout
    cpp = next(line for line in second.stdout.splitlines() if line.split()[:1] == ["cpp"])
    assert "usable" in cpp and f"compiled on first use ({build})" in cpp, second.stdout
    assert lib.stat().st_mtime_ns == stamp and [p for p in cache.iterdir()] == [build]


@pytest.mark.slow
@pytest.mark.build
@pytest.mark.parametrize("case", ["no_jit", "no_compiler"])
def test_without_a_kernel_auto_uses_torch_and_cpp_says_how_to_get_it(jit_venv, case):
    """SEA_KERNELS_NO_JIT=1 (a compiled build in the cache is ignored too), or no compiler: one
    warning at import naming what is missing, auto → torch, backend='cpp' → ValueError."""
    python, tmp = jit_venv
    cwd = tmp / f"elsewhere-{case}"
    cwd.mkdir()
    if case == "no_jit":
        env, want = _run_env(tmp / "cache", **{cpp_build.ENV_NO_JIT: "1"}), "SEA_KERNELS_NO_JIT=1"
    else:
        env, want = _run_env(tmp / f"cache-{case}", CXX="/nonexistent/c++"), "/nonexistent/c++"
    proc = _run([python, "-c", NO_KERNEL], timeout=RUN_TIMEOUT, env=env, cwd=cwd)
    assert COMPILING not in proc.stderr, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warned) == 1 and "sea_kernels._C is not built" in warned[0], proc.stderr
    assert want in warned[0] and "pip install --no-build-isolation" in warned[0], warned
    (error,) = [line for line in proc.stdout.splitlines() if line.startswith("VALUEERROR")]
    assert "backend='cpp' is not available: sea_kernels._C is not built" in error, error
    assert want in error and "pip install --no-build-isolation" in error, error
    # what `python -m sea_kernels` prints (sea_kernels.info(), in the same process)
    cpp = next(line for line in proc.stdout.splitlines() if line.split()[:1] == ["cpp"])
    assert "missing" in cpp and "unavailable: sea_kernels._C is not built" in cpp, proc.stdout
    assert want in cpp, cpp


# ------------------------------------------------------------------- declared dependencies

#: import name → distribution name, where they differ
DIST = {"sklearn": "scikit-learn", "PIL": "pillow", "pytest_benchmark": "pytest-benchmark",
        "yaml": "pyyaml"}


def _pyproject():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements):
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def _third_party_imports(*folders):
    """Top-level modules the .py files of `folders` import (also through importorskip) that are
    neither the standard library, the package, nor a module of the checkout's script folders."""
    import ast
    local = {"sea_kernels"} | {p.stem for f in (ROOT / "tests", ROOT / "benches", ROOT / "python")
                               for p in f.glob("*.py")}
    found = set()
    for path in (p for f in folders for p in f.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value.split(".")[0])
    return {n for n in found if n not in sys.stdlib_module_names and n not in local}


def test_every_third_party_import_of_the_tests_is_declared_and_installed_by_make_test():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    makefile = (ROOT / "Makefile").read_text()
    installed = re.search(r'-e "\.\[([a-z,]+)\]"', makefile)
    assert installed, "make test's set-up installs the package with its extras"
    declared = _names(project["dependencies"])
    for extra in installed.group(1).split(","):
        declared |= _names(extras[extra])
    assert {"test", "text", "images"} <= set(installed.group(1).split(","))
    imported = _third_party_imports(ROOT / "tests", ROOT / "benches")
    missing = {n for n in imported if DIST.get(n, n).lower().replace("_", "-") not in declared}
    assert not missing, f"third-party imports of tests/ or benches/ no extra declares: {missing}"


def test_triton_is_an_extra_only():
    project = _pyproject()["project"]
    assert "triton" not in _names(project["dependencies"])
    assert _names(project["optional-dependencies"]["triton"]) == {"triton"}


def test_setup_py_names_the_setuptools_it_needs():
    floor = re.search(r'"setuptools>=(\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    code = ("import runpy, sys, setuptools; setuptools.__version__ = '65.5.0'; "
            "sys.argv = ['setup.py', '--version']; runpy.run_path('setup.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert (f"sea-kernels needs setuptools>={floor} (PEP 639 licence metadata)" in proc.stderr
            and f"pip install -U 'setuptools>={floor}'" in proc.stderr), proc.stderr
