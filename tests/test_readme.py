"""Every ```python block of README.md runs as written from the repository root.

Each block runs in its own Python process (the interpreter of the tests), in a temporary folder
that holds a link to the checkout's data/ (what the blocks read), so that the files a block
writes (model.pt, sweep.json) stay out of the checkout; the checkout is first on PYTHONPATH.
A block whose first line is `# needs <module> ...` is skipped where that module is missing,
with that reason.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NEEDS = re.compile(r"#\s*needs ([A-Za-z0-9_.-]+)")
#: The module a `# needs <package>` comment names, where the two differ.
MODULE = {"scikit-learn": "sklearn"}
TIMEOUT_S = 300


def python_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tmp_path):
    first = code.lstrip().splitlines()[0]
    need = NEEDS.match(first)
    if need:
        module = MODULE.get(need.group(1), need.group(1))
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the block needs {need.group(1)}, which is not installed")
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"README block failed:\n{code}\n--- stderr:\n{proc.stderr[-3000:]}"


def test_the_hand_install_leaves_triton_to_cuda_machines():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Install by hand"):text.index("## Use")]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert "pip install" in commands and "triton" not in commands
    assert '".[triton]"' in section and "CUDA" in section
