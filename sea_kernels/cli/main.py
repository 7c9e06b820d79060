"""The `sea` command line: train, sweep, eval, extract, bench, info.

    sea train features.npz --out run/                 # x_train/y_train; x_test scored when present
    sea train a.npy b.npy --labels y.npy --eta 0.4 --lr 0.5 --out run/
    sea sweep features.npz --lr 0.25 0.5 1 --eta 0 0.4 0.8 --epochs 30 --out sweep/
    sea eval run/model.pt features.npz                # → JSON: top1, mean_per_class, n
    sea extract data/banking77/train.csv --classes data/banking77/categories.json --out train.npz
    sea extract photos/ --out photos.npz              # ImageFolder tree → EfficientNet-Lite0
    sea bench                                         # benches/run.py when in the checkout
    sea info

Feature files: .npy, .npz, .pt, .safetensors (`sea_kernels.io`); several files for the same
examples are concatenated per example (Eq. 1). In a file holding x_<split>/y_<split> arrays,
``--split`` picks the split (train/sweep: ``train``, eval: ``test``), ``--key`` (or
``FILE:KEY``) names the array; ``--test``/``--val`` take their own files, or default to the
``test``/``val`` split of the features file when it has one.

Every bad input (missing file, label/feature count mismatch, NaN/Inf, one class only, a bad option
or value) ends the command with ONE line ``sea: error: …`` on stderr and exit status 2; a run that
fails (training diverged, every sweep configuration diverged, out of memory) exits with status 1.
Outputs are all-or-nothing: they are written into a hidden staging folder next to ``--out`` and
moved in only when the command succeeded, each file atomically (`sea_kernels.io.atomic_write`).
Set SEA_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
AUGMENTS = ("sea", "none", "adv", "rand", "mixup", "sea_neg", "isda", "me_ada")
BACKENDS = ("auto", "torch", "cpp", "triton")
GRID_PARAMS = ("lr", "weight_decay", "alpha", "lam", "delta", "eta")
# Harmless warnings of the libraries underneath that are not worth a line on the terminal.
_QUIET_WARNINGS = (r"The given NumPy array is not writable",)


class UsageError(ValueError):
    """A bad command line or bad input: exit status 2."""


class RunFailed(RuntimeError):
    """The command ran but failed (e.g. every configuration diverged): exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line `sea: error: …` (exit 2) instead of usage + message."""

    def error(self, message):
        raise UsageError(message)


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _progress(args) -> bool:
    """Progress bars: --progress / --no-progress, else when stderr is a terminal; never without
    tqdm installed."""
    import importlib.util
    p = getattr(args, "progress", None)
    p = sys.stderr.isatty() if p is None else p
    return bool(p) and importlib.util.find_spec("tqdm") is not None


def _device(name: str) -> str:
    """--device: "auto" → cuda when a GPU is visible, else cpu; anything else as given."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:1, …)") \
            from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is visible here")
    return name


def _need_matplotlib(args):
    """Fail before training, not after it, when a plot is asked for and matplotlib is missing."""
    import importlib.util
    if args.out is not None and not args.no_plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("plots need matplotlib: pip install matplotlib (or pass --no-plot)")


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

def _read_classes(spec):
    """Class names from a JSON list ({name: index} also works) or a text file, one per line."""
    if spec is None:
        return None
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"classes file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            classes = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
        if isinstance(classes, dict):
            classes = [k for k, _ in sorted(classes.items(), key=lambda kv: kv[1])]
        if not isinstance(classes, list) or not classes:
            raise UsageError(f"{path}: expected a JSON list of class names")
        return [str(c) for c in classes]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _array_names(spec) -> list[str] | None:
    """Names of the arrays in a named-array file (.npz/.pt dict/.safetensors); None otherwise."""
    from ..data import files
    path, key = files.split_key(spec)
    if key is not None or not path.is_file():
        return None
    ext = path.suffix.lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return list(z.files)
        if ext == ".safetensors":
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                return [k for k in json.loads(f.read(n)) if k != "__metadata__"]
        if ext in (".pt", ".pth"):
            import torch
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return [str(k) for k in obj] if isinstance(obj, dict) else None
    except Exception:
        return None
    return None


