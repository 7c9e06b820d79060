"""`sea sweep`: train a hyper-parameter grid in one pass, pick on validation, retrain.

    sea sweep features.npz --lr 0.25 0.5 1 --eta 0 0.4 0.8 --epochs 30 --out sweep/

--out DIR gets sweep.json, sweep.csv, heatmap.png and the winner's model.pt. The sweep engine is
`sea_kernels.train.sweep` (docs/design.md §4). The grid, the scalar options, the device, --out and
every data set (features, labels, --val, --test) are checked before any training.
"""
from __future__ import annotations

import math

from ..params import (
    BACKENDS,
    BATCH_SIZE,
    DEFAULTS,
    EPOCHS,
    GRID_PARAMS,
    METRICS,
    PAPER_GRID,
    VAL_FRACTION,
)
from . import common
from .common import RunFailed, UsageError, integer, number

GRIDS = ("paper", "defaults")


def add_parser(sub):
    """The `sweep` subcommand: one option per grid axis, plus the protocol's options."""
    s = sub.add_parser("sweep", help="train a hyper-parameter grid in one pass, pick on "
                                     "validation, retrain (--out DIR: sweep.json, sweep.csv, "
                                     "heatmap.png, model.pt)")
    common.add_data_args(s, "train")
    common.add_set_args(s, "val", "validation")
    common.add_set_args(s, "test", "test")
    _add_grid_args(s)
    s.add_argument("--val-fraction", type=number, default=VAL_FRACTION,
                   help="stratified validation hold-out when there is no --val")
    s.add_argument("--epochs", type=integer, default=EPOCHS, help="training epochs")
    s.add_argument("--batch-size", type=integer, default=BATCH_SIZE, help="mini-batch size")
    s.add_argument("--seed", type=integer, default=0, help="random_state")
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="fused_sea backend of the retrained winner")
    common.add_device(s)
    s.add_argument("--metric", default=METRICS[0], choices=METRICS,
                   help="selection metric on validation")
    s.add_argument("--no-retrain", action="store_true",
                   help="score the sweep's own winner on test instead of refitting it on "
                        "train + validation")
    s.add_argument("--top", type=integer, default=10, help="configurations to print")
    s.add_argument("--heatmap-x", default="lr", choices=GRID_PARAMS, help="heatmap columns")
    s.add_argument("--heatmap-y", default="eta", choices=GRID_PARAMS, help="heatmap rows")
    s.add_argument("--no-plot", action="store_true", help="do not write heatmap.png")
    s.add_argument("--out", default=None, help="output folder")
    common.add_progress(s)
    s.set_defaults(func=run)
    return s


def _add_grid_args(s):
    """--grid and one option per axis of GRID_PARAMS (each replaces that axis)."""
    g = s.add_argument_group("grid (each option replaces that axis of the base grid)")
    n_paper = math.prod(len(v) for v in PAPER_GRID.values())
    g.add_argument("--grid", default=GRIDS[0], choices=GRIDS,
                   help=f"base grid: the paper's {n_paper:,} configurations (default), or one "
                        "value per parameter (the defaults)")
    g.add_argument("--lr", nargs="+", type=number, default=None)
    g.add_argument("--wd", "--weight-decay", dest="weight_decay", nargs="+", type=number,
                   default=None)
    for name in ("alpha", "lam", "delta", "eta"):
        g.add_argument(f"--{name}", nargs="+", type=number, default=None)


def grid(args) -> dict:
    """The grid of a `sea sweep` command line: the base grid (``--grid paper``, the default: the
    paper's 1,728 configurations; ``--grid defaults``: one value per parameter, docs/design.md
    §1), with every axis given on the command line replacing the base one."""
    base = PAPER_GRID if args.grid == "paper" else {k: [v] for k, v in DEFAULTS.items()}
    out = {k: list(base[k]) for k in GRID_PARAMS}
    for k in GRID_PARAMS:
        values = getattr(args, k)
        if values is not None:
            out[k] = list(dict.fromkeys(values))     # keep order, drop repeats
    return out


