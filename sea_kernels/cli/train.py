"""`sea train`: train one classifier; --out DIR gets model.pt, metrics.json, history.csv and
curves.png.

    sea train features.npz --out run/                 # x_train/y_train; x_test scored when present
    sea train a.npy b.npy --labels y.npy --eta 0.4 --lr 0.5 --out run/
    torchrun --nproc-per-node 2 -m sea_kernels.cli.main train f.npz --batch-size 512 \
        --group-size 256 --out run/     # one model on 2 processes (`sea_kernels.train.distributed`)

From argv to the saved model, each thing once: the parser reads the options (defaults from
`sea_kernels.params`); the device is resolved (auto → cuda or cpu) and checked; the processes are
set up (`train.distributed.session`: the one Run that `fit` then trains in); the estimator is
built and its one parameter check runs (`SeAClassifier.checked_params`); --out and --checkpoint
are checked (an existing checkpoint verified); every input file is read once
(`cli.inputs.load`); `fit` prepares the features once (the train score reuses them) and scores
the test set after every epoch; the summary's accuracies are the last epoch's scores
(`sea_kernels.cli.main` lists the exit status of each kind of error).
"""
from __future__ import annotations

import json
import time

from ..params import AUGMENTS, BACKENDS, BATCH_SIZE, DEFAULTS, EPOCHS, MOMENTUM
from . import arguments, inputs, outputs, preflight
from .arguments import integer, number
from .errors import UsageError


def add_parser(sub):
    """The `train` subcommand and its options (defaults from `sea_kernels.params`)."""
    t = sub.add_parser("train", help="train one classifier (--out DIR: model.pt, metrics.json, "
                                     "history.csv, curves.png)")
    arguments.add_data_args(t, "train")
    arguments.add_set_args(t, "test", "test")
    h = t.add_argument_group("hyper-parameters (defaults: docs/design.md §1)")
    h.add_argument("--augment", default="sea", choices=AUGMENTS,
                   help="SeA, one of its ablations, or a baseline augmentation")
    h.add_argument("--epochs", type=integer, default=EPOCHS, help="training epochs")
    h.add_argument("--batch-size", type=integer, default=BATCH_SIZE, help="mini-batch size")
    h.add_argument("--lr", type=number, default=DEFAULTS["lr"],
                   help=f"SGD learning rate, for a batch of {BATCH_SIZE}")
    h.add_argument("--momentum", type=number, default=MOMENTUM, help="SGD momentum")
    h.add_argument("--weight-decay", "--wd", dest="weight_decay", type=number,
                   default=DEFAULTS["weight_decay"], help="SGD weight decay")
    h.add_argument("--alpha", type=number, default=DEFAULTS["alpha"],
                   help="projection temperature α")
    h.add_argument("--eta", type=number, default=DEFAULTS["eta"],
                   help="augmentation step η; 0 disables it")
    h.add_argument("--lam", type=number, default=DEFAULTS["lam"], help="loss temperature λ")
    h.add_argument("--delta", type=number, default=DEFAULTS["delta"], help="margin δ")
    h.add_argument("--backend", default="auto", choices=BACKENDS, help="fused_sea backend")
    h.add_argument("--group-size", type=integer, default=None,
                   help="SeA projection group: each row is projected onto the other rows of its "
                        "group of this many consecutive rows (default: the whole batch; under "
                        "torchrun it must divide batch-size / world size, default that)")
    arguments.add_device(h)
    h.add_argument("--seed", type=integer, default=0, help="random_state")
    h.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE",
                   help="other SeAClassifier arguments, e.g. --set isda_strength=0.5")
    t.add_argument("--out", default=None, help="output folder")
    t.add_argument("--checkpoint", default=None,
                   help="training-state file, saved every epoch; an existing one is resumed")
    t.add_argument("--no-train-eval", action="store_true",
                   help="do not score the training set after every epoch (no train curve)")
    t.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    arguments.add_progress(t)
    t.set_defaults(func=run)
    return t