def _load(features, labels=None, *, key=None, label_key=None, split=None, classes=None):
    """(X, y) via `sea_kernels.io.load_dataset` (X a list of arrays for several files)."""
    from ..data import files
    return files.load_dataset(features if len(features) > 1 else features[0], labels, key=key,
                            label_key=label_key, split=split, classes=classes)


def _load_main(args):
    classes = _read_classes(args.classes)
    X, y = _load(args.features, args.labels, key=args.key, label_key=args.label_key,
                 split=args.split, classes=classes)
    return X, y, classes


def _load_extra(args, name, classes):
    """(X, y) of `--test` / `--val`, or the `name` split of the main features file(s) when every
    one holds x_<name> (and no --key/--labels pin the main arrays); None when there is none."""
    feats = getattr(args, name)
    labels = getattr(args, f"{name}_labels")
    key = getattr(args, f"{name}_key")
    if feats is None:
        if labels is not None or key is not None:
            raise UsageError(f"--{name}-labels / --{name}-key need --{name} FEATURES")
        if args.key is not None or args.labels is not None or args.split == name:
            return None
        names = [_array_names(f) for f in args.features]
        if all(n is not None and f"x_{name}" in n for n in names):
            return _load(args.features, split=name, classes=classes)
        return None
    return _load(feats, labels, key=key, split=name, classes=classes)


def _dims(X) -> list[int]:
    blocks = X if isinstance(X, (list, tuple)) else [X]
    return [int(np.prod(b.shape[1:])) for b in blocks]


def _check_same_layout(X_ref, X_other, what):
    a, b = _dims(X_ref), _dims(X_other)
    if a != b:
        raise UsageError(f"the {what} features have block widths {b}, the training features {a}; "
                         "give the same feature files in the same order")


# ----------------------------------------------------------------------------------------------
# all-or-nothing output folder
# ----------------------------------------------------------------------------------------------

class _Output:
    """Files are written into a hidden staging folder beside ``out``; `commit` moves them in.

    On failure the staging folder is removed and ``out`` is left exactly as it was (absent, or
    with its previous content)."""

    def __init__(self, out):
        self.out = None if out is None else Path(out)
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out} exists and is not a folder")
        self.stage = None
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        if self.stage is None:
            parent = self.out.parent
            parent.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp",
                                               dir=parent))
        self.names.append(name)
        return self.stage / name

    def commit(self) -> list[Path]:
        if self.stage is None:
            return []
        self.out.mkdir(parents=True, exist_ok=True)
        done = []
        for name in self.names:
            src = self.stage / name
            if src.exists():
                os.replace(src, self.out / name)
                done.append(self.out / name)
        shutil.rmtree(self.stage, ignore_errors=True)
        self.stage = None
        return done

    def discard(self):
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None


@contextlib.contextmanager
def _output(out):
    o = _Output(out)
    try:
        yield o
    finally:
        o.discard()


# ----------------------------------------------------------------------------------------------
# models, metrics, histories
# ----------------------------------------------------------------------------------------------

def _metrics(model, X, y) -> dict:
    from ..train.metrics import mean_per_class, top1
    pred = np.asarray(model.predict(X))
    y = np.asarray(y)
    return {"top1": top1(pred, y), "mean_per_class": mean_per_class(pred, y), "n": int(len(y))}


def _save_model(model, path: Path):
    model.save(path)


def _load_model(path):
    from ..train.estimator import SeAClassifier
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        return SeAClassifier.load(path)
    except Exception as e:
        raise UsageError(f"cannot load the model {path} (is it a model.pt written by `sea train` "
                         f"or `sea sweep`?): {type(e).__name__}: {e}") from None


