"""What the exact SeA direction changes in training (docs/design.md §3), measured on real features.

The direction of row i only needs a_i up to a positive factor; forming a_y = p_y − 1 (as this
package did before the fix) rounds it to 0 once the target logit's margin exceeds ≈ 16.6λ in
float32, dropping the −w_y term of the gradient direction. This script trains SeA the same way
with whichever `sea_kernels` is importable from the checkout it lives in, so running it from two
checkouts (before / after the fix) compares the two directions on identical data and seeds:

    python python/margin_study.py --label exact --out out/margins/exact.json
    (cd OLD_CHECKOUT && python python/margin_study.py --label rounded --out .../rounded.json)
    python python/margin_study.py --compare out/margins/rounded.json out/margins/exact.json

Per data set and seed: a validation sweep (stratified 20% of the training rows; the seed drives
the split, the shuffling and the permutations) over lr × η with η > 0 (SeA itself: an η = 0
winner would not use the direction), the winner refitted on train + val and scored on the test
set. Also reported: the fraction of training rows whose margin (l_y − max_{c≠y} l_c)/λ under the
final weights exceeds 16.6 — the rows where the rounded direction loses −w_y in float32.
Data: Banking77 MiniLM features (the demo's cache, made by `make demo`) and a stratified
10,000-row slice of the CIFAR-10 EfficientNet-Lite0 training features (test: all 10,000).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sea_kernels  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CIFAR = SHARED / "cifar10-efficientnet-lite0" / "features.npz"
ROUNDING_MARGIN_F32 = 16.6   # 1 − p_y < ulp(1)/2 in float32 beyond this margin (in units of λ)
SETS = {
    "banking77": dict(grid={"lr": [0.5, 1.0, 2.0], "eta": [0.2, 0.4, 0.8], "lam": [0.1]},
                      epochs=20),
    "cifar10-10k": dict(grid={"lr": [0.2, 0.4, 0.8], "eta": [0.2, 0.4, 0.8], "lam": [0.1]},
                        epochs=30),
}


def load(name: str, banking_cache: Path):
    if name == "banking77":
        z = np.load(banking_cache)
        x, y, n = z["x"], z["y"], int(z["n_train"])
        return x[:n], y[:n], x[n:], y[n:]
    z = np.load(CIFAR)
    x, y = z["x_train"], z["y_train"]
    rng = np.random.default_rng(0)                      # the same slice in every checkout
    take = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:1000]
                                   for c in range(10)]))
    return x[take].astype(np.float32), y[take], z["x_test"].astype(np.float32), z["y_test"]


def margins(model, x_train, y_train, lam: float) -> dict:
    """Margins (l_y − max_{c≠y} l_c)/λ of the training rows under the model: the fraction beyond
    ROUNDING_MARGIN_F32 (where the rounded direction loses −w_y in float32), the 99th percentile
    and the maximum."""
    x = sea_kernels.prepare_features(x_train)
    logits = (x @ model.W_.to(x.dtype)).double()
    y = torch.as_tensor(np.searchsorted(model.classes_, y_train))
    target = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    m = ((target - others) / lam).numpy()
    return {"beyond": float(np.mean(m > ROUNDING_MARGIN_F32)), "p99": float(np.percentile(m, 99)),
            "max": float(m.max())}


def run(args) -> dict:
    out = {"label": args.label, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "sets": {}}
    for name in args.sets:
        spec = SETS[name]
        x_tr, y_tr, x_te, y_te = load(name, args.banking_cache)
        rows = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = sea_kernels.sweep(x_tr, y_tr, spec["grid"], X_test=x_te, y_test=y_te,
                                    epochs=spec["epochs"], random_state=seed)
            marg = margins(res.model, x_tr, y_tr, res.best["lam"])
            rows.append({"seed": seed, "best": res.best, "val_top1": res.best_val,
                         "test_top1": res.test_top1,
                         "test_mean_per_class": res.test_mean_per_class,
                         "margins": marg,
                         "seconds": time.perf_counter() - t0})
            print(f"{args.label:8} {name:12} seed {seed}: lr {res.best['lr']:g} η "
                  f"{res.best['eta']:g}  val {100 * res.best_val:.2f}  test "
                  f"{100 * res.test_top1:.2f}  margin/λ p99 {marg['p99']:.1f} "
                  f"max {marg['max']:.1f}, >16.6: {100 * marg['beyond']:.2f}%  "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
        out["sets"][name] = {"epochs": spec["epochs"], "grid": spec["grid"],
                             "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "runs": rows}
    return out


def compare(paths) -> None:
    a, b = (json.loads(Path(p).read_text()) for p in paths)
    print(f"| data set | seed | {a['label']} test top-1 (lr, η) | {b['label']} test top-1 (lr, η)"
          f" | difference | rows beyond 16.6λ ({b['label']}) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in a["sets"]:
        diffs = []
        for ra, rb in zip(a["sets"][name]["runs"], b["sets"][name]["runs"]):
            d = 100 * (rb["test_top1"] - ra["test_top1"])
            diffs.append(d)
            print(f"| {name} | {ra['seed']} | {100 * ra['test_top1']:.2f} ({ra['best']['lr']:g}, "
                  f"{ra['best']['eta']:g}) | {100 * rb['test_top1']:.2f} ({rb['best']['lr']:g}, "
                  f"{rb['best']['eta']:g}) | {d:+.2f} | "
                  f"{100 * rb['margins']['beyond']:.2f}% (max {rb['margins']['max']:.1f}) |")
        mean = statistics.mean(diffs)
        sd = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
        ma = statistics.mean(100 * r["test_top1"] for r in a["sets"][name]["runs"])
        mb = statistics.mean(100 * r["test_top1"] for r in b["sets"][name]["runs"])
        print(f"| {name} | mean | {ma:.2f} | {mb:.2f} | {mean:+.2f} ± {sd:.2f} (sd) | |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--out", type=Path, default=None, help="write the runs here (JSON)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--banking-cache", type=Path,
                    default=Path(__file__).resolve().parents[1] / ".cache" /
                    "banking77-minilm.npz")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        compare(args.compare)
        return 0
    result = run(args)
    if args.out:
        try:                                  # this checkout's writer (atomic)
            from sea_kernels.data.writers import write_json
        except ImportError:                   # a checkout from before the package's wings
            from sea_kernels.io import write_json
        write_json(args.out, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
