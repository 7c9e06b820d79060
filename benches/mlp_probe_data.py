"""The 10,000-row CIFAR-10 slice of the MLP-probe table (docs/mlp-probe.md): 8,000 training rows and
2,000 test rows of the EfficientNet-Lite0 features, as one features file for `sea compare`.

    python benches/mlp_probe_data.py [--features PATH] [--out .cache/cifar10-10k.npz]
    sea compare .cache/cifar10-10k.npz --head mlp --seeds 3 --epochs 20 --out out/mlp-cifar10

Rows: rng = np.random.default_rng(seed) (seed 0); the first n_train of rng.permutation(50,000) of
x_train, then the first n_test of rng.permutation(10,000) of x_test (the file stores its rows
grouped by class, hence the permutation) — the rows tests/data_fixtures.cifar_slice(8000, 2000, 0)
takes. Written: x_train, y_train, x_test, y_test (float16 as stored, int64 labels) and the row
indices train_rows, test_rows into the source file. `sea compare` draws its validation split
per seed from the 8,000 training rows (stratified, 20%: 1,600 rows).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("data") / "cifar10-efficientnet-lite0" / "features.npz"


def default_features() -> Path:
    """The shared features file next to the checkout (../shared/...) or under /work/shared."""
    for p in (ROOT.parent / "shared" / SOURCE, Path("/work/shared") / SOURCE):
        if p.is_file():
            return p
    return ROOT.parent / "shared" / SOURCE


def make_slice(data, n_train: int = 8000, n_test: int = 2000, seed: int = 0) -> dict:
    """The slice (module docstring) of `data` (a mapping with x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = data[f"y_{split}"]
        if not 0 < n <= len(y):
            raise ValueError(f"n_{split} must be in [1, {len(y)}], got {n}")
        rows = rng.permutation(len(y))[:n]
        out[f"x_{split}"] = np.ascontiguousarray(data[f"x_{split}"][rows])
        out[f"y_{split}"] = np.asarray(y[rows], dtype=np.int64)
        out[f"{split}_rows"] = rows.astype(np.int64)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=None,
                    help="the CIFAR-10 EfficientNet-Lite0 features.npz (default: shared/" +
                         str(SOURCE) + ")")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "cifar10-10k.npz")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src = args.features or default_features()
    if not src.is_file():
        print(f"error: {src} not found; pass --features", file=sys.stderr)
        return 2
    with np.load(src) as f:
        out = make_slice(f, args.n_train, args.n_test, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    print(f"wrote {args.out}: {len(out['y_train'])} training and {len(out['y_test'])} test rows "
          f"of {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