def _plain(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
    return out


def _parse_set(pairs) -> dict:
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


def _history_rows(history) -> list[dict]:
    keep = ("epoch", "train_loss")
    rows = []
    for entry in history:
        row = {k: entry[k] for k in keep if k in entry}
        row.update({k: v for k, v in entry.items() if k not in row
                    and isinstance(v, (int, float, np.integer, np.floating))})
        rows.append(row)
    return rows


def _pct(v) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


# ----------------------------------------------------------------------------------------------
# sea train
# ----------------------------------------------------------------------------------------------

def cmd_train(args):
    from ..data import writers
    from ..train.estimator import SeAClassifier

    _need_matplotlib(args)
    with _output(args.out) as out:
        X, y, classes = _load_main(args)
        test = _load_extra(args, "test", classes)
        if test is not None:
            _check_same_layout(X, test[0], "test")
        kw = dict(augment=args.augment, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  momentum=args.momentum, weight_decay=args.weight_decay, alpha=args.alpha,
                  eta=args.eta, lam=args.lam, delta=args.delta, backend=args.backend,
                  random_state=args.seed, device=_device(args.device))
        kw.update(_parse_set(args.set))
        try:
            model = SeAClassifier(**kw)
        except TypeError as e:
            raise UsageError(f"--set: {e}") from None
        eval_set = {}
        if not args.no_train_eval:
            eval_set["train"] = (X, y)
        if test is not None:
            eval_set["test"] = test
        fit_kw = {}
        if args.checkpoint:
            fit_kw["checkpoint"] = args.checkpoint
        t0 = time.perf_counter()
        model.fit(X, y, eval_set=eval_set or None, progress=_progress(args), **fit_kw)
        wall = time.perf_counter() - t0
        metrics = {"params": _plain(model.get_params()), "wall_time_s": wall,
                   "features": [str(f) for f in args.features],
                   "num_classes": int(len(model.classes_)),
                   "train": _metrics(model, X, y)}
        if test is not None:
            metrics["test"] = _metrics(model, *test)
        print(f"trained augment={args.augment} (η={args.eta:g}, lr={args.lr:g}) on {len(y)} "
              f"examples, {args.epochs} epochs in {wall:.1f} s")
        print(f"train: top-1 {_pct(metrics['train']['top1'])}, mean per-class "
              f"{_pct(metrics['train']['mean_per_class'])}")
        if test is not None:
            print(f"test: top-1 {_pct(metrics['test']['top1'])}, mean per-class "
                  f"{_pct(metrics['test']['mean_per_class'])} ({metrics['test']['n']} examples)")
        if out.out is not None:
            _save_model(model, out.path("model.pt"))
            writers.write_json(out.path("metrics.json"), metrics)
            rows = _history_rows(getattr(model, "history_", None) or [])
            if rows:
                writers.write_csv(out.path("history.csv"), rows)
                if not args.no_plot and eval_set:
                    from ..train.plots import plot_curves
                    plot_curves({f"{args.augment}, η={args.eta:g}, lr={args.lr:g}": rows},
                                out.path("curves.png"))
            written = out.commit()
            print("wrote " + ", ".join(str(p) for p in written))
    return 0


# ----------------------------------------------------------------------------------------------
# sea sweep
# ----------------------------------------------------------------------------------------------

def _grid(args) -> dict:
    """The grid of a `sea sweep` command line: the base grid (``--grid paper``, the default: the
    paper's 1,728 configurations; ``--grid defaults``: one value per parameter, DESIGN.md §1), with
    every axis given on the command line replacing the base one."""
    from ..params import DEFAULTS, PAPER_GRID
    base = PAPER_GRID if args.grid == "paper" else {k: [v] for k, v in DEFAULTS.items()}
    grid = {k: list(base[k]) for k in GRID_PARAMS}
    for k in GRID_PARAMS:
        values = getattr(args, k)
        if values is not None:
            grid[k] = list(dict.fromkeys(values))     # keep order, drop repeats
    return grid


def cmd_sweep(args):
    from ..train.sweep import sweep

    grid = _grid(args)
    _need_matplotlib(args)
    with _output(args.out) as out:
        X, y, classes = _load_main(args)
        val = _load_extra(args, "val", classes)
        test = _load_extra(args, "test", classes)
        for what, s in (("validation", val), ("test", test)):
            if s is not None:
                _check_same_layout(X, s[0], what)
        n_configs = int(np.prod([len(v) for v in grid.values()]))
        axes = " × ".join(f"{k} {len(v)}" for k, v in grid.items() if len(v) > 1) or "one"
        print(f"sweep: {n_configs} configurations ({axes}; base grid: {args.grid}) × "
              f"{args.epochs} epochs on {len(y)} examples; "
              + (f"validation: {len(val[1])} given examples" if val is not None else
                 f"validation: a stratified {args.val_fraction:g} hold-out"), flush=True)
        kw = dict(val_fraction=args.val_fraction, epochs=args.epochs, batch_size=args.batch_size,
                  random_state=args.seed, backend=args.backend, metric=args.metric,
                  retrain=not args.no_retrain, progress=_progress(args),
                  device=_device(args.device))
        if val is not None:
            kw.update(X_val=val[0], y_val=val[1])
        if test is not None:
            kw.update(X_test=test[0], y_test=test[1])
        result = sweep(X, y, grid, **kw)
        print(result.table(args.top))
        if result.best is None:
            raise RunFailed("every configuration diverged; lower the learning rates (--lr)")
        best = ", ".join(f"{k}={v:g}" for k, v in result.best.items())
        print(f"best on validation: {best} (validation {args.metric} {_pct(result.best_val)})")
        if result.test_top1 is not None:
            how = ("the sweep's own winner, trained without the validation rows" if args.no_retrain
                   else "retrained on train + validation")
            print(f"test ({how}): top-1 {_pct(result.test_top1)}, mean per-class "
                  f"{_pct(result.test_mean_per_class)}")
        if out.out is not None:
            result.to_json(out.path("sweep.json"))
            result.to_csv(out.path("sweep.csv"))
            if not args.no_plot:
                from ..train.plots import plot_heatmap
                plot_heatmap(result, out.path("heatmap.png"), x=args.heatmap_x, y=args.heatmap_y)
            if result.model is not None:
                _save_model(result.model, out.path("model.pt"))
            written = out.commit()
            print("wrote " + ", ".join(str(p) for p in written))
    return 0


# ----------------------------------------------------------------------------------------------
# sea eval
# ----------------------------------------------------------------------------------------------

def cmd_eval(args):
    from ..data import writers

    model = _load_model(args.model)
    X, y, _ = _load_main(args)
    dims = getattr(model, "feature_dims_", None)
    if dims is not None and list(dims) != _dims(X):
        raise UsageError(f"the model was trained on feature blocks of widths {list(dims)}, these "
                         f"features have {_dims(X)}")
    m = _metrics(model, X, y)
    m.update(model=str(args.model), features=[str(f) for f in args.features])
    print(json.dumps(m, indent=2))
    if args.out:
        writers.write_json(args.out, m)
    return 0


# ----------------------------------------------------------------------------------------------
# sea extract
# ----------------------------------------------------------------------------------------------

def _read_text_table(path: Path, text_column: str, label_column: str | None):
    import csv
    ext = path.suffix.lower()
    if ext == ".txt":
        with path.open(encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f if line.strip()], None
    if ext not in (".csv", ".tsv"):
        raise UsageError(f"{path}: unknown text file extension {ext!r} (expected .csv, .tsv, .txt, "
                         "or an image folder)")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ",")
        cols = list(reader.fieldnames or [])
        if text_column not in cols:
            raise UsageError(f"{path}: no column {text_column!r} (columns: {', '.join(cols)}); "
                             "name it with --text-column")
        if label_column is None:
            label_column = next((c for c in ("category", "label", "labels", "intent")
                                 if c in cols), None)
        elif label_column not in cols:
            raise UsageError(f"{path}: no column {label_column!r} (columns: {', '.join(cols)}); "
                             "name it with --label-column")
        rows = list(reader)
    if not rows:
        raise UsageError(f"{path}: no rows")
    texts = [r[text_column] or "" for r in rows]
    return texts, ([r[label_column] for r in rows] if label_column else None)


