"""`sea compare`: every method selected on validation, refitted and tested once per seed; mean ±
std, 95% intervals and the paired differences to the baseline (`none`, the linear probe).

    sea compare features.npz --methods none sea mixup --seeds 3 --epochs 30 --out cmp/
    sea compare train.npz --test test.npz --lr 0.5 1 2 --eta 0 0.2 0.4 --seeds 0 7 11

--seeds K runs seeds 0…K−1; several numbers are those seeds. The seed drives the validation split
(unless --val is given) and the training shuffles, the same for every method. Candidates: the
grid axes (--lr, --wd, --alpha, --lam, --delta, --eta, as in `sea sweep`; none and sea from one
sweep pass, η = 0 rows for none, η > 0 for sea), --adv-eta for adv and --me-ada-lr (ME-ADA's
ascent step); each other method is one SeAClassifier fit per candidate
(`sea_kernels.compare`). The grid follows the rule of `sea sweep`: with no axis given,
DEFAULT_GRID (lr 0.25–4 × λ 0.1, 1 × η 0–0.8); an axis given replaces its axis and the others
take their one default (params.DEFAULTS), unless ``--grid compare|paper`` names the base grid;
its size is printed before any training. --out DIR gets compare.json and compare.png. Every
option, the candidates, the device, --out and every data set are checked before any training.

--head mlp: every method trains the MLP probe (frozen features → Linear(d, 512) → GELU →
SeALinear(512, C), end to end; `sea_kernels.train.mlp`) instead of the linear probe: --methods
none sea (the default then) give the rows mlp_ce (η = 0, cross-entropy; the baseline), mlp_sea
(the best η > 0 of --eta) and linear_sea (the linear SeA probe, selected as `sea` is with the
linear head), and the paired differences mlp_sea − mlp_ce and mlp_sea − linear_sea. --mlp-lr:
the MLP's AdamW learning rates (default: 0.003 0.01).

    sea compare data/banking77/minilm-features.npz --head mlp --seeds 3 --epochs 20
"""
from __future__ import annotations

from ..params import (
    AUGMENTS,
    BACKENDS,
    BATCH_SIZE,
    COMPARE_GRID,
    COMPARE_METHODS,
    COMPARE_MLP_LRS,
    EPOCHS,
    HEADS,
    METRICS,
    VAL_FRACTION,
)
from . import arguments, inputs, outputs, preflight
from .arguments import integer, number
from .errors import RunFailed, UsageError
from .sweep import GRIDS as _SWEEP_GRIDS

#: The base grids `--grid` names: compare's own (DEFAULT_GRID) and those of `sea sweep`.
GRIDS = ("compare", *_SWEEP_GRIDS)

#: Shown in --help: params.COMPARE_METHODS and the axes of params.COMPARE_GRID, as text.
_DEFAULTS_HELP = {"methods": " ".join(COMPARE_METHODS),
                  **{k: " ".join(format(v, "g") for v in vals)
                     for k, vals in COMPARE_GRID.items()}}


