"""A long random fuzz campaign of the public ops against the NumPy oracle (issue #8).

    python benches/fuzz.py --cases 10000 [--seed S] [--backends torch cpp triton] [--json out.json]

Cases are drawn with a plain NumPy RNG (no hypothesis) over the space of tests/test_fuzz.py, wider:
b ∈ [1, 64], d ∈ [1, 64], C ∈ [2, 32], α ∈ [1e-3, 1], η ∈ [0, 2], λ ∈ [1e-2, 10], δ ∈ [0, 2],
weight scale 1e-6 … 1e3, the structural kinds of tests/fuzz_oracle.py (clustered rows at margins
20λ/100λ/1000λ, cancelling rows, identical rows, nearly parallel weight columns), duplicated / zero
/ unnormalised rows, one class only, W = 0, non-contiguous layouts, every reduction, sea/sea_neg,
groups (group_size 1 … b + 2 on a third of the cases, else None: the whole batch), a bias on 30 %
(b = s·N(0, 1)^C, s = 0, the weight scale, or 1e-6 … 1e3; with a margin in the units of the
unscaled W), float32/float64 (and a share of bf16/fp16). Each backend's loss, dW and, with a bias,
db (and sea_augment's x̃, row "sea_augment") is compared with the oracle; the table gives, per
backend and dtype: cases, NaN/Inf results (NonFiniteLoss included), ValueError/TypeError rejections
(every drawn case is valid input, so a rejection is a failure too), other ("undocumented")
exceptions, cases over the bound of fuzz_oracle.metric (any of the above included), the largest
error relative to the scale (‖truth‖; ‖|X̃|ᵀ|D|‖ for dW, ‖Σ_i |D_i|‖ for db) and relative to the
bound (≤ 1 passes), and the worst case's parameters. Exit status 1 when any case failed.

Without a GPU, Triton runs in its interpreter on the CPU (TRITON_INTERPRET=1, ~0.1 s a case),
so it gets separate tiny cases (b ≤ 8, d ≤ 8, C ≤ 6, float32/bf16/fp16), at most --triton-cases
of them (default 1 % of --cases, at least 20); with a GPU the same cases run on CUDA tensors.
The notes under the table say how many ran and what they cost.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fuzz_oracle as fo  # noqa: E402

from sea_kernels.op import cpp_backend, triton_backend  # noqa: E402
from sea_kernels.op.validation import NonFiniteLoss  # noqa: E402

TINY = dict(b=8, d=8, c=6)
DTYPE_P = {"float32": 0.45, "float64": 0.45, "bfloat16": 0.05, "float16": 0.05}


def log_uniform(rng, lo, hi):
    """10^U(lo, hi); the ends themselves with probability 1/10."""
    u = rng.random()
    e = lo if u < 0.05 else hi if u < 0.1 else rng.uniform(lo, hi)
    return float(10.0 ** e)


def pick(rng, values, p=None):
    return values[int(rng.choice(len(values), p=p))]


def sample_case(rng, tiny=False, max_b=64, max_d=64, max_c=32) -> fo.Case:
    if tiny:
        max_b, max_d, max_c = TINY["b"], TINY["d"], TINY["c"]
    # small sizes are where the corner cases live: half the draws from the lower end
    def size(lo, hi):
        return int(rng.integers(lo, min(hi, 8) + 1) if rng.random() < 0.5 else
                   rng.integers(lo, hi + 1))
    b = size(1, max_b)
    kind = pick(rng, fo.KINDS, [0.4, 0.25, 0.15, 0.1, 0.1])
    dtype = pick(rng, list(DTYPE_P), list(DTYPE_P.values()))
    margin = pick(rng, [None, 20, 100, 1000]) if kind == "clustered" else None
    wscale = log_uniform(rng, -6, 3)
    return fo.Case(
        b=b, d=size(1, max_d), c=size(2, max_c),
        alpha=log_uniform(rng, -3, 0),
        eta=pick(rng, [0.0, 0.8, 2.0]) if rng.random() < 0.2 else float(rng.uniform(0, 2)),
        lam=log_uniform(rng, -2, 1),
        delta=pick(rng, [0.0, 1.0, 2.0]) if rng.random() < 0.3 else float(rng.uniform(0, 2)),
        wscale=wscale,
        kind=kind,
        margin=margin,
        duplicates=(pick(rng, [0, 0, 1, b]) if b > 1 else 0),
        one_class=rng.random() < 0.25,
        unnormalised=rng.random() < 0.3,
        zero_rows=int(rng.random() < 0.15),
        zero_w=rng.random() < 0.1,
        layout=pick(rng, fo.LAYOUTS),
        reduction=pick(rng, fo.REDUCTIONS),
        direction=pick(rng, fo.DIRECTIONS),
        dtype=dtype,
        seed=int(rng.integers(0, 2 ** 32)),
        label_dtype=pick(rng, ["int64", "int64", "int32"]),
        group_size=int(rng.integers(1, b + 3)) if rng.random() < 1 / 3 else None,
        bias=sample_bias(rng, wscale, margin) if rng.random() < 0.3 else None,
    )


def sample_bias(rng, wscale, margin):
    """The bias scale s (b = s·N(0, 1)^C): 0 (a zero bias tensor), like the weights (the weight
    scale, or 10^U(−6, 3)); with a margin the bias is in the unscaled W's units: 10^U(−3, 0)."""
    u = rng.random()
    if u < 0.1:
        return 0.0
    if margin is not None:
        return log_uniform(rng, -3, 0)
    return wscale if u < 0.5 else log_uniform(rng, -6, 3)