def parse_set(pairs) -> dict:
    """--set key=value … → dict (values parsed as JSON when they parse, else kept as strings)."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def plain(d: dict) -> dict:
    """`d` with numpy scalars as Python numbers and anything not JSON-like as its str."""
    import numpy as np
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
    return out


def history_rows(history) -> list[dict]:
    """The per-epoch history as CSV rows: epoch, train_loss, then the numeric entries."""
    import numpy as np
    keep = ("epoch", "train_loss")
    rows = []
    for entry in history:
        row = {k: entry[k] for k in keep if k in entry}
        row.update({k: v for k, v in entry.items() if k not in row
                    and isinstance(v, (int, float, np.integer, np.floating))})
        rows.append(row)
    return rows


def _model(args, device: str):
    """The SeAClassifier of the command line (--set may add or override arguments) on `device`,
    and its one parameter check run (unknown --set keys are a UsageError, bad values the
    estimator's ValueError)."""
    from ..train.estimator import SeAClassifier
    kw = dict(augment=args.augment, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              momentum=args.momentum, weight_decay=args.weight_decay, alpha=args.alpha,
              eta=args.eta, lam=args.lam, delta=args.delta, backend=args.backend,
              random_state=args.seed, device=device, group_size=args.group_size)
    kw.update(parse_set(args.set))
    try:
        model = SeAClassifier(**kw)
    except TypeError as e:
        raise UsageError(f"--set: {e}") from None
    model.checked_params()
    return model


def _print_summary(args, metrics, n, wall):
    """The result lines on stdout: what was trained, train and (when scored) test accuracy."""
    print(f"trained augment={args.augment} (η={args.eta:g}, lr={args.lr:g}) on {n} "
          f"examples, {args.epochs} epochs in {wall:.1f} s")
    print(f"train: top-1 {outputs.pct(metrics['train']['top1'])}, mean per-class "
          f"{outputs.pct(metrics['train']['mean_per_class'])}")
    if "test" in metrics:
        m = metrics["test"]
        print(f"test: top-1 {outputs.pct(m['top1'])}, mean per-class "
              f"{outputs.pct(m['mean_per_class'])} ({m['n']} examples)")


def _write(args, out, model, metrics, plot: bool):
    """model.pt, metrics.json, history.csv and curves.png into the staged --out folder."""
    with out.writing():
        _write_files(args, out, model, metrics, plot)


def _write_files(args, out, model, metrics, plot: bool):
    from ..data import writers
    model.save(out.path("model.pt"))
    writers.write_json(out.path("metrics.json"), metrics)
    rows = history_rows(getattr(model, "history_", None) or [])
    if rows:
        writers.write_csv(out.path("history.csv"), rows)
        if plot:
            from ..plots import plot_curves
            plot_curves({f"{args.augment}, η={args.eta:g}, lr={args.lr:g}": rows},
                        out.path("curves.png"))
    written = out.commit()
    print("wrote " + ", ".join(str(p) for p in written))


def run(args) -> int:
    """Check everything, train, print train/test accuracy, write the outputs (all or nothing).
    Under torchrun every rank trains the one model (`sea_kernels.train.distributed`): the
    processes are set up once here and `fit` trains in that session; only rank 0 checks --out,
    prints and writes, and an error of any rank ends every rank with it."""
    from ..train import distributed
    device = preflight.device(args.device)
    with distributed.session(device) as guard:
        return _run(args, device, guard)


def _run(args, device, guard) -> int:
    from ..train import distributed
    world = guard.world
    preflight.need_matplotlib(args)
    model = _model(args, device)
    resumed = preflight.check_checkpoint(args.checkpoint)
    with outputs.output(args.out if world.main else None) as out:
        data = inputs.load(args, "test")
        X, y, test = data.X, data.y, data.extra["test"]
        eval_set = {}
        if not args.no_train_eval:
            eval_set["train"] = (X, y)
        if test is not None:
            eval_set["test"] = test
        fit_kw = {"checkpoint": args.checkpoint} if args.checkpoint else {}
        t0 = time.perf_counter()
        model.fit(X, y, eval_set=eval_set or None, progress=arguments.show_progress(args), **fit_kw)
        wall = time.perf_counter() - t0
        guard.started = True    # past fit's agreements: an error from here on is rank 0's own
        error = None
        try:
            if world.main:
                _report(args, out, model, X, y, test, eval_set, wall, world,
                        trained=len(model.history_) > resumed)
        except Exception as e:  # noqa: BLE001 — every rank ends with rank 0's error
            error = e
        distributed.agree(world, error)
    return 0


def _scores(model, name: str, X, y, trained: bool) -> dict:
    """top1, mean_per_class and n of the fitted model on (X, y): when this fit trained an epoch,
    the last epoch's scores of the eval set `name` in history_ (fit scored it with the final
    weights); else computed."""
    last = model.history_[-1] if trained else {}
    if f"{name}_top1" in last:
        return {"top1": last[f"{name}_top1"], "mean_per_class": last[f"{name}_mean_per_class"],
                "n": int(len(y))}
    return outputs.metrics(model, X, y)


def _report(args, out, model, X, y, test, eval_set, wall, world, trained: bool):
    """Rank 0: print the summary and write --out."""
    metrics = {"params": plain(model.get_params()), "wall_time_s": wall,
               "world_size": world.size,
               "features": [str(f) for f in args.features],
               "num_classes": int(len(model.classes_)),
               "train": _scores(model, "train", X, y, trained)}
    if test is not None:
        metrics["test"] = _scores(model, "test", *test, trained)
    _print_summary(args, metrics, len(y), wall)
    if out.out is not None:
        _write(args, out, model, metrics, plot=not args.no_plot and bool(eval_set))