def cmd_extract(args):
    from ..data import extract as ex
    from ..data import files

    src, out = Path(args.input), Path(args.out)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    if not src.exists():
        raise UsageError(f"input not found: {src} (a .csv/.tsv/.txt file or an image folder)")
    classes = _read_classes(args.classes)
    t0 = time.perf_counter()
    if src.is_dir():
        paths, labels, folder_classes = ex.list_image_folder(src)
        if classes is not None:
            missing = sorted(set(folder_classes) - set(classes))
            if missing:
                raise UsageError(f"{src}: class folders not in --classes: {', '.join(missing[:5])}")
            index = {c: i for i, c in enumerate(classes)}
            labels = np.asarray([index[folder_classes[i]] for i in labels], dtype=np.int64)
        else:
            classes = folder_classes
        x = ex.extract_cached("image", paths, out, labels=labels, classes=classes,
                              model=args.model, batch_size=args.batch_size,
                              progress=_progress(args), force=args.force)
        what = f"{len(paths)} images, {len(classes)} classes"
    else:
        texts, names = _read_text_table(src, args.text_column, args.label_column)
        labels = None
        if names is not None:
            labels = files.labels_to_indices(names, classes, source=str(src))
            classes = classes if classes is not None else sorted(set(names))
        x = ex.extract_cached("text", texts, out, labels=labels, classes=classes, model=args.model,
                              batch_size=args.batch_size, progress=_progress(args),
                              force=args.force)
        what = f"{len(texts)} texts" + (f", {len(classes)} classes" if labels is not None else "")
    print(f"{out}: x {x.shape[0]}×{x.shape[1]} ({what}) in {time.perf_counter() - t0:.1f} s")
    return 0