def backend_ok(backend, case) -> bool:
    if backend == "triton":
        return case.dtype != "float64"
    return True


class Row:
    """Aggregates of one (backend, dtype) row of the table."""

    def __init__(self):
        self.cases = self.nonfinite = self.rejected = self.undocumented = self.failed = 0
        self.max_rel = self.max_ratio = 0.0
        self.worst = None
        self.examples = []      # a few failure descriptions

    def add(self, case, metrics=None, error=None):
        self.cases += 1
        if error is not None:
            kind, text = error
            if kind == "nonfinite":
                self.nonfinite += 1
            elif kind == "rejected":
                self.rejected += 1
            else:
                self.undocumented += 1
            self.failed += 1
            if len(self.examples) < 5:
                self.examples.append(f"{text} | {case.short()}")
            self.max_ratio = float("inf")
            if self.worst is None or self.worst[0] != float("inf"):
                self.worst = (float("inf"), case, text)
            return
        if any(not m.finite for m in metrics):
            self.nonfinite += 1
        bad = [m for m in metrics if not m.ok]
        if bad:
            self.failed += 1
            if len(self.examples) < 5:
                self.examples.append("; ".join(map(str, bad)) + f" | {case.short()}")
        for m in metrics:
            ratio = m.ratio if m.finite else float("inf")
            self.max_rel = max(self.max_rel, m.rel if m.finite else float("inf"))
            self.max_ratio = max(self.max_ratio, ratio)
            if self.worst is None or ratio > self.worst[0]:
                self.worst = (ratio, case, str(m))

    def as_dict(self):
        return dict(cases=self.cases, nonfinite=self.nonfinite, rejected=self.rejected,
                    undocumented=self.undocumented, failed=self.failed, max_rel=self.max_rel,
                    max_ratio=self.max_ratio,
                    worst=None if self.worst is None else dict(
                        ratio=self.worst[0], metric=self.worst[2], case=self.worst[1].as_dict()),
                    examples=self.examples)


def classify(exc):
    if isinstance(exc, NonFiniteLoss):
        return ("nonfinite", f"NonFiniteLoss: {exc}")
    if isinstance(exc, (ValueError, TypeError)):
        return ("rejected", f"{type(exc).__name__}: {exc}")
    return ("undocumented", f"{type(exc).__name__}: {exc}")


