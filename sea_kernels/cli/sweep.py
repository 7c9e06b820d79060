"""`sea sweep`: train a hyper-parameter grid in one pass, pick on validation, retrain.

    sea sweep features.npz --out sweep/                               # the paper's 1,728
    sea sweep features.npz --lr 0.25 0.5 1 --eta 0 0.4 0.8 --out sweep/     # 9: lr × η
    sea sweep features.npz --lr 0.25 0.5 1 --grid paper --out sweep/        # 864

The grid (`base_and_grid`, `sea_kernels.sweeps.grid.command_line_grid`): with no axis given, the
paper's grid; an axis given replaces its axis and every other axis takes its one default
(params.DEFAULTS), unless ``--grid paper`` keeps the paper's values for them. Its size and axes
are printed before any training.

--out DIR gets sweep.json, sweep.csv, heatmap.png and the winner's model.pt. The sweep engine is
`sea_kernels.sweeps` (docs/design.md §4). The grid, the scalar options, the device, --out and
every data set (features, labels, --val, --test) are checked before any training.
"""
from __future__ import annotations

import math

from ..params import (
    BACKENDS,
    BATCH_SIZE,
    EPOCHS,
    GRID_PARAMS,
    METRICS,
    PAPER_GRID,
    VAL_FRACTION,
)
from . import arguments, inputs, outputs, preflight
from .arguments import integer, number
from .errors import RunFailed, UsageError

GRIDS = ("paper", "defaults")


def add_parser(sub):
    """The `sweep` subcommand: one option per grid axis, plus the protocol's options."""
    s = sub.add_parser("sweep", help="train a hyper-parameter grid in one pass, pick on "
                                     "validation, retrain (--out DIR: sweep.json, sweep.csv, "
                                     "heatmap.png, model.pt)")
    arguments.add_data_args(s, "train")
    arguments.add_set_args(s, "val", "validation")
    arguments.add_set_args(s, "test", "test")
    _add_grid_args(s)
    s.add_argument("--val-fraction", type=number, default=VAL_FRACTION,
                   help="stratified validation hold-out when there is no --val")
    s.add_argument("--epochs", type=integer, default=EPOCHS, help="training epochs")
    s.add_argument("--batch-size", type=integer, default=BATCH_SIZE, help="mini-batch size")
    s.add_argument("--seed", type=integer, default=0, help="random_state")
    s.add_argument("--group-size", type=integer, default=None,
                   help="rows per SeA group in every batch (default: the whole batch, the paper)")
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="fused_sea backend of the retrained winner")
    arguments.add_device(s)
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
    arguments.add_progress(s)
    s.set_defaults(func=run)
    return s


def _add_grid_args(s):
    """--grid and one option per axis of GRID_PARAMS (each replaces that axis)."""
    g = s.add_argument_group("grid (with no axis given: the paper's grid; an axis given replaces "
                             "its axis, the others take their one default unless --grid paper)")
    n_paper = math.prod(len(v) for v in PAPER_GRID.values())
    g.add_argument("--grid", default=None, choices=GRIDS,
                   help=f"base grid of the axes not given: paper (the paper's {n_paper:,} "
                        "configurations; default when no axis is given) or defaults (one value "
                        "per axis, docs/design.md §1; default when an axis is given)")
    arguments.add_axis_args(g, "paper", {k: " ".join(f"{v:g}" for v in vals)
                                      for k, vals in PAPER_GRID.items()})


def base_and_grid(args) -> tuple[str, dict]:
    """(base grid name, grid) of a `sea sweep` command line (`sweeps.grid.command_line_grid`):
    --grid NAME when named; else the paper's 1,728 configurations when no axis is given; else
    the axes given, every other axis at its one default (params.DEFAULTS)."""
    from ..sweeps.grid import command_line_grid
    return command_line_grid(arguments.given_axes(args), args.grid, default="paper")


def grid(args) -> dict:
    """The grid of a `sea sweep` command line (`base_and_grid`)."""
    return base_and_grid(args)[1]