def add_parser(sub):
    """The `compare` subcommand."""
    s = sub.add_parser("compare", help="compare methods over several seeds: per-method mean ± "
                                       "std and 95%% interval, paired differences to the "
                                       "baseline (--out DIR: compare.json, compare.png)")
    arguments.add_data_args(s, "train")
    arguments.add_set_args(s, "val", "validation")
    arguments.add_set_args(s, "test", "test")
    s.add_argument("--methods", nargs="+", choices=AUGMENTS, default=None, metavar="METHOD",
                   help=f"methods to compare, 'none' (the baseline) among them; from "
                        f"{', '.join(AUGMENTS)} (default: {_DEFAULTS_HELP['methods']})")
    s.add_argument("--head", default=HEADS[0], choices=HEADS,
                   help="the classifier on the features: linear (the paper's probe) or mlp "
                        "(Linear(d, 512) → GELU → SeALinear, trained end to end; methods none "
                        "sea, and the linear SeA probe as a third row)")
    s.add_argument("--seeds", nargs="+", type=integer, default=[3], metavar="N",
                   help="one number K: seeds 0…K−1; several numbers: those seeds (default: 3)")
    g = s.add_argument_group("candidates (axes as in `sea sweep`: with no axis given, compare's "
                             "grid; an axis given replaces its axis, the others take their one "
                             "default unless --grid names a base grid)")
    g.add_argument("--grid", default=None, choices=GRIDS,
                   help="base grid of the axes not given: compare (lr × λ × η below; default "
                        "when no axis is given), paper (the paper's search) or defaults (one "
                        "value per axis; default when an axis is given)")
    axes = {k: v for k, v in _DEFAULTS_HELP.items() if k != "methods"}
    arguments.add_axis_args(g, "compare", axes,
                            extra={"eta": "none takes η = 0, sea, sea_neg, mixup and rand the "
                                       "values > 0"})
    g.add_argument("--adv-eta", nargs="+", type=number, default=None,
                   help="η of adv, the raw gradient step (default: 0.2 1)")
    g.add_argument("--me-ada-lr", nargs="+", type=number, default=None,
                   help="ME-ADA's feature-space ascent steps (default: 0.003 0.001 0.0003)")
    g.add_argument("--mlp-lr", nargs="+", type=number, default=None,
                   help="--head mlp: the MLP's AdamW learning rates (default: "
                        f"{' '.join(format(v, 'g') for v in COMPARE_MLP_LRS)})")
    s.add_argument("--val-fraction", type=number, default=VAL_FRACTION,
                   help="stratified validation hold-out per seed when there is no --val")
    s.add_argument("--epochs", type=integer, default=EPOCHS, help="training epochs")
    s.add_argument("--group-size", type=integer, default=None,
                   help="rows per SeA group in every batch, for every method's fits "
                        "(default: the whole batch, the paper)")
    s.add_argument("--batch-size", type=integer, default=BATCH_SIZE, help="mini-batch size")
    s.add_argument("--metric", default=METRICS[0], choices=METRICS,
                   help="selection metric on validation")
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="fused_sea backend of every SeAClassifier fit")
    arguments.add_device(s)
    s.add_argument("--no-plot", action="store_true", help="do not write compare.png")
    s.add_argument("--out", default=None, help="output folder")
    arguments.add_progress(s)
    s.set_defaults(func=run)
    return s


def base_and_grid(args) -> tuple[str, dict]:
    """(base grid name, candidates) of a `sea compare` command line, by the rule of `sea sweep`
    (`sweeps.grid.command_line_grid`): --grid NAME when named; else DEFAULT_GRID ("compare") when
    no axis is given; else the axes given, every other axis at its one default. --adv-eta (adv's
    η) and --me-ada-lr (ME-ADA's steps) are added; they are no grid axes."""
    from ..compare import DEFAULT_GRID
    from ..sweeps.grid import BASE_GRIDS, command_line_grid
    name, out = command_line_grid(arguments.given_axes(args), args.grid, default="compare",
                                  bases={"compare": DEFAULT_GRID, **BASE_GRIDS})
    if args.me_ada_lr is not None:
        out["me_ada_lr"] = list(dict.fromkeys(args.me_ada_lr))
    if args.adv_eta is not None:
        out["adv"] = {"eta": list(dict.fromkeys(args.adv_eta))}
    if args.mlp_lr is not None:
        out["mlp_lr"] = list(dict.fromkeys(args.mlp_lr))
    return name, out


def grid(args) -> dict:
    """The candidates of a `sea compare` command line (`base_and_grid`)."""
    return base_and_grid(args)[1]


def seeds(args):
    """--seeds: one number is a count, several are the seeds."""
    return args.seeds[0] if len(args.seeds) == 1 else list(args.seeds)


def methods(args) -> list:
    """--methods; by default DEFAULT_METHODS, or none sea with --head mlp."""
    from ..compare import DEFAULT_METHODS, MLP_METHODS
    return list(args.methods or (MLP_METHODS if args.head == "mlp" else DEFAULT_METHODS))


