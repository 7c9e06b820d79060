"""The `sea` parser: built without torch, its defaults and choices those of sea_kernels.params and
shown by --help; the layout of sea_kernels/cli (one module per command, none over 500 lines, files
written only through sea_kernels.data.writers)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sea_kernels import params
from sea_kernels.cli import bench, main

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "sea_kernels" / "cli"
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)


def test_parser_is_built_without_torch():
    proc = _python("import sys; from sea_kernels.cli.main import build_parser; build_parser(); "
                   "assert 'torch' not in sys.modules")
    assert proc.returncode == 0, proc.stderr


def test_help_imports_no_torch():
    proc = _python("import sys; from sea_kernels.cli.main import main; code = main(['train', "
                   "'--help']); assert code == 0; assert 'torch' not in sys.modules")
    assert proc.returncode == 0, proc.stderr
    assert "(default: 1.6)" in proc.stdout


def test_help_lists_the_exit_statuses_without_torch():
    proc = _python("import sys; from sea_kernels.cli.main import main; code = main(['--help']); "
                   "assert code == 0; assert 'torch' not in sys.modules")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "exit status: 0 success; 1 the run failed" in text
    for code, what in main.EXIT_CODES.items():
        assert f"{code} {what}" in text, (code, what)
    assert main.EXIT_BAD_INPUT == 2 and main.EXIT_BAD_FILE == 3 and main.EXIT_OUTPUT == 4


def _option_help(text: str, option: str) -> str:
    """The help of `option` in argparse output, on one line (option lines start with '  -')."""
    blocks, current = {}, None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0]
            blocks[current] = []
        elif not line.strip() or not line.startswith("   "):
            current = None
        if current is not None:
            blocks[current].append(line.strip())
    return " ".join(blocks[option])


TRAIN_DEFAULTS = [("--lr", params.DEFAULTS["lr"]), ("--weight-decay",
                                                     params.DEFAULTS["weight_decay"]),
                  ("--alpha", params.DEFAULTS["alpha"]), ("--eta", params.DEFAULTS["eta"]),
                  ("--lam", params.DEFAULTS["lam"]), ("--delta", params.DEFAULTS["delta"]),
                  ("--momentum", params.MOMENTUM), ("--epochs", params.EPOCHS),
                  ("--batch-size", params.BATCH_SIZE), ("--augment", "sea"),
                  ("--backend", "auto"), ("--seed", 0)]


@pytest.mark.parametrize("option,value", TRAIN_DEFAULTS, ids=[o for o, _ in TRAIN_DEFAULTS])
def test_train_help_shows_the_defaults(capsys, option, value):
    assert main.main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert f"(default: {value})" in _option_help(text, option), _option_help(text, option)


def test_sweep_help_shows_the_defaults(capsys):
    assert main.main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    assert f"(default: {params.VAL_FRACTION})" in _option_help(text, "--val-fraction")
    assert f"(default: {params.EPOCHS})" in _option_help(text, "--epochs")
    assert "paper (the paper's 1,728 configurations; default when no axis is given)" in \
        _option_help(text, "--grid")


def _action(parser, command: str, dest: str):
    sub = next(a for a in parser._actions if a.dest == "command")
    return next(a for a in sub.choices[command]._actions if a.dest == dest)


def test_defaults_and_choices_come_from_params():
    p = main.build_parser()
    t = p.parse_args(["train", "x.npz"])
    for k, v in params.DEFAULTS.items():
        assert getattr(t, k) == v, k
    assert (t.momentum, t.epochs, t.batch_size) == (params.MOMENTUM, params.EPOCHS,
                                                    params.BATCH_SIZE)
    s = p.parse_args(["sweep", "x.npz"])
    assert (s.val_fraction, s.epochs, s.batch_size, s.metric) == (
        params.VAL_FRACTION, params.EPOCHS, params.BATCH_SIZE, params.METRICS[0])
    assert tuple(_action(p, "train", "augment").choices) == params.AUGMENTS
    assert tuple(_action(p, "train", "backend").choices) == params.BACKENDS
    assert tuple(_action(p, "sweep", "backend").choices) == params.BACKENDS
    assert tuple(_action(p, "sweep", "metric").choices) == params.METRICS
    assert tuple(_action(p, "sweep", "heatmap_x").choices) == params.GRID_PARAMS
    for name in params.GRID_PARAMS:       # one sweep option per grid axis
        assert _action(p, "sweep", name).nargs == "+"


def test_one_module_per_command_none_over_500_lines():
    for command in main.COMMANDS:
        assert callable(command.add_parser) and callable(command.run), command.__name__
    names = {c.__name__.rsplit(".", 1)[1] for c in main.COMMANDS}
    assert names == {"train", "sweep", "compare", "eval", "extract", "bench", "info"}
    for path in CLI.glob("*.py"):
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n <= 500, f"{path.name}: {n} lines"


WRITES = re.compile(r"\.write_(text|bytes)\(|json\.dump\(|np\.save|torch\.save\(|savefig\(|"
                    r"open\([^)]*[\"'][wax]b?[\"']")


def test_cli_writes_files_only_through_the_writers():
    for path in CLI.glob("*.py"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not WRITES.search(line), f"{path.name}:{i}: {line.strip()}"


def test_bench_finds_the_checkout_script():
    assert bench.bench_script() == ROOT / "benches" / "run.py"