def check_args(args, g) -> None:
    """The grid and the scalar options, checked the way `sweep()` checks them (ValueError /
    ParameterError naming the option) — before any data is read."""
    from ..params import check_int, check_real, check_seed
    from ..train.grid import expand_grid
    expand_grid(g)
    check_int("epochs", args.epochs)
    check_int("batch_size", args.batch_size)
    check_seed(args.seed, "--seed")
    if args.val is None:
        check_real("val_fraction", args.val_fraction)
    if args.top < 0:
        raise UsageError(f"--top must be ≥ 0, got {args.top}")


def _announce(args, g, n, val):
    """The first line: how many configurations, epochs, examples, and the validation set."""
    n_configs = math.prod(len(v) for v in g.values())
    axes = " × ".join(f"{k} {len(v)}" for k, v in g.items() if len(v) > 1) or "one"
    print(f"sweep: {n_configs} configurations ({axes}; base grid: {args.grid}) × "
          f"{args.epochs} epochs on {n} examples; "
          + (f"validation: {len(val[1])} given examples" if val is not None else
             f"validation: a stratified {args.val_fraction:g} hold-out"), flush=True)


def _sweep_kwargs(args, val, test, device: str) -> dict:
    """Keyword arguments of `sea_kernels.train.sweep.sweep` from the command line."""
    kw = dict(val_fraction=args.val_fraction, epochs=args.epochs, batch_size=args.batch_size,
              random_state=args.seed, backend=args.backend, metric=args.metric,
              retrain=not args.no_retrain, progress=common.show_progress(args), device=device)
    if val is not None:
        kw.update(X_val=val[0], y_val=val[1])
    if test is not None:
        kw.update(X_test=test[0], y_test=test[1])
    return kw


def _print_result(args, result):
    """The top configurations, the winner and (when scored) its test accuracy."""
    print(result.table(args.top))
    if result.best is None:
        raise RunFailed("every configuration diverged; lower the learning rates (--lr)")
    best = ", ".join(f"{k}={v:g}" for k, v in result.best.items())
    print(f"best on validation: {best} (validation {args.metric} {common.pct(result.best_val)})")
    if result.test_top1 is not None:
        how = ("the sweep's own winner, trained without the validation rows" if args.no_retrain
               else "retrained on train + validation")
        print(f"test ({how}): top-1 {common.pct(result.test_top1)}, mean per-class "
              f"{common.pct(result.test_mean_per_class)}")


def _write(args, out, result):
    """sweep.json, sweep.csv, heatmap.png and model.pt into the staged --out folder."""
    with out.writing():
        _write_files(args, out, result)


def _write_files(args, out, result):
    result.to_json(out.path("sweep.json"))
    result.to_csv(out.path("sweep.csv"))
    if not args.no_plot:
        from ..train.plots import plot_heatmap
        plot_heatmap(result, out.path("heatmap.png"), x=args.heatmap_x, y=args.heatmap_y)
    if result.model is not None:
        result.model.save(out.path("model.pt"))
    written = out.commit()
    print("wrote " + ", ".join(str(p) for p in written))


def run(args) -> int:
    """Sweep the grid, print the ranking and the winner, write the outputs (all or nothing)."""
    from ..train.sweep import sweep

    g = grid(args)
    common.need_matplotlib(args)
    check_args(args, g)
    device = common.device(args.device)
    with common.output(args.out) as out:
        X, y, classes = common.load_main(args)
        val = common.load_extra(args, "val", classes)
        test = common.load_extra(args, "test", classes)
        for what, s in (("validation", val), ("test", test)):
            if s is not None:
                common.check_same_layout(X, s[0], what)
        _announce(args, g, len(y), val)
        result = sweep(X, y, g, **_sweep_kwargs(args, val, test, device))
        _print_result(args, result)
        if out.out is not None:
            _write(args, out, result)
    return 0
