"""`sea extract`: features of a text table or an image folder → .npz with x, y, classes.

    sea extract data/banking77/train.csv --classes data/banking77/categories.json --out train.npz
    sea extract photos/ --out photos.npz              # ImageFolder tree → EfficientNet-Lite0

The .npz is also the cache: it is reused while the inputs and the model match
(`sea_kernels.data.extract.extract_cached`, which writes it atomically).
"""
from __future__ import annotations

import time
from pathlib import Path

from . import arguments, inputs, preflight
from .arguments import integer
from .errors import UsageError

#: Label columns looked for, in order, when --label-column is not given.
LABEL_COLUMNS = ("category", "label", "labels", "intent")


def add_parser(sub):
    """The `extract` subcommand: an input table or folder and the output .npz."""
    x = sub.add_parser("extract", help="features of a text table or an image folder → .npz with "
                                       "x, y, classes (reused while inputs and model match)")
    x.add_argument("input", help=".csv/.tsv (a text column), .txt (one text per line), or an "
                                 "ImageFolder-style folder (one subfolder per class)")
    x.add_argument("--out", required=True, help="output .npz (also the cache)")
    x.add_argument("--text-column", default="text", help="text column of a .csv/.tsv")
    x.add_argument("--label-column", default=None,
                   help=f"label column (default: {' / '.join(LABEL_COLUMNS)} if present)")
    x.add_argument("--classes", default=None, help="class names (JSON list): the label order")
    x.add_argument("--model", default=None,
                   help="a sentence-transformers folder (text) or EfficientNet-Lite0 weights "
                        "(images); default: the packaged MiniLM / EfficientNet-Lite0")
    x.add_argument("--batch-size", type=integer, default=64, help="extraction batch size")
    x.add_argument("--force", action="store_true", help="recompute even when the cache matches")
    arguments.add_progress(x)
    x.set_defaults(func=run)
    return x


def _columns(path: Path, cols, text_column: str, label_column: str | None) -> str | None:
    """Check the text column is there; the label column: the given one, or a usual name."""
    if text_column not in cols:
        raise UsageError(f"{path}: no column {text_column!r} (columns: {', '.join(cols)}); "
                         "name it with --text-column")
    if label_column is None:
        return next((c for c in LABEL_COLUMNS if c in cols), None)
    if label_column not in cols:
        raise UsageError(f"{path}: no column {label_column!r} (columns: {', '.join(cols)}); "
                         "name it with --label-column")
    return label_column


def read_text_table(path: Path, text_column: str, label_column: str | None):
    """(texts, label names or None) of a .txt (one text per line), .csv or .tsv file."""
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
        label_column = _columns(path, list(reader.fieldnames or []), text_column, label_column)
        rows = list(reader)
    if not rows:
        raise UsageError(f"{path}: no rows")
    texts = [r[text_column] or "" for r in rows]
    return texts, ([r[label_column] for r in rows] if label_column else None)


def _images(args, src: Path, out: Path, classes):
    """Extract an image folder; returns (x, a description of what was read)."""
    import numpy as np

    from ..data import extract as ex
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
                          progress=arguments.show_progress(args), force=args.force)
    return x, f"{len(paths)} images, {len(classes)} classes"


def _texts(args, src: Path, out: Path, classes):
    """Extract a text table; returns (x, a description of what was read)."""
    from ..data import extract as ex
    from ..data import files
    texts, names = read_text_table(src, args.text_column, args.label_column)
    labels = None
    if names is not None:
        labels = files.labels_to_indices(names, classes, source=str(src))
        classes = classes if classes is not None else sorted(set(names))
    x = ex.extract_cached("text", texts, out, labels=labels, classes=classes, model=args.model,
                          batch_size=args.batch_size, progress=arguments.show_progress(args),
                          force=args.force)
    return x, f"{len(texts)} texts" + (f", {len(classes)} classes" if labels is not None else "")


def run(args) -> int:
    """Extract (or reuse the cached) features of --input into --out."""
    src, out = Path(args.input), Path(args.out)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    if not src.exists():
        raise UsageError(f"input not found: {src} (a .csv/.tsv/.txt file or an image folder)")
    preflight.check_output_file(out, "--out")
    classes = inputs.read_classes(args.classes)
    t0 = time.perf_counter()
    x, what = (_images if src.is_dir() else _texts)(args, src, out, classes)
    print(f"{out}: x {x.shape[0]}×{x.shape[1]} ({what}) in {time.perf_counter() - t0:.1f} s")
    return 0
