"""`sea eval`: top-1 and mean per-class accuracy of a saved model, printed as JSON.

    sea eval run/model.pt features.npz                # → JSON: top1, mean_per_class, n

The model file is verified when it is loaded (format tag, SHA-256 checksum, finite weights,
expected keys and shapes): a file that fails is exit status 3, a missing one 2.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import arguments, inputs, outputs, preflight
from .errors import OutputError, UsageError


def add_parser(sub):
    """The `eval` subcommand: a model.pt and the features (test split by default)."""
    e = sub.add_parser("eval", help="top-1 and mean per-class accuracy of a saved model, as JSON")
    e.add_argument("model", help="model.pt from `sea train` / `sea sweep`")
    arguments.add_data_args(e, "test")
    e.add_argument("--out", default=None, help="also write the JSON to this file")
    e.set_defaults(func=run)
    return e


def load_model(path):
    """The SeAClassifier saved at `path` (verified); UsageError when it is missing,
    BadFileError when it cannot be read or fails verification."""
    from ..data.errors import BadFileError
    from ..train.estimator import SeAClassifier
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        return SeAClassifier.load(path)
    except BadFileError as e:
        raise BadFileError(f"{e} (is it a model.pt written by `sea train` or `sea sweep`?)",
                           path) from None
    except Exception as e:
        raise BadFileError(f"cannot load the model {path} (is it a model.pt written by `sea "
                           f"train` or `sea sweep`?): {type(e).__name__}: {e}", path) from None


def run(args) -> int:
    """Score the model on the features; print the JSON (and write it to --out)."""
    from ..data import writers

    if args.out:
        preflight.check_output_file(args.out, "--out")
    model = load_model(args.model)
    data = inputs.load(args)
    X, y = data.X, data.y
    dims = getattr(model, "feature_dims_", None)
    if dims is not None and list(dims) != inputs.dims(X):
        raise UsageError(f"the model was trained on feature blocks of widths {list(dims)}, these "
                         f"features have {inputs.dims(X)}")
    m = outputs.metrics(model, X, y)
    m.update(model=str(args.model), features=[str(f) for f in args.features])
    print(json.dumps(m, indent=2))
    if args.out:
        try:
            writers.write_json(args.out, m)
        except OSError as e:
            raise OutputError(f"cannot write {args.out}: {type(e).__name__}: {e}") from e
    return 0
