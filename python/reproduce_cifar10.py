"""Reproduce the paper's CIFAR-10 experiments on the bundled EfficientNet-Lite0 features.

    python python/reproduce_cifar10.py                      # 100 epochs, as the paper (long)
    python python/reproduce_cifar10.py --quick              # a few epochs, small grids: a smoke run
    python python/reproduce_cifar10.py --epochs 30 --out out/cifar10

Features: ../shared/data/cifar10-efficientnet-lite0/features.npz (x_train 50,000 × 1280,
x_test 10,000 × 1280, float16; see its README), or --features PATH.

1. Table 5 — baseline (linear probe, η = 0), ISDA, ME-ADA, mixup and SeA, each with its
   hyper-parameters picked on a validation split (stratified --val-fraction of the training rows),
   refitted on train + val and scored on the test set; on the full training set and on a
   stratified 10% subset (--subset-fraction, drawn once with --seed). Run by
   `sea_kernels.compare.compare` once per seed (--seeds K: seeds --seed … --seed+K−1; the
   seed drives the validation split and the training shuffles): baseline and SeA come from one
   sweep pass over lr × η × λ per seed (the whole grid at once); the others are separate
   `SeAClassifier` fits per candidate, anchored on that seed's baseline pick (its lr × 0.5/1/2
   and its λ; mixup also η, ME-ADA also its feature-space ascent step). With K ≥ 2 seeds the
   table gives mean ± std over the seeds, the 95% Student-t interval and the paired difference to
   the baseline; with one seed there is no interval (one seed per method is noise: the SeA −
   baseline gap can change sign from seed to seed). --methods picks the baselines to run.
2. Fig. 2–3 — the η ablation: train and test top-1 accuracy after every epoch for η ∈ {0, 0.2, 0.4,
   0.6, 0.8, 1.0} at the learning rate and λ SeA selected on the full set (one `train_many` pass on
   the whole training set, scored every epoch).

Writes to --out (default out/cifar10): results.md (the Markdown table), results.json,
compare_full.json / compare_subset.json and compare_full.png / compare_subset.png (per seed, mean
± 95% CI, paired differences), eta_ablation.png (Fig. 2–3), eta_ablation.csv, heatmap_full.png /
heatmap_subset.png and sweep_full.json / sweep_subset.json (the first seed's sweep). All files are
written atomically.
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
from experiment import ME_ADA_ASCENT_STEPS, fit, fmt_params  # noqa: E402

DEFAULT_FEATURES = ROOT.parent / "shared" / "data" / "cifar10-efficientnet-lite0" / "features.npz"
ABLATION_ETAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def log(msg=""):
    print(msg, flush=True)


def fmt(p):
    return fmt_params(p, sep=", ")


LABELS = {"none": "baseline", "isda": "ISDA", "me_ada": "ME-ADA", "mixup": "mixup", "sea": "SeA"}


def anchored_candidates(cfg):
    """The baselines' candidates per seed, anchored on that seed's baseline pick (its lr × the
    --lr factors, its λ): ISDA the lr; ME-ADA also its ascent step; mixup also η."""
    def lrs(picked):
        return sorted({picked["none"]["lr"] * f for f in cfg.lr_factors})

    return {
        "isda": lambda picked: [dict(lr=lr, lam=picked["none"]["lam"]) for lr in lrs(picked)],
        "me_ada": lambda picked: [dict(lr=lr, lam=picked["none"]["lam"], me_ada_lr=a)
                                  for lr in lrs(picked) for a in cfg.me_ada_lrs],
        "mixup": lambda picked: [dict(lr=lr, lam=picked["none"]["lam"], eta=e)
                                 for lr in lrs(picked) for e in cfg.mixup_etas],
    }


def rows_of(res):
    """One row per method of a CompareResult: the first seed's pick, the means over the seeds,
    their spread and intervals, the paired difference to the baseline."""
    rows = []
    for m in res.methods:
        runs = [res.run(m, s) for s in res.seeds]
        t1, mpc = res.stats(m, "top1"), res.stats(m, "mean_per_class")
        diff = None if m == res.baseline else res.stats(m, "top1", paired=True)
        first = runs[0]
        rows.append({
            "method": LABELS.get(m, m), "augment": m,
            "params": {k: first["params"][k] for k in first["varied"]} if first["params"] else None,
            "params_per_seed": [r["params"] for r in runs],
            "val_top1": float(np.nanmean([r["val"] for r in runs])) if any(
                np.isfinite(r["val"]) for r in runs) else float("nan"),
            "test_top1": t1.mean, "test_top1_per_seed": list(t1.values), "test_top1_std": t1.std,
            "test_top1_ci95": list(t1.ci95),
            "test_mean_per_class": mpc.mean, "test_mean_per_class_std": mpc.std,
            "test_mean_per_class_ci95": list(mpc.ci95),
            "diff_top1": None if diff is None else diff.mean,
            "diff_top1_per_seed": None if diff is None else list(diff.values),
            "diff_top1_ci95": None if diff is None else list(diff.ci95),
            "fit_s": float(np.mean([r["fit_s"] for r in runs])),
            "select_s": float(np.mean([r["select_s"] for r in runs])),
            "selection": first["selection"], "errors": [r["error"] for r in runs if r["error"]]})
    return rows


def run_setting(name, x_fit, y_fit, x_te, y_te, cfg, out):
    """Table 5 for one training set over the seeds: returns (rows, CompareResult, SeA params of
    the first seed)."""
    from sea_kernels.compare import compare
    n_va = int(round(cfg.val_fraction * len(y_fit)))
    log(f"\n== {name}: {len(y_fit)} training rows (~{n_va} held out for validation per seed), "
        f"{len(y_te)} test, {cfg.epochs} epochs, seeds {cfg.seeds}")
    n_cfg = len(cfg.lrs) * len(cfg.etas) * len(cfg.lams)
    log(f"   sweep lr {cfg.lrs} × η {cfg.etas} × λ {cfg.lams} = {n_cfg} configurations per seed")
    methods = ["none", *[m for m in ("isda", "me_ada", "mixup") if m in cfg.methods], "sea"]
    anchored = anchored_candidates(cfg)
    grid = {"lr": cfg.lrs, "eta": cfg.etas, "lam": cfg.lams,
            **{m: anchored[m] for m in methods if m in anchored}}

    def line(r):
        what = fmt(r["params"]) if r["params"] else f"failed ({r['error']})"
        if r["params"] and r["method"] in ("none", "sea"):
            what = fmt({k: r["params"][k] for k in ("lr", "eta", "lam")})
        log(f"   seed {r['seed']} {LABELS[r['method']]:9} {what:34} val {100 * r['val']:6.2f}%  "
            f"test {100 * r['test_top1']:6.2f}%  (fit {r['fit_s']:.1f} s)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = compare(x_fit, y_fit, methods=methods, seeds=cfg.seeds, grid=grid,
                      val_fraction=cfg.val_fraction, X_test=x_te, y_test=y_te,
                      epochs=cfg.epochs, progress=line)
    log("   " + "\n   ".join(res.table(params=False).splitlines()))
    tag = "full" if name.startswith("full") else "subset"
    from sea_kernels.data.writers import atomic_write
    from sea_kernels.plots import plot_heatmap
    res.to_json(out / f"compare_{tag}.json")
    res.plot(out / f"compare_{tag}.png", title=f"CIFAR-10 {name}: test top-1 over "
                                               f"{len(cfg.seeds)} seed(s), mean ± 95% CI")
    first = res.sweeps[res.seeds[0]][0]
    with atomic_write(out / f"sweep_{tag}.json") as tmp:
        first.to_json(tmp)
    plot_heatmap(first, out / f"heatmap_{tag}.png", x="lr", y="eta",
                 title=f"CIFAR-10 {name}: validation top-1, best over λ (seed {res.seeds[0]})")
    sea = res.run("sea", res.seeds[0])["params"]
    return rows_of(res), res, sea


def eta_ablation(x_tr, y_tr, x_te, y_te, params, cfg, out):
    """Fig. 2–3: all η at once (train_many), train/test accuracy after every epoch."""
    from sea_kernels.data.writers import write_csv
    from sea_kernels.plots import histories_from_many, plot_curves
    from sea_kernels.sweeps.engine import train_many
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


def _pm(mean, std):
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if np.isfinite(std) else "")


def _ci(ci, sign=False):
    f = "{:+.2f}" if sign else "{:.2f}"
    return (f"[{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]" if ci and np.isfinite(ci[0])
            else "n/a")


def markdown(results, ablation, cfg, total):
    k = len(cfg.seeds)
    lines = ["# SeA on CIFAR-10 EfficientNet-Lite0 features "
             "(reproduction of Table 5, Fig. 2–3)", "",
             f"{cfg.epochs} epochs, batch 256, SGD momentum 0.9, weight decay 1e-6, "
             "α = 0.01, δ = 0; "
             f"hyper-parameters selected on a stratified {cfg.val_fraction:.0%} "
             "validation split of "
             "each training set, the winner refitted on train + val. "
             f"Test set: {cfg.n_test:,} images.",
             f"Seeds {', '.join(map(str, cfg.seeds))}: each seed draws the validation split and "
             "the training shuffles; test accuracy is the mean ± std over the seeds with its 95% "
             "Student-t interval, Δ the paired difference to the baseline (same seed)."
             + ("" if k > 1 else " One seed: no interval (run with --seeds 3 or more)."), ""]
    for setting, rows in results.items():
        lines += [f"## {setting}", "",
                  f"| method | selected (seed {cfg.seeds[0]}) | val top-1 (mean) | test top-1 "
                  "| 95% CI "
                  "| test mean per-class | Δ top-1 vs baseline | Δ 95% CI | fit (s) "
                  "| selection (s) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            diff = "" if r["diff_top1"] is None else f"{100 * r['diff_top1']:+.2f}"
            dci = "" if r["diff_top1"] is None else _ci(r["diff_top1_ci95"], sign=True)
            params = fmt(r["params"]) if r["params"] else "failed"
            lines.append(f"| {r['method']} | {params} | {100 * r['val_top1']:.2f} | "
                         f"{_pm(r['test_top1'], r['test_top1_std'])} | "
                         f"{_ci(r['test_top1_ci95'])} | "
                         f"{_pm(r['test_mean_per_class'], r['test_mean_per_class_std'])} | "
                         f"{diff} | {dci} | {r['fit_s']:.1f} | {r['select_s']:.1f} |")
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
    ap.add_argument("--seed", type=int, default=0, help="the first seed (and the subset's)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="number of seeds, --seed … --seed+K−1: with K ≥ 2 the tables give mean "
                         "± std and 95%% intervals over the seeds (1)")
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
    if cfg.seeds < 1:
        raise SystemExit(f"--seeds must be ≥ 1, got {cfg.seeds}")
    cfg.seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
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
    from sea_kernels.sweeps.search import stratified_split
    t_start = time.perf_counter()
    sea_kernels.info()
    X, y = load_dataset(cfg.features, split="train")
    Xt, yt = load_dataset(cfg.features, split="test")
    x_tr = prepare_features(X).numpy()          # unit rows once (Eq. 1), float32
    x_te = prepare_features(Xt).numpy()
    log(f"\nCIFAR-10 EfficientNet-Lite0 features: {x_tr.shape[0]} train, {x_te.shape[0]} test, "
        f"d={x_tr.shape[1]} ({time.perf_counter() - t_start:.1f} s to load)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.n_test = len(yt)

    # one epoch, timed: what a configuration costs on the whole training set
    clf, secs = fit("sea", {"lr": cfg.lrs[0], "eta": 0.4}, x_tr, y, epochs=1, seed=cfg.seed)
    log(f"one SeA epoch on {len(y)} rows (SeAClassifier, backend {clf.backend_}): {secs:.2f} s")

    results, sea_full = {}, None
    if "full" not in cfg.skip:
        rows, _, sea_full = run_setting("full training set", x_tr, y, x_te, yt, cfg, cfg.out)
        results[f"Full training set ({len(y):,} images)"] = rows
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
        "epochs": cfg.epochs, "val_fraction": cfg.val_fraction, "seeds": cfg.seeds,
        "results": results,
        "eta_ablation": None if ablation is None else {k: list(v) for k, v in ablation[0].items()},
        "total_wall_s": total})
    log("\n" + md)
    log(f"wrote {cfg.out}/results.md, results.json and the plots ({total:.1f} s in all)")


if __name__ == "__main__":
    main()
