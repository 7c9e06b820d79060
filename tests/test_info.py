"""`sea_kernels.info()` is the function whatever was imported (no submodule shadows it), and
`python -m sea_kernels` prints the same table."""
import importlib
import io
import pkgutil
import subprocess
import sys
from contextlib import redirect_stdout

import sea_kernels


def test_info_after_importing_every_submodule():
    skipped = []
    for mod in pkgutil.walk_packages(sea_kernels.__path__, "sea_kernels."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except ImportError as exc:   # an optional dependency missing here
            skipped.append(f"{mod.name}: {exc}")
    assert callable(sea_kernels.info)
    out = io.StringIO()
    with redirect_stdout(out):
        sea_kernels.info()
    assert "backends:" in out.getvalue() and "auto picks:" in out.getvalue()


def test_python_m_sea_kernels_prints_info():
    out = subprocess.run([sys.executable, "-m", "sea_kernels"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.startswith("sea_kernels ") and "backends:" in out and "features:" in out
