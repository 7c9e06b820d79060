"""Reading a command's inputs through `sea_kernels.data.files`, each file once: the class names,
the main data set (the positional features and --labels/--key/--split/--classes) and a second
one (--test / --val, or that split of the main files), and the check that both have the same
feature layout."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError


def read_classes(spec):
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


@dataclass
class Data:
    """What a command reads: the main data set (X one array or a list of blocks, y, the class
    names of --classes) and each second data set asked for (name → (X, y), None when absent)."""
    X: Any
    y: Any
    classes: list | None
    extra: dict = field(default_factory=dict)


#: How an error names each second data set.
_WHAT = {"test": "test", "val": "validation"}


def load(args, *extra: str) -> Data:
    """The positional features with --labels/--key/--split/--classes, and each of `extra`
    ("test", "val": `_second_set`), every file read once (`data.files.FeatureFiles`); UsageError
    when a second set's feature blocks differ from the main set's."""
    from ..data.files import FeatureFiles
    classes = read_classes(args.classes)
    main = FeatureFiles(args.features)
    X, y = main.dataset(args.labels, key=args.key, label_key=args.label_key, split=args.split,
                        classes=classes)
    sets = {name: _second_set(args, name, classes, main) for name in extra}
    for name, s in sets.items():
        if s is not None:
            check_same_layout(X, s[0], _WHAT.get(name, name))
    return Data(X, y, classes, sets)


def _second_set(args, name: str, classes, main):
    """(X, y) of `--test` / `--val`, or the `name` split of the main features files when every
    one holds x_<name> (and no --key/--labels pin the main arrays): taken from the files already
    open in `main`; None when there is none."""
    from ..data.files import load_dataset
    feats = getattr(args, name)
    labels = getattr(args, f"{name}_labels")
    key = getattr(args, f"{name}_key")
    if feats is None:
        if labels is not None or key is not None:
            raise UsageError(f"--{name}-labels / --{name}-key need --{name} FEATURES")
        if args.key is not None or args.labels is not None or args.split == name:
            return None
        if main.has_split(name):
            return main.dataset(split=name, classes=classes)
        return None
    return load_dataset(feats if len(feats) > 1 else feats[0], labels, key=key, split=name,
                        classes=classes)


def dims(X) -> list[int]:
    """The width of each feature block of X (one array, or a list of them)."""
    blocks = X if isinstance(X, (list, tuple)) else [X]
    return [int(math.prod(b.shape[1:])) for b in blocks]


def check_same_layout(X_ref, X_other, what):
    """UsageError unless `X_other` has the feature blocks of the training features `X_ref`."""
    a, b = dims(X_ref), dims(X_other)
    if a != b:
        raise UsageError(f"the {what} features have block widths {b}, the training features {a}; "
                         "give the same feature files in the same order")
