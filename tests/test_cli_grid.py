"""`sea --version`, the defaults in every --help, the grid rule of `sea sweep` / `sea compare`
(an axis given → the other axes at their one default unless --grid names a base; the size
printed before training) and one test line per run (issue #10)."""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from sea_kernels.cli import arguments, errors
from sea_kernels.cli import compare as compare_cmd
from sea_kernels.cli import main as cli
from sea_kernels.cli import sweep as sweep_cmd
from sea_kernels.params import DEFAULTS, GRID_PARAMS, PAPER_GRID
from sea_kernels.sweeps.grid import BASE_GRIDS, command_line_grid, describe_grid, expand_grid

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:                                   # Python 3.10
        return re.search(r'^version = "([^"]+)"', text, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def _installed_version():
    try:
        return metadata.version("sea-kernels")
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------ --version

def test_version_is_printed_without_importing_torch():
    code = ("import sys; from sea_kernels.cli.main import main; c = main(['--version']); "
            "assert c == 0, c; assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"sea {_installed_version() or _pyproject_version()}"


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch, capsys):
    def absent(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "version", absent)
    assert arguments.package_version() == _pyproject_version()
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sea {_pyproject_version()}"


# ------------------------------------------------------------------------------ --help

def _commands() -> dict:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return sub.choices


def _option_help(text: str, option: str) -> str:
    """The help of `option` in argparse output, on one line."""
    lines, keep = [], False
    for line in text.splitlines():
        if line.startswith("  -"):
            keep = line.split()[0].rstrip(",") == option
        elif not line.startswith("   "):
            keep = False
        if keep:
            lines.append(line.strip())
    return " ".join(lines)


def _shows_default(action) -> bool:
    """Options whose default is a value (not None/False: a file left out; not a flag), and the
    grid axes (None = not given, but they have defaults)."""
    if not action.option_strings or isinstance(action, (
            argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction,
            argparse._StoreFalseAction)):
        return False
    return action.default not in (None, False, argparse.SUPPRESS) or action.dest in GRID_PARAMS


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_with_a_default_shows_it(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    checked = 0
    for action in _commands()[command]._actions:
        if _shows_default(action):
            help_text = _option_help(text, action.option_strings[0])
            assert "default" in help_text, (command, action.option_strings, help_text)
            checked += 1
    assert checked or command in ("info",), command


@pytest.mark.parametrize("command,base,values", [
    ("sweep", "paper", PAPER_GRID),
    ("compare", "compare", {"lr": [0.25, 0.5, 1, 2, 4], "lam": [0.1, 1],
                            "eta": [0, 0.2, 0.4, 0.8]}),
])
def test_axis_help_gives_the_base_values_and_the_one_default(command, base, values, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for name in GRID_PARAMS:
        flag = "--wd" if name == "weight_decay" else f"--{name}"
        h = _option_help(text, flag)
        one = format(DEFAULTS[name], "g")
        if name in values:
            many = " ".join(format(v, "g") for v in values[name])
            assert f"default: {many} when no axis is given or with --grid {base}, else {one}" in h
        else:
            assert f"default: {one}" in h, h


# ------------------------------------------------------------------------------ the grid rule

def _sweep_args(*argv):
    return cli.build_parser().parse_args(["sweep", "x.npz", *map(str, argv)])


def _compare_args(*argv):
    return cli.build_parser().parse_args(["compare", "x.npz", *map(str, argv)])


def test_the_base_grid_names_of_the_parser_are_the_grids():
    assert set(sweep_cmd.GRIDS) == set(BASE_GRIDS)
    assert set(compare_cmd.GRIDS) == {"compare", *BASE_GRIDS}
    assert BASE_GRIDS["defaults"] == {k: [DEFAULTS[k]] for k in GRID_PARAMS}


@pytest.mark.parametrize("argv,base,size", [
    ([], "paper", 1728),                                       # no axis: documented paper grid
    (["--lr", 0.5, 1, "--eta", 0, 0.4], "defaults", 4),        # was 4 × 72 = 288 before issue #10
    (["--lr", 0.5, 1, "--eta", 0, 0.4, "--grid", "paper"], "paper", 2 * 2 * 4 * 3 * 3 * 2),
    (["--grid", "defaults"], "defaults", 1),
    (["--grid", "paper"], "paper", 1728),
    (["--wd", 0, 0, 1e-4], "defaults", 2),                     # repeats dropped
])
def test_sweep_grid_rule(argv, base, size):
    args = _sweep_args(*argv)
    name, g = sweep_cmd.base_and_grid(args)
    assert name == base and len(expand_grid(g)) == size
    given = arguments.given_axes(args)
    for k in GRID_PARAMS:
        if k in given:
            assert g[k] == list(dict.fromkeys(given[k]))
        else:
            assert g[k] == (PAPER_GRID[k] if base == "paper" else [DEFAULTS[k]]), k


def test_compare_grid_rule_matches_sweep():
    from sea_kernels.compare import DEFAULT_GRID
    assert compare_cmd.base_and_grid(_compare_args()) == ("compare", DEFAULT_GRID)
    name, g = compare_cmd.base_and_grid(_compare_args("--lr", 0.5, 2))
    assert name == "defaults" and g == {**BASE_GRIDS["defaults"], "lr": [0.5, 2.0]}
    assert compare_cmd.grid(_compare_args("--lr", 0.5, "--grid", "compare")) == \
        {**DEFAULT_GRID, "lr": [0.5]}
    assert compare_cmd.grid(_compare_args("--lam", 1, "--grid", "paper")) == \
        {**PAPER_GRID, "lam": [1.0]}
    # --me-ada-lr / --adv-eta belong to one method each: they are no grid axes
    g = compare_cmd.grid(_compare_args("--methods", "none", "me_ada", "--me-ada-lr", 0.01))
    assert g == {**DEFAULT_GRID, "me_ada_lr": [0.01]}
    # the same axes and values give the same grid in both commands
    argv = ("--lr", 0.25, 1, "--delta", 0, 1)
    assert compare_cmd.grid(_compare_args(*argv)) == sweep_cmd.grid(_sweep_args(*argv))


def test_command_line_grid_refuses_an_unknown_base():
    with pytest.raises(ValueError, match="unknown base grid 'bogus'"):
        command_line_grid({}, "bogus")


def test_describe_grid():
    assert describe_grid(PAPER_GRID) == ("1,728 configurations (lr 6 × weight_decay 4 × alpha 3 "
                                         "× lam 3 × delta 2 × eta 4)")
    assert describe_grid({"wd": [0, 1e-4], "eta": [0.4]}) == (
        "2 configurations (weight_decay 2; fixed: lr 1.6, alpha 0.01, lam 0.1, delta 0, "
        "eta 0.4)")
    assert describe_grid({}).startswith("1 configuration (fixed: lr 1.6,")
    assert math.prod(len(v) for v in PAPER_GRID.values()) == 1728


# ------------------------------------------------------------------------------ runs

@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    """Five Gaussian clusters in 16 dimensions: x_train/y_train (300), x_test/y_test (100)."""
    rng = np.random.default_rng(0)
    c = rng.normal(size=(5, 16))
    y, yt = rng.integers(0, 5, 300), rng.integers(0, 5, 100)
    path = tmp_path_factory.mktemp("grid") / "small.npz"
    np.savez(path, x_train=(c[y] + rng.normal(size=(300, 16))).astype(np.float32), y_train=y,
             x_test=(c[yt] + rng.normal(size=(100, 16))).astype(np.float32), y_test=yt)
    return path


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _test_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("test")]


@pytest.fixture()
def stop_before_training(monkeypatch):
    """sweep() and compare() raise RunFailed when reached: the command prints what it announces
    before training and exits 1."""
    import sea_kernels.compare as compare_mod
    from sea_kernels.sweeps import search as sweep_mod

    def stop(*a, **k):
        raise errors.RunFailed("stopped before training")
    monkeypatch.setattr(sweep_mod, "sweep", stop)
    monkeypatch.setattr(compare_mod, "compare", stop)


@pytest.mark.parametrize("argv,announced", [
    ([], "sweep: 1,728 configurations (lr 6 × weight_decay 4 × alpha 3 × lam 3 × delta 2 × eta 4) "
         "from base grid paper × "),
    (["--lr", 0.5, 1, "--eta", 0, 0.4], "sweep: 4 configurations (lr 2 × eta 2; fixed: "
                                        "weight_decay 1e-06, alpha 0.01, lam 0.1, delta 0) from "
                                        "base grid defaults × "),
])
def test_sweep_prints_the_grid_size_before_training(small_npz, stop_before_training, capsys, argv,
                                                    announced):
    code, out, err = _run(["sweep", small_npz, *argv, "--no-progress"], capsys)
    assert code == 1 and "stopped before training" in err
    assert out.splitlines()[0].startswith(announced), out


@pytest.mark.parametrize("argv,announced", [
    ([], "grid: 40 configurations (lr 5 × lam 2 × eta 4; fixed: weight_decay 1e-06, alpha 0.01, "
         "delta 0) from base grid compare"),
    (["--lr", 0.5, 1], "grid: 2 configurations (lr 2; fixed: weight_decay 1e-06, alpha 0.01, "
                       "lam 0.1, delta 0, eta 0.8) from base grid defaults"),
])
def test_compare_prints_the_grid_size_before_training(small_npz, stop_before_training, capsys,
                                                      argv, announced):
    code, out, err = _run(["compare", small_npz, *argv, "--no-progress"], capsys)
    assert code == 1 and "stopped before training" in err
    lines = out.splitlines()
    assert lines[0].startswith("compare: 3 methods") and lines[1] == announced, out


@pytest.mark.parametrize("argv,how", [
    (["--lr", 0.5, 1], "test (retrained on train + validation): top-1 "),
    (["--lr", 0.5, "--no-retrain"], "test (the sweep's own winner, trained without the "
                                    "validation rows): top-1 ")])
def test_sweep_prints_one_test_line(small_npz, capsys, argv, how):
    code, out, err = _run(["sweep", small_npz, *argv, "--epochs", 1, "--batch-size", 64,
                           "--no-progress"], capsys)
    assert code == 0, err
    lines = _test_lines(out)
    assert len(lines) == 1 and lines[0].startswith(how), out


def test_train_prints_one_test_line(small_npz, capsys):
    code, out, err = _run(["train", small_npz, "--lr", 0.5, "--epochs", 1, "--no-progress"],
                          capsys)
    assert code == 0, err
    lines = _test_lines(out)
    assert len(lines) == 1 and lines[0].endswith("(100 examples)"), out