# ----------------------------------------------------------------------------------------------
# sea bench / sea info
# ----------------------------------------------------------------------------------------------

def _bench_script() -> Path | None:
    path = Path(__file__).resolve().parents[1] / "benches" / "run.py"
    return path if path.is_file() else None


def cmd_bench(args, rest):
    script = None if args.builtin else _bench_script()
    if script is not None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("_sea_benches_run", script)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        # The script's own argparse errors (usage + message) become one `sea: error:` line.
        import io as _io
        err = _io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = mod.main(rest)
        except SystemExit as e:
            lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
            if e.code not in (0, None) and lines and ": error: " in lines[-1]:
                raise UsageError(f"bench: {lines[-1].split(': error: ', 1)[1]}") from None
            sys.stderr.write(err.getvalue())
            raise
        sys.stderr.write(err.getvalue())
        return int(code or 0)
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    return _builtin_bench(args.shape, args.repeats)


def _builtin_bench(shape: str, repeats: int) -> int:
    """Median time of one training step (loss + dW) per usable backend, interleaved."""
    import statistics

    import torch

    from .. import backend_status, fused_sea, reference

    try:
        b, d, c = (int(v) for v in shape.split(","))
    except ValueError:
        raise UsageError(f"--shape must be b,d,C (three integers), got {shape!r}") from None
    if min(b, d, c) < 1 or c < 2:
        raise UsageError(f"--shape needs b, d ≥ 1 and C ≥ 2, got {shape!r}")
    if repeats < 1:
        raise UsageError(f"--repeats must be ≥ 1, got {repeats}")
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, c, (b,), generator=g)
    w0 = torch.randn(d, c, generator=g) * 3 / d ** 0.5
    cands = {"reference": lambda w: reference.sea_loss(x, y, w)}
    for name, (usable, _) in backend_status().items():
        if usable and not (name == "triton" and not torch.cuda.is_available()):
            cands[name] = lambda w, n=name: fused_sea(x, y, w, backend=n)

    def step(fn):
        w = w0.clone().requires_grad_(True)
        fn(w).backward()

    for fn in cands.values():
        step(fn)
    times = {k: [] for k in cands}
    for _ in range(repeats):
        for k, fn in cands.items():
            t0 = time.perf_counter()
            step(fn)
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["reference"])
    print(f"one SeA step (loss + dW), b={b} d={d} C={c}, float32, {torch.get_num_threads()} "
          f"threads, median of {repeats} (interleaved)")
    print(f"{'candidate':12} {'ms/step':>9} {'speed-up':>9}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:12} {1e3 * med:9.3f} {base / med:8.2f}×")
    return 0


def cmd_info(args):
    from ..op.dispatch import info
    info()
    return 0


# ----------------------------------------------------------------------------------------------
# parser and main
# ----------------------------------------------------------------------------------------------

