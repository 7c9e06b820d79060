"""`sea bench`: the benchmark table of benches/run.py when in the checkout (its options pass
through), else — or with --builtin — a small built-in timing of one SeA step per backend.

    sea bench                                         # benches/run.py when in the checkout
    sea bench --builtin --shape 256,1280,10 --repeats 10

Both time with `sea_kernels.timing` (interleaved round-robin, medians), print the number of
CPU threads they use (--threads, default torch's: one per core) and warn on stderr when the
machine is too busy for that many threads (`timing.oversubscribed`).
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from .arguments import integer
from .errors import UsageError

#: This command takes the options it does not know through to benches/run.py.
PASS_THROUGH = True


def add_parser(sub):
    """The `bench` subcommand: --builtin, and the built-in timing's shape and repeats."""
    b = sub.add_parser("bench", help="the benchmark table (benches/run.py when in the checkout, "
                                     "its options pass through), else a small built-in timing",
                       description="In the checkout: benches/run.py, whose options (--shapes, "
                                   "--repeats, --warmup, --threads, --csv, ...; see `python "
                                   "benches/run.py --help`) pass through. Elsewhere, or with "
                                   "--builtin: one SeA step per backend, timed.")
    b.add_argument("--builtin", action="store_true", help="the built-in timing")
    b.add_argument("--shape", default="256,1280,10", help="built-in: b,d,C (default 256,1280,10)")
    b.add_argument("--repeats", type=integer, default=None,
                   help="timed repeats (default: built-in 10; benches/run.py 30)")
    b.add_argument("--threads", type=integer, default=None,
                   help="torch CPU threads (default: torch's, one per core); 1 is steadier on a "
                        "busy machine")
    b.set_defaults(func=run)
    return b


def bench_script() -> Path | None:
    """benches/run.py of the checkout this package runs from; None when installed elsewhere."""
    path = Path(__file__).resolve().parents[2] / "benches" / "run.py"
    return path if path.is_file() else None


def run(args, rest=()) -> int:
    """benches/run.py with the options in `rest`, or the built-in timing."""
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be ≥ 1, got {args.threads}")
    script = None if args.builtin else bench_script()
    if script is not None:
        given = [(flag, value) for flag, value in (("--threads", args.threads),
                                                   ("--repeats", args.repeats))
                 if value is not None]
        return _run_script(script, [v for fv in given for v in (fv[0], str(fv[1]))] + list(rest))
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    return builtin_bench(args.shape, 10 if args.repeats is None else args.repeats, args.threads)


def _run_script(script: Path, argv: list[str]) -> int:
    """Run the script on `argv`: its argparse errors become one `sea: error:` line; the run itself
    writes its progress to stderr as it goes."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_sea_benches_run", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = mod.parser().parse_args(argv)
    except SystemExit as e:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        if e.code not in (0, None) and lines and ": error: " in lines[-1]:
            raise UsageError(f"bench: {lines[-1].split(': error: ', 1)[1]}") from None
        sys.stderr.write(err.getvalue())
        raise
    sys.stderr.write(err.getvalue())
    return int(mod.run_args(args) or 0)


def _shape(text: str) -> tuple[int, int, int]:
    """--shape b,d,C → three integers (b, d ≥ 1, C ≥ 2)."""
    try:
        b, d, c = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--shape must be b,d,C (three integers), got {text!r}") from None
    if min(b, d, c) < 1 or c < 2:
        raise UsageError(f"--shape needs b, d ≥ 1 and C ≥ 2, got {text!r}")
    return b, d, c


def _step_candidates(b: int, d: int, c: int) -> dict:
    """{name: zero-argument callable running one training step (loss + dW)}: the reference and
    every backend usable on CPU."""
    import torch

    from .. import backend_status, fused_sea, reference

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.randint(0, c, (b,), generator=g)
    w0 = torch.randn(d, c, generator=g) * 3 / d ** 0.5

    def step(loss):
        def call():
            w = w0.clone().requires_grad_(True)
            loss(w).backward()
        return call

    cands = {"reference": step(lambda w: reference.sea_loss(x, y, w))}
    for name, (usable, _) in backend_status().items():
        if usable and not (name == "triton" and not torch.cuda.is_available()):
            cands[name] = step(lambda w, n=name: fused_sea(x, y, w, backend=n))
    return cands


def builtin_bench(shape: str, repeats: int, threads: int | None = None) -> int:
    """Median time of one training step (loss + dW) per usable backend, interleaved."""
    import torch

    from .. import timing

    b, d, c = _shape(shape)
    if repeats < 1:
        raise UsageError(f"--repeats must be ≥ 1, got {repeats}")
    timing.use_threads(threads)
    samples = timing.interleaved(_step_candidates(b, d, c), repeats, warmup=1)
    med = {k: timing.median(ts) for k, ts in samples.items()}
    print(f"one SeA step (loss + dW), b={b} d={d} C={c}, float32, {torch.get_num_threads()} "
          f"thread(s), median of {repeats} (interleaved)")
    print(f"{'candidate':12} {'ms/step':>9} {'speed-up':>9}")
    for k, t in med.items():
        print(f"{k:12} {1e3 * t:9.3f} {med['reference'] / t:8.2f}×")
    return 0