def _settings(args) -> dict:
    """The options of `sweep()` that are not data."""
    return dict(val_fraction=args.val_fraction, epochs=args.epochs, batch_size=args.batch_size,
                random_state=args.seed, backend=args.backend, metric=args.metric,
                group_size=args.group_size)


def check_args(args, g) -> None:
    """The grid and the scalar options, checked by sweep()'s own check
    (`sweeps.search.checked_settings`: ValueError / ParameterError naming the option) — before
    any data is read; and --top."""
    from ..sweeps.search import checked_settings
    checked_settings(g, **_settings(args), seed_name="--seed")
    if args.top < 0:
        raise UsageError(f"--top must be ≥ 0, got {args.top}")


def _announce(args, g, n, val):
    """The first line: how many configurations, epochs, examples, and the validation set."""
    from ..sweeps.grid import describe_grid
    print(f"sweep: {describe_grid(g)} from base grid {base_and_grid(args)[0]} × "
          f"{args.epochs} epochs on {n} examples; "
          + (f"validation: {len(val[1])} given examples" if val is not None else
             f"validation: a stratified {args.val_fraction:g} hold-out"), flush=True)


def _sweep_kwargs(args, val, test, device: str) -> dict:
    """Keyword arguments of `sea_kernels.sweeps.search.sweep` from the command line."""
    kw = dict(_settings(args), retrain=not args.no_retrain,
              progress=arguments.show_progress(args), device=device)
    if val is not None:
        kw.update(X_val=val[0], y_val=val[1])
    if test is not None:
        kw.update(X_test=test[0], y_test=test[1])
    return kw


def _print_result(args, result):
    """The top configurations, the winner and (when scored) its test accuracy — one test line:
    the table's own test line is left out for the line below, which says how the winner was
    scored."""
    import dataclasses
    print(dataclasses.replace(result, test_top1=None, test_mean_per_class=None).table(args.top))
    if result.best is None:
        raise RunFailed("every configuration diverged; lower the learning rates (--lr)")
    best = ", ".join(f"{k}={v:g}" for k, v in result.best.items())
    print(f"best on validation: {best} (validation {args.metric} {outputs.pct(result.best_val)})")
    if result.test_top1 is not None:
        how = ("the sweep's own winner, trained without the validation rows" if args.no_retrain
               else "retrained on train + validation")
        print(f"test ({how}): top-1 {outputs.pct(result.test_top1)}, mean per-class "
              f"{outputs.pct(result.test_mean_per_class)}")


def _write(args, out, result):
    """sweep.json, sweep.csv, heatmap.png and model.pt into the staged --out folder."""
    with out.writing():
        _write_files(args, out, result)


def _write_files(args, out, result):
    result.to_json(out.path("sweep.json"))
    result.to_csv(out.path("sweep.csv"))
    if not args.no_plot:
        from ..plots import plot_heatmap
        plot_heatmap(result, out.path("heatmap.png"), x=args.heatmap_x, y=args.heatmap_y)
    if result.model is not None:
        result.model.save(out.path("model.pt"))
    written = out.commit()
    print("wrote " + ", ".join(str(p) for p in written))


def run(args) -> int:
    """Sweep the grid, print the ranking and the winner, write the outputs (all or nothing).
    Under torchrun every rank trains its share of the grid; rank 0 alone prints and writes."""
    from ..sweeps.search import sweep
    from ..train import distributed

    g = grid(args)
    preflight.need_matplotlib(args)
    check_args(args, g)
    device = preflight.device(args.device)
    world = distributed.setup(device)
    rank0 = world.main
    with outputs.output(args.out if rank0 else None) as out:
        data = inputs.load(args, "val", "test")
        X, y, val, test = data.X, data.y, data.extra["val"], data.extra["test"]
        if rank0:
            _announce(args, g, len(y), val)
        result = sweep(X, y, g, **_sweep_kwargs(args, val, test, device))
        if not rank0:
            if result.best is None:
                raise distributed.mark_quiet(RunFailed("every configuration diverged"), world)
            return 0
        _print_result(args, result)
        if out.out is not None:
            _write(args, out, result)
    return 0