def _add_data_args(p, split_default: str):
    p.add_argument("features", nargs="+",
                   help="feature file(s): .npy .npz .pt .safetensors; several files for the same "
                        "examples are concatenated per example; FILE:KEY selects an array")
    p.add_argument("--labels", default=None,
                   help="labels file (.npy/.npz/.pt/.safetensors/.txt/.csv); default: y or "
                        "y_<split> in the features file")
    p.add_argument("--key", default=None, help="features array name (e.g. x_train)")
    p.add_argument("--label-key", default=None, help="labels array name (e.g. y_train)")
    p.add_argument("--split", default=split_default,
                   help=f"use x_<split>/y_<split> when the file has them (default: {split_default})")
    p.add_argument("--classes", default=None,
                   help="class names (JSON list or one per line): their order is the label index "
                        "of name labels")


def _add_set_args(p, name: str, what: str):
    p.add_argument(f"--{name}", nargs="+", default=None, metavar="FEATURES",
                   help=f"{what} feature file(s) (default: the {name} split of the features file "
                        "when it has one)")
    p.add_argument(f"--{name}-labels", default=None, help=f"{what} labels file")
    p.add_argument(f"--{name}-key", default=None, help=f"{what} features array name")


def _add_progress(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sea", description="Semantic Adversarial Augmentation (SeA, ECCV 2024) for "
                                        "linear classifiers on fixed deep features.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train one classifier (--out DIR: model.pt, metrics.json, "
                                     "history.csv, curves.png)")
    _add_data_args(t, "train")
    _add_set_args(t, "test", "test")
    h = t.add_argument_group("hyper-parameters (defaults: DESIGN.md §1, the paper's)")
    h.add_argument("--augment", default="sea", choices=AUGMENTS)
    h.add_argument("--epochs", type=_integer, default=100)
    h.add_argument("--batch-size", type=_integer, default=256)
    h.add_argument("--lr", type=_number, default=1.6, help="learning rate (1.6 at batch 256)")
    h.add_argument("--momentum", type=_number, default=0.9)
    h.add_argument("--weight-decay", "--wd", dest="weight_decay", type=_number, default=1e-6)
    h.add_argument("--alpha", type=_number, default=0.01, help="projection temperature α")
    h.add_argument("--eta", type=_number, default=0.8, help="augmentation step η (0: none)")
    h.add_argument("--lam", type=_number, default=0.1, help="loss temperature λ")
    h.add_argument("--delta", type=_number, default=0.0, help="margin δ")
    h.add_argument("--backend", default="auto", choices=BACKENDS)
    h.add_argument("--device", default="auto", help="auto (cuda when visible, else cpu), cpu, cuda")
    h.add_argument("--seed", type=_integer, default=0, help="random_state")
    h.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE",
                   help="other SeAClassifier arguments, e.g. --set isda_strength=0.5")
    t.add_argument("--out", default=None, help="output folder")
    t.add_argument("--checkpoint", default=None,
                   help="training-state file, saved every epoch; an existing one is resumed")
    t.add_argument("--no-train-eval", action="store_true",
                   help="do not score the training set after every epoch (no train curve)")
    t.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    _add_progress(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sweep", help="train a hyper-parameter grid in one pass, pick on validation, "
                                     "retrain (--out DIR: sweep.json, sweep.csv, heatmap.png, "
                                     "model.pt)")
    _add_data_args(s, "train")
    _add_set_args(s, "val", "validation")
    _add_set_args(s, "test", "test")
    g = s.add_argument_group("grid (each option replaces that axis of the base grid)")
    g.add_argument("--grid", default="paper", choices=("paper", "defaults"),
                   help="base grid: the paper's 1,728 configurations (default), or one value per "
                        "parameter (the defaults)")
    g.add_argument("--lr", nargs="+", type=_number, default=None)
    g.add_argument("--wd", "--weight-decay", dest="weight_decay", nargs="+", type=_number,
                   default=None)
    g.add_argument("--alpha", nargs="+", type=_number, default=None)
    g.add_argument("--lam", nargs="+", type=_number, default=None)
    g.add_argument("--delta", nargs="+", type=_number, default=None)
    g.add_argument("--eta", nargs="+", type=_number, default=None)
    s.add_argument("--val-fraction", type=_number, default=0.2,
                   help="stratified validation hold-out when there is no --val (default 0.2)")
    s.add_argument("--epochs", type=_integer, default=100)
    s.add_argument("--batch-size", type=_integer, default=256)
    s.add_argument("--seed", type=_integer, default=0)
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="fused_sea backend of the retrained winner")
    s.add_argument("--device", default="auto", help="auto (cuda when visible, else cpu), cpu, cuda")
    s.add_argument("--metric", default="top1", choices=("top1", "mean_per_class"))
    s.add_argument("--no-retrain", action="store_true",
                   help="score the sweep's own winner on test instead of refitting it on "
                        "train + validation")
    s.add_argument("--top", type=_integer, default=10, help="configurations to print")
    s.add_argument("--heatmap-x", default="lr", choices=GRID_PARAMS)
    s.add_argument("--heatmap-y", default="eta", choices=GRID_PARAMS)
    s.add_argument("--no-plot", action="store_true", help="do not write heatmap.png")
    s.add_argument("--out", default=None, help="output folder")
    _add_progress(s)
    s.set_defaults(func=cmd_sweep)

    e = sub.add_parser("eval", help="top-1 and mean per-class accuracy of a saved model, as JSON")
    e.add_argument("model", help="model.pt from `sea train` / `sea sweep`")
    _add_data_args(e, "test")
    e.add_argument("--out", default=None, help="also write the JSON to this file")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("extract", help="features of a text table or an image folder → .npz with "
                                       "x, y, classes (reused while inputs and model match)")
    x.add_argument("input", help=".csv/.tsv (a text column), .txt (one text per line), or an "
                                 "ImageFolder-style folder (one subfolder per class)")
    x.add_argument("--out", required=True, help="output .npz (also the cache)")
    x.add_argument("--text-column", default="text")
    x.add_argument("--label-column", default=None,
                   help="label column (default: category / label / labels / intent if present)")
    x.add_argument("--classes", default=None, help="class names (JSON list): the label order")
    x.add_argument("--model", default=None,
                   help="a sentence-transformers folder (text) or EfficientNet-Lite0 weights "
                        "(images); default: the packaged MiniLM / EfficientNet-Lite0")
    x.add_argument("--batch-size", type=_integer, default=64)
    x.add_argument("--force", action="store_true", help="recompute even when the cache matches")
    _add_progress(x)
    x.set_defaults(func=cmd_extract)

    b = sub.add_parser("bench", help="the benchmark table (benches/run.py when in the checkout, its "
                                     "options pass through), else a small built-in timing")
    b.add_argument("--builtin", action="store_true", help="the built-in timing")
    b.add_argument("--shape", default="256,1280,10", help="built-in: b,d,C")
    b.add_argument("--repeats", type=_integer, default=10, help="built-in: timed repeats")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="versions and usable backends")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    """Run `sea`; returns the exit status: 0 ok, 2 bad input, 1 the run failed."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    # Warnings are collected and printed after the command, one line each ("sea: warning: …");
    # when the command fails only its error line is printed.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            if argv and argv[0] == "bench":
                args, rest = parser.parse_known_args(argv)
                code = args.func(args, rest)
            else:
                args = parser.parse_args(argv)
                code = args.func(args)
        except SystemExit as e:      # --help, or a bench script's own exit
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            print("sea: error: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 — every failure becomes one line
            return _report(e)
    seen = set()
    for w in caught:
        msg = " ".join(str(w.message).split())
        if msg not in seen:
            seen.add(msg)
            print(f"sea: warning: {msg}", file=sys.stderr)
    return code


def _report(e: BaseException) -> int:
    name = type(e).__name__
    if name == "TrainingDiverged" or isinstance(e, (RunFailed, MemoryError)):
        code = EXIT_FAILURE
    elif isinstance(e, (ValueError, TypeError, KeyError, ImportError, FileNotFoundError,
                        IsADirectoryError, NotADirectoryError, PermissionError)):
        code = EXIT_BAD_INPUT
    else:   # RuntimeError (e.g. out of memory in torch), OSError (disk full), anything else
        code = EXIT_FAILURE
    msg = " ".join(str(e).split()) or name
    if isinstance(e, KeyError):
        msg = f"missing key {msg}"
    elif code == EXIT_FAILURE and name not in ("TrainingDiverged", "RunFailed"):
        msg = f"{name}: {msg}"
    if os.environ.get("SEA_DEBUG"):
        import traceback
        traceback.print_exc()
    print(f"sea: error: {msg}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
