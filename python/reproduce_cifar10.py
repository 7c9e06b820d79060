"""Reproduce the paper's CIFAR-10 experiments on the bundled EfficientNet-Lite0 features.

    python python/reproduce_cifar10.py                      # 100 epochs, as the paper (long)
    python python/reproduce_cifar10.py --quick              # a few epochs, small grids: a smoke run
    python python/reproduce_cifar10.py --epochs 30 --out out/cifar10

Features: ../shared/data/cifar10-efficientnet-lite0/features.npz (x_train 50,000 × 1280,
x_test 10,000 × 1280, float16; see its README), or --features PATH.

1. Table 5 — baseline (linear probe, η = 0), ISDA, ME-ADA, mixup and SeA, each with its
   hyper-parameters picked on a validation split (stratified --val-fraction of the training rows),
   refitted on train + val and scored on the test set; on the full training set and on a
   stratified 10% subset (--subset-fraction). Baseline and SeA come from one
   `sea_kernels.train.sweep` pass over lr × η × λ (the whole grid at once); the others are
   separate `SeAClassifier` fits per candidate
   (learning rate; mixup also η, ME-ADA also its feature-space ascent step). --methods picks the
   baselines to run.
2. Fig. 2–3 — the η ablation: train and test top-1 accuracy after every epoch for η ∈ {0, 0.2, 0.4,
   0.6, 0.8, 1.0} at the learning rate and λ SeA selected on the full set (one `train_many` pass on
   the whole training set, scored every epoch).

Writes to --out (default out/cifar10): results.md (the Markdown table), results.json,
eta_ablation.png (Fig. 2–3), eta_ablation.csv, heatmap_full.png / heatmap_subset.png (sweeps),
sweep_full.json / sweep_subset.json. All files are written atomically.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from experiment import ME_ADA_ASCENT_STEPS, fit, fmt_params, scores, select  # noqa: E402

DEFAULT_FEATURES = ROOT.parent / "shared" / "data" / "cifar10-efficientnet-lite0" / "features.npz"
ABLATION_ETAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def log(msg=""):
    print(msg, flush=True)


def fmt(p):
    return fmt_params(p, sep=", ")


def run_setting(name, x_fit, y_fit, x_te, y_te, cfg, out):
    """Table 5 for one training set: returns (rows, sweep result, SeA params)."""
    from sea_kernels.train.estimator import TrainingDiverged
    from sea_kernels.train.sweep import stratified_split, sweep
    epochs, seed = cfg.epochs, cfg.seed
    tr, va = stratified_split(y_fit, cfg.val_fraction, random_state=seed)
    x_tr, y_tr, x_va, y_va = x_fit[tr], y_fit[tr], x_fit[va], y_fit[va]
    log(f"\n== {name}: {len(y_fit)} training rows ({len(tr)} train / {len(va)} validation), "
        f"{len(y_te)} test, {epochs} epochs")

    grid = {"lr": cfg.lrs, "eta": cfg.etas, "lam": cfg.lams}
    n_cfg = len(cfg.lrs) * len(cfg.etas) * len(cfg.lams)
    log(f"   sweep lr {cfg.lrs} × η {cfg.etas} × λ {cfg.lams} = {n_cfg} configurations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sweep(x_tr, y_tr, grid, X_val=x_va, y_val=y_va, epochs=epochs, random_state=seed,
                    retrain=False, progress=cfg.progress)
    log(f"   sweep: {res.wall_time_s:.1f} s, {int(res.diverged.sum())} diverged")
    keys = ("lr", "eta", "lam")
    vals = np.where(np.isfinite(res.val_top1), res.val_top1, -np.inf)
    # baseline: the best η = 0 row; SeA: the best η > 0 row (the grid holds both)
    base_i = max((i for i, c in enumerate(res.configs) if c["eta"] == 0), key=lambda i: vals[i],
                 default=None)
    sea_i = max((i for i, c in enumerate(res.configs) if c["eta"] > 0), key=lambda i: vals[i],
                default=None)
    if base_i is None or sea_i is None:
        raise SystemExit("the sweep grid needs η = 0 and at least one η > 0 (--etas)")
    if not np.isfinite(vals[base_i]) or not np.isfinite(vals[sea_i]):
        raise SystemExit(f"{name}: every baseline or every SeA configuration diverged; lower --lrs")
    base_p = {k: res.configs[base_i][k] for k in keys}
    sea_p = {k: res.configs[sea_i][k] for k in keys}

    rows = []

    def final(label, augment, params, val, select_s, how):
        try:
            clf, secs = fit(augment, params, x_fit, y_fit, epochs=epochs, seed=seed)
        except TrainingDiverged as e:
            log(f"   {label}: refit diverged ({e})")
            return
        t1, mpc = scores(clf, x_te, y_te)
        rows.append({"method": label, "augment": augment, "params": params, "val_top1": val,
                     "test_top1": t1, "test_mean_per_class": mpc, "fit_s": secs,
                     "select_s": select_s, "selection": how})
        log(f"   {label:10} {fmt(params):30} val {100 * val:6.2f}%  test {100 * t1:6.2f}%  "
            f"(fit {secs:.1f} s)")

    final("baseline", "sea", dict(base_p, eta=0.0), float(vals[base_i]), res.wall_time_s,
          "sweep (η=0 rows)")
    lr_cands = sorted({base_p["lr"] * f for f in cfg.lr_factors})
    for label, augment, cands in (
            ("ISDA", "isda", [dict(lr=lr, lam=base_p["lam"]) for lr in lr_cands]),
            ("ME-ADA", "me_ada", [dict(lr=lr, lam=base_p["lam"], me_ada_lr=a) for lr in lr_cands
                                  for a in cfg.me_ada_lrs]),
            ("mixup", "mixup", [dict(lr=lr, lam=base_p["lam"], eta=e) for lr in lr_cands
                                for e in cfg.mixup_etas])):
        if augment not in cfg.methods:
            continue
        best, best_val, spent = select(augment, cands, (x_tr, y_tr, x_va, y_va), epochs=epochs,
                                       seed=seed)
        if best is None:
            log(f"   {label}: every candidate diverged")
            continue
        final(label, augment, best, best_val, spent, f"{len(cands)} candidates")
    final("SeA", "sea", sea_p, float(vals[sea_i]), res.wall_time_s, "sweep (η>0 rows)")

    tag = "full" if name.startswith("full") else "subset"
    from sea_kernels.data.writers import atomic_write
    from sea_kernels.train.plots import plot_heatmap
    with atomic_write(out / f"sweep_{tag}.json") as tmp:
        res.to_json(tmp)
    plot_heatmap(res, out / f"heatmap_{tag}.png", x="lr", y="eta",
                 title=f"CIFAR-10 {name}: validation top-1, best over λ")
    return rows, res, sea_p


def eta_ablation(x_tr, y_tr, x_te, y_te, params, cfg, out):
    """Fig. 2–3: all η at once (train_many), train/test accuracy after every epoch."""
    from sea_kernels.data.writers import write_csv
    from sea_kernels.train.plots import histories_from_many, plot_curves
    from sea_kernels.train.sweep import train_many
    configs = [dict(params, eta=e) for e in cfg.ablation_etas]
    log(f"\n== η ablation (Fig. 2–3): η ∈ {cfg.ablation_etas} at {fmt(params)}, whole training "
        f"set, {cfg.epochs} epochs, scored every epoch")
    t0 = time.perf_counter()
    many = train_many(torch.from_numpy(x_tr), y_tr, configs, epochs=cfg.epochs,
                      random_state=cfg.seed,
                      eval_sets={"train": (x_tr, y_tr), "test": (x_te, y_te)},
                      eval_every=1, progress=cfg.progress)
    secs = time.perf_counter() - t0
    hist = histories_from_many(many, labels=[f"η={e:g}" for e in cfg.ablation_etas])
    plot_curves(hist, out / "eta_ablation.png", sets=["train", "test"],
                titles=["training top-1 accuracy", "test top-1 accuracy"],
                title=f"CIFAR-10 (EfficientNet-Lite0 features): SeA with different η "
                      f"(lr={params['lr']:g}, λ={params['lam']:g})")
    rows = [{"label": label, **entry} for label, h in hist.items() for entry in h]
    write_csv(out / "eta_ablation.csv", rows)
    final = {label: (h[-1]["train_top1"], h[-1]["test_top1"]) for label, h in hist.items()}
    for label, (a, b) in final.items():
        log(f"   {label:6} train {100 * a:6.2f}%  test {100 * b:6.2f}%"
            + ("  (diverged)" if not np.isfinite(b) else ""))
    log(f"   {secs:.1f} s for {len(configs)} configurations")
    return final, secs


def markdown(results, ablation, cfg, total):
    lines = ["# SeA on CIFAR-10 EfficientNet-Lite0 features "
             "(reproduction of Table 5, Fig. 2–3)", "",
             f"{cfg.epochs} epochs, batch 256, SGD momentum 0.9, weight decay 1e-6, "
             "α = 0.01, δ = 0; "
             f"hyper-parameters selected on a stratified {cfg.val_fraction:.0%} "
             "validation split of "
             "each training set, the winner refitted on train + val. "
             "Test set: 10,000 images.", ""]
    for setting, rows in results.items():
        lines += [f"## {setting}", "",
                  "| method | selected | val top-1 | test top-1 | test mean per-class | fit (s) "
                  "| selection (s) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            lines.append(f"| {r['method']} | {fmt(r['params'])} | {100 * r['val_top1']:.2f} | "
                         f"{100 * r['test_top1']:.2f} | {100 * r['test_mean_per_class']:.2f} | "
                         f"{r['fit_s']:.1f} | {r['select_s']:.1f} |")
        lines.append("")
    if ablation is not None:
        final, secs = ablation
        lines += ["## η ablation (Fig. 2–3), final epoch", "", "| η | train top-1 | test top-1 |",
                  "| --- | ---: | ---: |"]
        for label, (a, b) in final.items():
            lines.append(f"| {label.split('=')[1]} | {100 * a:.2f} | {100 * b:.2f} |")
        lines += ["", "Per-epoch curves: `eta_ablation.png`, `eta_ablation.csv`.", ""]
    lines.append(f"Total wall time: {total:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=DEFAULT_FEATURES, help="features .npz")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "cifar10")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs (100; --quick: 3, the fewest ME-ADA allows)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 epochs, tiny grids, one candidate per baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--subset-fraction", type=float, default=0.1)
    ap.add_argument("--lrs", type=float, nargs="+", default=None,
                    help="sweep learning rates (0.1 0.2 0.4 0.8 1.6)")
    ap.add_argument("--etas", type=float, nargs="+", default=None, help="sweep η (0 0.2 0.4 0.8)")
    ap.add_argument("--lams", type=float, nargs="+", default=None, help="sweep λ (0.1 1)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["full", "subset", "ablation"],
                    help="parts to leave out")
    ap.add_argument("--methods", nargs="+", default=["isda", "me_ada", "mixup"],
                    choices=["isda", "me_ada", "mixup"],
                    help="baselines next to linear probing and SeA (all three)")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction,
                    default=sys.stderr.isatty())
    cfg = ap.parse_args(argv)
    cfg.epochs = cfg.epochs or (3 if cfg.quick else 100)
    cfg.lrs = cfg.lrs or ([0.2, 0.8] if cfg.quick else [0.1, 0.2, 0.4, 0.8, 1.6])
    cfg.etas = cfg.etas or ([0.0, 0.4] if cfg.quick else [0.0, 0.2, 0.4, 0.8])
    cfg.lams = cfg.lams or ([0.1] if cfg.quick else [0.1, 1.0])
    cfg.lr_factors = [1.0] if cfg.quick else [0.5, 1.0, 2.0]
    cfg.mixup_etas = [0.4] if cfg.quick else [0.2, 0.4, 0.8]
    cfg.me_ada_lrs = list(ME_ADA_ASCENT_STEPS[:1] if cfg.quick else ME_ADA_ASCENT_STEPS)
    cfg.ablation_etas = [0.0, 0.4, 1.0] if cfg.quick else ABLATION_ETAS
    if not cfg.features.is_file():
        raise SystemExit(f"features not found: {cfg.features} (pass --features PATH)")
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    import sea_kernels
    from sea_kernels.data.features import prepare_features
    from sea_kernels.data.files import load_dataset
    from sea_kernels.data.writers import write_json
    from sea_kernels.train.sweep import stratified_split
    t_start = time.perf_counter()
    sea_kernels.info()
    X, y = load_dataset(cfg.features, split="train")
    Xt, yt = load_dataset(cfg.features, split="test")
    x_tr = prepare_features(X).numpy()          # unit rows once (Eq. 1), float32
    x_te = prepare_features(Xt).numpy()
    log(f"\nCIFAR-10 EfficientNet-Lite0 features: {x_tr.shape[0]} train, {x_te.shape[0]} test, "
        f"d={x_tr.shape[1]} ({time.perf_counter() - t_start:.1f} s to load)")
    cfg.out.mkdir(parents=True, exist_ok=True)

    # one epoch, timed: what a configuration costs on the whole training set
    clf, secs = fit("sea", {"lr": cfg.lrs[0], "eta": 0.4}, x_tr, y, epochs=1, seed=cfg.seed)
    log(f"one SeA epoch on {len(y)} rows (SeAClassifier, backend {clf.backend_}): {secs:.2f} s")

    results, sea_full = {}, None
    if "full" not in cfg.skip:
        rows, _, sea_full = run_setting("full training set", x_tr, y, x_te, yt, cfg, cfg.out)
        results["Full training set (50,000 images)"] = rows
    if "subset" not in cfg.skip:
        _, sub = stratified_split(y, cfg.subset_fraction, random_state=cfg.seed)
        rows, _, _ = run_setting(f"{cfg.subset_fraction:.0%} subset", x_tr[sub], y[sub], x_te, yt,
                                 cfg, cfg.out)
        results[f"{cfg.subset_fraction:.0%} of the training set ({len(sub)} images)"] = rows
    ablation = None
    if "ablation" not in cfg.skip:
        params = sea_full or {"lr": 0.4, "lam": 0.1}
        params = {"lr": params["lr"], "lam": params["lam"]}
        ablation = eta_ablation(x_tr, y, x_te, yt, params, cfg, cfg.out)

    total = time.perf_counter() - t_start
    md = markdown(results, ablation, cfg, total)
    from sea_kernels.data.writers import atomic_open
    with atomic_open(cfg.out / "results.md") as f:
        f.write(md)
    write_json(cfg.out / "results.json", {
        "epochs": cfg.epochs, "val_fraction": cfg.val_fraction, "results": results,
        "eta_ablation": None if ablation is None else {k: list(v) for k, v in ablation[0].items()},
        "total_wall_s": total})
    log("\n" + md)
    log(f"wrote {cfg.out}/results.md, results.json and the plots ({total:.1f} s in all)")


if __name__ == "__main__":
    main()