def check_args(args, device: str):
    """Every option that is not data, checked by compare()'s own check (`compare.plan`:
    ValueError / ParameterError naming it) before any data is read; returns the `Plan`."""
    from ..compare import plan
    if args.adv_eta is not None and "adv" not in methods(args):
        raise UsageError("--adv-eta is for the method adv; add it to --methods")
    if args.me_ada_lr is not None and "me_ada" not in methods(args):
        raise UsageError("--me-ada-lr is for the method me_ada; add it to --methods")
    if args.mlp_lr is not None and args.head != "mlp":
        raise UsageError("--mlp-lr is for the MLP probe; add --head mlp")
    return plan(methods(args), seeds(args), grid(args), epochs=args.epochs,
                batch_size=args.batch_size, metric=args.metric, backend=args.backend,
                device=device, val_fraction=args.val_fraction, group_size=args.group_size,
                head=args.head)


def _announce(args, p, n, val, n_test):
    """The first line: methods and candidates per seed, seeds, epochs, the data sets."""
    parts = []
    for m in p.methods:
        k = p.n_candidates(m)
        parts.append(f"{m} {'(anchored)' if k is None else k}")
    how = ("validation: " + (f"{len(val[1])} given examples" if val is not None else
                             f"a stratified {args.val_fraction:g} hold-out per seed"))
    print(f"compare: {len(p.methods)} methods (candidates per seed: {', '.join(parts)}) × "
          f"{len(p.seeds)} seeds ({', '.join(map(str, p.seeds))}) × {args.epochs} epochs on "
          f"{n} examples; {how}; test: {n_test} examples", flush=True)
    from ..sweeps.grid import describe_grid
    name, g = base_and_grid(args)
    print(f"grid: {describe_grid(g)} from base grid {name}", flush=True)
    if args.head == "mlp":
        from ..params import MLP_DEFAULTS
        lrs = " ".join(format(v, "g") for v in g.get("mlp_lr", COMPARE_MLP_LRS))
        print(f"mlp head: Linear(d, {MLP_DEFAULTS['hidden']}) → GELU → SeALinear, "
              f"{MLP_DEFAULTS['optimizer']} lr {lrs} (cosine to 0), weight decay "
              f"{MLP_DEFAULTS['weight_decay']:g}; the linear SeA row from the grid above",
              flush=True)


def _line(r):
    """One line per finished run (when there are no progress bars)."""
    from ..compare import fmt_params
    what = (fmt_params(r["params"], r.get("varied")) if r["params"] is not None
            else f"failed ({r['error']})")
    print(f"  seed {r['seed']} {r['method']}: {what}; test top-1 {outputs.pct(r['test_top1'])} "
          f"({r['select_s'] + r['fit_s']:.1f} s)", flush=True)


def _write(args, out, result):
    """compare.json and compare.png into the staged --out folder, then moved in."""
    with out.writing():
        result.to_json(out.path("compare.json"))
        if not args.no_plot:
            result.plot(out.path("compare.png"))
        written = out.commit()
    print("wrote " + ", ".join(str(p) for p in written))


def run(args) -> int:
    """Compare the methods over the seeds, print the tables, write the outputs (all or nothing)."""
    import math

    from ..compare import compare

    preflight.need_matplotlib(args)
    device = preflight.device(args.device)
    p = check_args(args, device)
    with outputs.output(args.out) as out:
        data = inputs.load(args, "val", "test")
        X, y, val, test = data.X, data.y, data.extra["val"], data.extra["test"]
        if test is None:
            raise UsageError("sea compare needs a test set: --test FEATURES, or a features file "
                             "holding x_test/y_test")
        _announce(args, p, len(y), val, len(test[1]))
        kw = {} if val is None else {"X_val": val[0], "y_val": val[1]}
        result = compare(X, y, methods=methods(args), seeds=p.seeds, grid=grid(args),
                         X_test=test[0], y_test=test[1], val_fraction=args.val_fraction,
                         epochs=args.epochs, batch_size=args.batch_size, metric=args.metric,
                         backend=args.backend, device=device, group_size=args.group_size,
                         head=args.head,
                         progress=True if arguments.show_progress(args) else _line, **kw)
        print()
        print(result.table())
        if not any(math.isfinite(r["test_top1"]) for r in result.runs):
            raise RunFailed("every run diverged; lower the learning rates (--lr)")
        if out.out is not None:
            _write(args, out, result)
    return 0
