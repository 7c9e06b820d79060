"""Honest comparisons: every method selected, refitted and tested once per seed, and the paired
difference to the baseline with a 95% interval over the seeds.

    from sea_kernels.compare import compare
    res = compare(X, y, methods=("none", "sea", "mixup"), seeds=3, X_test=Xt, y_test=yt)
    print(res.table())                      # mean ± std, 95% CI, paired differences to "none"
    res.ci95("sea", paired=True)            # (lo, hi) of sea − none, test top-1
    res.to_json("compare.json"); res.plot("compare.png")

One seed per method is noise: on real features the SeA − baseline gap changes sign from seed to
seed. For every seed s and every method, in this order:

1. the validation split — (X_val, y_val) when given, else `stratified_split(y, val_fraction,
   random_state=s)` — and the training shuffles (`random_state=s`) are those of seed s, the same
   for every method of that seed;
2. the method's hyper-parameters are picked on validation (the selection `metric`; ties go to the
   first candidate, diverged candidates never): ``none`` and ``sea`` from one `sweep` pass of the
   sweep engine (docs/design.md §4; ``none`` is the best η = 0 row — a plain linear probe —,
   ``sea`` the best η > 0 row), every other augment from one `SeAClassifier` fit per candidate;
3. the winner is refitted on train + validation (`SeAClassifier`, the same seed) and scored on
   the test set: top-1 and mean per-class accuracy.

Per method: mean and sample standard deviation (ddof 1) over the seeds and a 95% Student-t
interval of the mean, mean ± t₀.₉₇₅,ₙ₋₁ · std/√n (`t_quantile`: `scipy.stats.t.ppf` when scipy
imports, else a built-in table for df ≤ 30 and the Cornish–Fisher expansion above it). The paired
difference method − baseline is taken seed by seed (the same split and shuffles) and summarised
the same way. With one seed there is no spread to estimate: std and interval are NaN and the
summary says so. The interval covers the variation over seeds (split and shuffles) on this one
test set, not the sampling error of the test set itself.

Candidates (`grid`): a dict of axes shared by all methods — lr, weight_decay (wd), alpha, lam,
delta, eta as in `sweep`, and me_ada_lr (ME-ADA's ascent step), isda_strength, me_ada_steps,
me_ada_gamma, me_ada_beta, me_ada_rounds — read per method:

| method | candidates |
| --- | --- |
| none | lr × wd × λ × δ with η = 0 (sweep) |
| sea | lr × wd × α × λ × δ × (η > 0) (sweep) |
| sea_neg | the same, one fit each |
| mixup, rand | lr × wd × λ × δ × (η > 0) |
| adv | lr × wd × λ × δ × η ∈ ADV_ETAS (the raw gradient is not normalised: its own scale) |
| isda | lr × wd × λ × δ (× isda_strength) |
| me_ada | lr × wd × λ × δ × me_ada_lr (default ME_ADA_ASCENT_STEPS) (× the other me_ada_*) |

Axes left out take `params.DEFAULTS` (as in `sweep`); ``grid=None`` is DEFAULT_GRID. An entry
keyed by a method name overrides for that method: a dict of axes (replacing those axes), a list
of candidate dicts, or a callable ``f(picked) -> list of candidate dicts`` where ``picked`` maps
the methods already selected for this seed (``none`` and ``sea`` come first) to their
hyper-parameters — candidates anchored on the baseline's pick, as python/demo.py does.

head="mlp" (`sea compare --head mlp`, `plan.plan_mlp`): the classifier is `train.mlp.MLPProbe`
(frozen features → Linear(d, 512) → GELU → SeALinear(512, C), trained end to end) instead of the
linear probe, and methods ⊆ ("none", "sea") give the rows mlp_ce (the MLP with η = 0:
cross-entropy; the baseline), mlp_sea (the same MLP with the best η > 0; candidates: grid
["mlp_lr"] × grid["eta"]) and linear_sea (the linear SeA probe, selected and refitted exactly as
`sea` is with head="linear"); each MLP candidate is one fit. The table adds the paired difference
mlp_sea − linear_sea.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np

from ..params import (
    BATCH_SIZE,
    DEFAULTS,
    EPOCHS,
    GRID_PARAMS,
    MLP_DEFAULTS,
    VAL_FRACTION,
)
from .plan import (
    BASELINE,
    SWEEP_METHODS,
    check_candidates,
    plan,
)
from .result import CompareResult, fmt_params, percent

# ------------------------------------------------------------------------------- compare

def _take(x, idx):
    import torch
    return x[torch.as_tensor(idx, dtype=torch.long, device=x.device)]


def _cat(a, b):
    import torch
    return torch.cat([a, b.to(a.device, a.dtype)])


def _score(pred, y, metric: str) -> float:
    from ..train.metrics import mean_per_class, top1
    return top1(pred, y) if metric == "top1" else mean_per_class(pred, y)


def _best(indices, scores) -> int | None:
    """The first index with the highest finite score (None when none is finite)."""
    best = None
    for i in indices:
        if math.isfinite(scores[i]) and (best is None or scores[i] > scores[best]):
            best = i
    return best


def _report(progress) -> Callable | None:
    if callable(progress):
        return progress
    if not progress:
        return None

    def line(r):
        what = (fmt_params(r["params"], r.get("varied")) if r["params"] is not None
                else f"failed ({r['error']})")
        print(f"seed {r['seed']} {r['method']}: {what}; test top-1 {percent(r['test_top1'])}% "
              f"({r['select_s'] + r['fit_s']:.1f} s)", file=sys.stderr, flush=True)
    return line


def _varied(cands) -> list:
    """The keys worth printing: lr, η, those whose value differs between candidates and those
    set to something other than the package default."""
    keys = list(dict.fromkeys(k for c in cands for k in c))
    return [k for k in keys if k in ("lr", "eta") or len({c.get(k) for c in cands}) > 1
            or any(c.get(k, DEFAULTS.get(k)) != DEFAULTS.get(k) for c in cands)]


def compare(X, y, *, methods=None, seeds=3, grid=None, X_val=None, y_val=None,
            val_fraction: float = VAL_FRACTION, X_test=None, y_test=None, epochs: int = EPOCHS,
            batch_size: int = BATCH_SIZE, metric: str = "top1", baseline: str | None = BASELINE,
            backend: str = "auto", device=None, group_size: int | None = None,
            head: str = "linear", progress=False) -> CompareResult:
    """Select, refit and test every method once per seed; summarise over the seeds.

    X, y: training features (n×d array/tensor or a list of blocks, prepared by Eq. 1 like
    `SeAClassifier`) and labels. Validation: (X_val, y_val), else a stratified hold-out of
    val_fraction of (X, y) drawn per seed. X_test, y_test: the test set (required).
    methods: augments of `SeAClassifier` (params.AUGMENTS), the `baseline` ("none", the η = 0
    linear probe) among them (None: DEFAULT_METHODS; with head="mlp" none and sea); seeds: an
    int K (seeds 0…K−1) or a list of distinct seeds.
    grid: candidates per method (module docstring; None → DEFAULT_GRID). metric: the validation
    selection metric ("top1" or "mean_per_class"). device: where everything trains (default
    CUDA when available, else CPU). group_size: SeA's projection group (None: the whole batch,
    the paper), for the sweeps and every fit alike. progress: True → a line per run on stderr and
    the sweep's progress bar; a callable → called with each run's dict. head: "linear" (the
    linear probe of SeAClassifier) or "mlp" (the MLP probe: module docstring).

    Every argument is checked before any training (ValueError / ParameterError naming it); a
    run whose candidates all diverge, or whose refit diverges, is recorded with NaN accuracies
    and its reason, and left out of the summaries (the table says so).
    """
    import torch

    from ..data.features import block_dims, check_block_dims, prepare_features
    from ..data.labels import label_array
    from ..sweeps.search import stratified_split, sweep
    from ..train.devices import check_device
    from ..train.divergence import TrainingDiverged
    from ..train.estimator import SeAClassifier
    from ..train.mlp import MLPProbe

    t_start = time.perf_counter()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    check_device(device)
    p = plan(methods, seeds, grid, baseline=baseline, metric=metric, epochs=epochs,
             batch_size=batch_size, backend=backend, device=device, val_fraction=val_fraction,
             group_size=group_size, head=head)
    val_fraction, group_size = p.val_fraction, p.group_size
    grouped = {} if group_size is None else {"group_size": group_size}
    if X_test is None or y_test is None:
        raise ValueError("compare needs a test set: give X_test and y_test")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    dims = block_dims(X)
    for name, other in (("X_val", X_val), ("X_test", X_test)):
        if other is not None:
            check_block_dims(other, dims, name)
    x = prepare_features(X)                       # unit rows once (Eq. 1), on the CPU
    y_raw = label_array(y, "y", x.shape[0])
    x_te = prepare_features(X_test)
    y_te = label_array(y_test, "y_test", x_te.shape[0], rows_of="X_test")
    if X_val is not None:
        x_va_given = prepare_features(X_val)
        y_va_given = label_array(y_val, "y_val", x_va_given.shape[0], rows_of="X_val")
    unknown = sorted(set(np.unique(y_te).tolist()) - set(np.unique(y_raw).tolist()), key=str)
    if X_val is not None:
        unknown = [u for u in unknown if u not in set(np.unique(y_va_given).tolist())]
    if unknown:
        raise ValueError(f"y_test: labels {unknown[:5]} are not among the training classes")
    report = _report(progress)
    bars = progress is True
    merged = p.merged_sweep()
    runs, sweeps = [], {}
    failed = (math.nan, math.nan)

    def model(augment, params, seed):
        """The classifier of a candidate: MLPProbe (augment None: the MLP rows) or
        SeAClassifier(augment)."""
        kw = dict(epochs=epochs, batch_size=batch_size, random_state=seed, backend=backend,
                  device=device, **grouped, **params)
        return MLPProbe(**kw) if augment is None else SeAClassifier(augment=augment, **kw)

    def refit_and_test(augment, params, seed, x_fit, y_fit):
        """((test top-1, mean per-class), seconds) of the winner refitted on train + val."""
        clf = model(augment, params, seed)
        t0 = time.perf_counter()
        clf.fit(x_fit, y_fit)
        pred = clf.predict(x_te)
        return ((_score(pred, y_te, "top1"), _score(pred, y_te, "mean_per_class")),
                time.perf_counter() - t0)

    def finish(done, picked, seed, method, *, params, val, n_cands, n_div, select_s,
               selection, varied, x_fit, y_fit, augment):
        """Refit the pick (if any) and test it; the run's record."""
        test, fit_s, error = failed, 0.0, None
        if params is None:
            error = "every candidate diverged"
        else:
            try:
                test, fit_s = refit_and_test(augment, params, seed, x_fit, y_fit)
                picked[method] = params
            except TrainingDiverged as e:
                error = f"refit on train + validation diverged: {e}"
        r = {"seed": seed, "method": method, "params": params, "varied": varied,
             "val": math.nan if val is None else float(val), "test_top1": float(test[0]),
             "test_mean_per_class": float(test[1]), "candidates": n_cands, "diverged": n_div,
             "selection": selection, "select_s": select_s, "fit_s": fit_s, "error": error}
        done[method] = r
        if report is not None:
            report(r)

    # the sweep-engine methods first: their picks may anchor the others' candidates
    swept = [m for m in p.methods if p.spaces[m][0] == "sweep"]
    order = swept + [m for m in p.methods if m not in swept]
    groups = [SWEEP_METHODS] if merged else [(m,) for m in swept]
    for seed in p.seeds:
        if X_val is None:
            tr, va = stratified_split(y_raw, val_fraction, random_state=seed)
            if len(va) == 0:
                raise ValueError("the stratified split left no validation rows; pass "
                                 "X_val/y_val or a larger val_fraction")
            x_tr, y_tr, x_va, y_va = _take(x, tr), y_raw[tr], _take(x, va), y_raw[va]
        else:
            x_tr, y_tr, x_va, y_va = x, y_raw, x_va_given, y_va_given
        fit_set = dict(x_fit=_cat(x_tr, x_va), y_fit=np.concatenate([y_tr, y_va]))
        picked, done = {}, {}
        sweeps[seed] = []
        for group in groups:
            g = merged if merged else p.spaces[group[0]][1]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="every configuration diverged")
                res = sweep(x_tr, y_tr, g, X_val=x_va, y_val=y_va, epochs=epochs,
                            batch_size=batch_size, random_state=seed, backend=backend,
                            metric=metric, retrain=False, progress=bars, device=device,
                            **grouped)
            sweeps[seed].append(res)
            scores = np.asarray(res.scores(), dtype=np.float64)
            for m in group:
                rows = [i for i, c in enumerate(res.configs) if (c["eta"] == 0) == (m == "none")]
                space = p.spaces[m][1]
                varied = [k for k in GRID_PARAMS if len(space.get(k, ())) > 1
                          or k in ("lr", "lam") or (k == "eta" and m != "none")]
                best = _best(rows, scores)
                finish(done, picked, seed, m,
                       params=None if best is None else dict(res.configs[best]),
                       val=None if best is None else scores[best], n_cands=len(rows),
                       n_div=int(np.asarray(res.diverged)[rows].sum()),
                       select_s=res.wall_time_s, varied=varied, augment="sea",
                       selection=("one sweep pass shared by none (η = 0 rows) and sea "
                                  "(η > 0 rows)" if merged else "sweep"), **fit_set)
        for m in order:
            if m in swept:
                continue
            kind, space = p.spaces[m]
            augment = None if kind == "mlp" else m
            if callable(space):
                try:
                    cands = space(dict(picked))
                except KeyError as e:
                    raise ValueError(f"grid[{m!r}]: its candidates need the pick of {e} (add "
                                     "that method, or it failed for this seed)") from None
                cands = check_candidates(m, cands, epochs=epochs, batch_size=batch_size,
                                          backend=backend, device=device, where=f"grid[{m!r}]")
            else:
                cands = space
            t0 = time.perf_counter()
            vals, n_div = [], 0
            for cand in cands:
                clf = model(augment, cand, seed)
                try:
                    clf.fit(x_tr, y_tr)
                except TrainingDiverged:
                    vals.append(math.nan)
                    n_div += 1
                    continue
                vals.append(_score(clf.predict(x_va), y_va, metric))
            best = _best(range(len(cands)), vals)
            finish(done, picked, seed, m, params=None if best is None else dict(cands[best]),
                   val=None if best is None else vals[best], n_cands=len(cands), n_div=n_div,
                   select_s=time.perf_counter() - t0, varied=_varied(cands), augment=augment,
                   selection=f"{len(cands)} {'MLPProbe' if kind == 'mlp' else 'SeAClassifier'} "
                             f"fit{'s' * (len(cands) != 1)}",
                   **fit_set)
        runs += [done[m] for m in p.methods]
    settings = {"epochs": epochs, "batch_size": batch_size, "backend": backend, "device": device,
                "group_size": group_size,
                "val_fraction": None if X_val is not None else val_fraction,
                "n_train": int(x.shape[0]), "n_test": int(x_te.shape[0]),
                "n_val_given": None if X_val is None else int(x_va_given.shape[0]),
                "candidates": {m: p.n_candidates(m) for m in p.methods},
                "merged_sweep": merged is not None, "head": p.head}
    if p.head == "mlp":
        settings["mlp"] = {k: v for k, v in MLP_DEFAULTS.items() if k not in ("lr", "eta",
                                                                              "epochs")}
    return CompareResult(methods=p.methods, seeds=p.seeds, baseline=p.baseline, metric=metric,
                         runs=runs, settings=settings, wall_time_s=time.perf_counter() - t_start,
                         sweeps=sweeps, pairs=p.pairs)