def run(args):
    rng = np.random.default_rng(args.seed)
    rows = defaultdict(Row)
    backends = [b for b in args.backends if b != "cpp" or cpp_backend.CPP_AVAILABLE]
    notes = []
    if "cpp" in args.backends and not cpp_backend.CPP_AVAILABLE:
        notes.append(f"cpp skipped: {cpp_backend.CPP_ERROR}")
    triton_on = "triton" in backends and triton_backend.AVAILABLE and (
        torch.cuda.is_available() or triton_backend.interpreter_on())
    if "triton" in backends and not triton_on:
        backends.remove("triton")
        notes.append("triton skipped: unavailable or not under TRITON_INTERPRET=1")
    triton_cap = args.triton_cases if args.triton_cases is not None else max(20,
                                                                             args.cases // 100)
    triton_every = max(1, args.cases // max(triton_cap, 1)) if triton_cap else 0
    triton_ran = 0
    drawn = defaultdict(int)    # how many cases had groups / a bias (main, triton)
    t0, cpu0 = time.perf_counter(), time.process_time()
    seconds = defaultdict(float)
    for i in range(args.cases):
        case = sample_case(rng)
        todo = [b for b in backends if b != "triton"]
        if triton_on and triton_every and i % triton_every == 0 and triton_ran < triton_cap:
            # Triton gets its own tiny case (the interpreter is slow), same space otherwise
            tcase = sample_case(rng, tiny=True)
            while tcase.dtype == "float64":
                tcase = replace(tcase, dtype=pick(rng, ["float32", "bfloat16", "float16"]))
            tt = time.perf_counter()
            _one(rows, tcase, ["triton"], seconds)
            seconds["triton"] += time.perf_counter() - tt
            triton_ran += 1
            _count(drawn, tcase, "triton ")
        _count(drawn, case, "")
        _one(rows, case, todo + (["sea_augment"] if "torch" in todo else []), seconds)
        if args.progress and (i + 1) % args.progress == 0:
            print(f"  {i + 1} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - t0
    seconds["cpu (process)"] = time.process_time() - cpu0
    if triton_on:
        notes.append(f"triton ran on {triton_ran} separate tiny cases (b ≤ 8, d ≤ 8, C ≤ 6; "
                     f"cap {triton_cap}, --triton-cases) in {seconds['triton']:.0f} s: "
                     "the interpreter is slow" if not torch.cuda.is_available() else "")
    notes.append("drawn: " + ", ".join(f"{k} {v}" for k, v in sorted(drawn.items())))
    return rows, wall, notes, seconds


def _count(drawn, case, prefix):
    """Tally the new features: real groups (1 ≤ G < b), G ≥ b, one-row groups, a bias."""
    if case.group_size is not None:
        drawn[prefix + ("groups (G < b)" if case.group_size < case.b else "G ≥ b")] += 1
        drawn[prefix + "G = 1"] += case.group_size == 1 and case.b > 1
    drawn[prefix + "bias"] += case.bias is not None


def _one(rows, case, backends, seconds):
    tt = time.perf_counter()
    try:
        tr = fo.truths(case)
    except Exception as exc:  # the oracle or the reference itself failed: report, do not hide
        rows[("oracle", case.dtype)].add(case, error=("undocumented",
                                                      f"{type(exc).__name__}: {exc}"))
        return
    seconds["oracle"] += time.perf_counter() - tt
    for backend in backends:
        if not backend_ok(backend, case):
            continue
        tt = time.perf_counter()
        key = (backend, case.dtype)
        try:
            metrics = ([fo.check_augment(tr)] if backend == "sea_augment" else
                       fo.check_backend(tr, backend))
        except Exception as exc:
            rows[key].add(case, error=classify(exc))
        else:
            rows[key].add(case, metrics)
        seconds[backend] += time.perf_counter() - tt


def fmt(v):
    return "inf" if v == float("inf") else f"{v:.3g}"


def table(rows, wall, n, notes, seconds, verbose=True):
    order = {"torch": 0, "cpp": 1, "triton": 2, "sea_augment": 3, "oracle": 4}
    dorder = {d: i for i, d in enumerate(fo.DTYPES)}
    keys = sorted(rows, key=lambda k: (order.get(k[0], 9), dorder.get(k[1], 9)))
    head = ("backend", "dtype", "cases", "NaN/Inf", "rejected", "undocumented", "over bound",
            "max rel err", "max err/bound")
    lines = [f"fuzz campaign: {n} cases in {wall:.0f} s wall "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in sorted(seconds.items()))}; "
             f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
             f"{torch.get_num_threads()} torch thread(s))"]
    body = [[k[0], k[1], str(r.cases), str(r.nonfinite), str(r.rejected), str(r.undocumented),
             str(r.failed), fmt(r.max_rel), fmt(r.max_ratio)] for k, r in
            ((k, rows[k]) for k in keys)]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    lines.append("")
    lines.append("worst case per row (err/bound; parameters):")
    for k in keys:
        r = rows[k]
        if r.worst is not None:
            lines.append(f"  {k[0]}/{k[1]}: {fmt(r.worst[0])}  {r.worst[2]}")
            lines.append(f"      {r.worst[1].short()}")
    if verbose:
        for k in keys:
            if rows[k].examples:
                lines.append(f"first failures, {k[0]}/{k[1]}:")
                lines += [f"  - {e}" for e in rows[k].examples]
    lines += [f"note: {n}" for n in notes if n]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", nargs="+", default=["torch", "cpp", "triton"],
                   choices=["torch", "cpp", "triton"])
    p.add_argument("--triton-cases", type=int, default=None,
                   help="at most this many (separate, tiny) Triton cases; default 1%% of --cases, "
                        "at least 20; 0 skips Triton")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--progress", type=int, default=0, help="print progress every N cases")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the cases are small enough for one "
                        "task per parallel pass, and on a busy machine OpenMP's spin-waits made "
                        "each call ~100× slower with 2)")
    args = p.parse_args(argv)
    if args.cases < 1:
        p.error("--cases must be ≥ 1")
    torch.set_num_threads(max(1, args.threads))
    rows, wall, notes, seconds = run(args)
    print(table(rows, wall, args.cases, notes, seconds))
    if args.json:
        args.json.write_text(json.dumps(dict(
            cases=args.cases, seed=args.seed, wall_s=wall, seconds=dict(seconds), notes=notes,
            rows={f"{k[0]}/{k[1]}": r.as_dict() for k, r in rows.items()}), indent=1))
    return 1 if any(r.failed for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
