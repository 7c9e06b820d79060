"""One model on N processes (docs/design.md §5 "Processes"): the one place for world detection,
process-group set-up, batch slicing, the gradient all-reduce, rank-0 gating and failure handling.

    torchrun --nproc-per-node 2 -m sea_kernels.cli.main train feats.npz --batch-size 256 ...
    # or any script calling SeAClassifier.fit, unchanged

World. `setup(device)` returns the `World` (size, rank, local_rank): an already-initialised default
process group is used as it is; else WORLD_SIZE/RANK/LOCAL_RANK/MASTER_ADDR/MASTER_PORT (set by
torchrun, also across nodes through its rendezvous) with WORLD_SIZE > 1 initialise one — gloo for
a CPU device, nccl for CUDA (cuda:LOCAL_RANK becomes the current device) — with a timeout of
SEA_DIST_TIMEOUT seconds (default DEFAULT_TIMEOUT_S = 60): a collective that waits longer for a
rank raises instead of hanging. Otherwise the world is one process and nothing changes.
`single_process()` turns the detection off inside its block (for work one rank does alone).

Slicing. Every rank draws the same seeded permutation; `batch_size` B is the GLOBAL batch and must
be divisible by the world size N (per-rank batch b = B/N). The projection groups are defined on
the global batch: G = group_size, or, without one and N > 1, G = b (each rank's slice is its own
group — a one-process run matches it with group_size=b; rank 0 prints a one-line notice). G must
divide b. A batch of m rows (m = B, or the last m = n mod B rows, kept as in one process) is cut
into K = ⌈m/G⌉ consecutive groups and rank r takes the contiguous groups
[⌊rK/N⌋, ⌊(r+1)K/N⌋) (`rank_rows`): b rows at [r·b, (r+1)·b) for a full batch; for the last
batch whole groups, so every rank's groups are the one-process run's groups (a rank may get none).

Step (`train_step`). Rank r computes its rows' mean loss times m_r/m (m_r rows of its slice), i.e.
Σ_{i∈r} ℓ_i/m, backward gives dW_r = Σ_{i∈r} ∇ℓ_i/m; one all-reduce (sum) of [dW_r, loss_r,
diverged_r, failed_r] gives every rank dW = Σ_i ∇ℓ_i/m — the one-process mean gradient up to
summation order — and the batch loss; then the same SGD step on every rank keeps W identical.
`x[rows]` is taken for this rank's rows only, so with lazy features (`lazy_features`,
`data.features.LazyRows`) a rank reads only its rows of each global batch from the file.

Failure. Errors are agreed between ranks (`agree`: an all_gather of (error, info)): a rank whose
step raised (a NaN loss, bad input, out of memory) reports it through the flags of the step's
all-reduce, then every rank raises the error of the lowest failing rank (ranks other than 0 mark
it `sea_quiet`, so the command line prints it once, on rank 0). Errors outside those points make
the rank abort the process group (`Run.__exit__`), so the others' next collective fails at once;
a killed rank is noticed by gloo when its connections close, a hung one after the timeout; either
way the others raise `RankLost` naming the rank. Under torchrun the agent also stops the other
workers as soon as one exits non-zero.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import pickle
import sys
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["World", "SINGLE", "TIMEOUT_ENV", "DEFAULT_TIMEOUT_S", "RankLost", "setup",
           "single_process", "timeout_s", "local_batch_size", "projection_group", "rank_rows",
           "check_augment", "lazy_features", "train_step", "agree", "start_fit", "Run",
           "is_main", "notice", "mark_quiet"]

TIMEOUT_ENV = "SEA_DIST_TIMEOUT"
#: Seconds a collective waits for the other ranks before it raises (SEA_DIST_TIMEOUT overrides).
DEFAULT_TIMEOUT_S = 60.0
#: Augmentations whose loss is a sum of per-row terms given W and the row's projection group —
#: exact when the batch is split across ranks. rand/mixup draw from a per-batch generator and
#: ISDA updates class covariances from each whole batch: one process only.
_SHARDABLE = ("sea", "sea_neg", "none", "adv", "me_ada")
#: Of those, the ones that never use the whole training set (no before_epoch / training_set
#: state; me_ada generates copies of every row): with N > 1 their features stay lazy.
_ROW_WISE = ("sea", "sea_neg", "none", "adv")
_single = [0]


class RankLost(RuntimeError):
    """A collective with the other ranks failed: another rank failed, was killed or hung."""


@dataclass(frozen=True)
class World:
    """The processes training one model: `size` ranks, this one `rank` (`local_rank` on its
    node); `owned`: the process group was initialised here."""
    size: int = 1
    rank: int = 0
    local_rank: int = 0
    owned: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def _env_int(name: str, default=None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def timeout_s() -> float:
    """The collective timeout in seconds: SEA_DIST_TIMEOUT, default DEFAULT_TIMEOUT_S."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"environment variable {TIMEOUT_ENV}={raw!r} must be a positive number "
                         "of seconds")
    return value


@contextlib.contextmanager
def single_process():
    """Inside the block `setup` reports one process (for work that one rank does alone)."""
    _single[0] += 1
    try:
        yield
    finally:
        _single[0] -= 1


def _destroy() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _finish() -> None:
    """At a normal exit: wait for every rank (bounded by the process-group timeout), then
    destroy the group. A rank that tore its group down while another was still writing its
    outputs died now and then in gloo's shutdown ("terminate called without an active
    exception", SIGABRT). Error paths call `_destroy` directly, which makes this a no-op."""
    import torch.distributed as dist
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
    _destroy()


def setup(device="cpu") -> World:
    """The world of this process, the process group initialised when torchrun's variables say
    WORLD_SIZE > 1 and none is (see the module docstring). ValueError for inconsistent variables."""
    if _single[0]:
        return SINGLE
    import torch.distributed as dist
    if not dist.is_available():
        return SINGLE
    if dist.is_initialized():
        size, rank = dist.get_world_size(), dist.get_rank()
        return World(size, rank, _env_int("LOCAL_RANK", rank))
    size = _env_int("WORLD_SIZE", 1)
    if size is None or size <= 1:
        return SINGLE
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK", None)
    if rank is None or not 0 <= rank < size:
        raise ValueError(f"WORLD_SIZE={size} is set but RANK={os.environ.get('RANK')!r} is not a "
                         f"rank in [0, {size}); start the processes with torchrun")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ValueError(f"WORLD_SIZE={size} is set but {' and '.join(missing)} not; start the "
                         "processes with torchrun (it sets them)")
    local = rank if local is None else local
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://", world_size=size,
                            rank=rank, timeout=datetime.timedelta(seconds=timeout_s()))
    atexit.register(_finish)
    return World(size, rank, local, owned=True)


def is_main(world: World | None = None) -> bool:
    """Whether this process writes files and prints (rank 0; always with one process)."""
    return (world or setup()).main


def notice(world: World, message: str) -> None:
    """One line on stderr, from rank 0 only."""
    if world.main:
        print(f"sea: {message}", file=sys.stderr, flush=True)


def mark_quiet(exc: BaseException, world: World) -> BaseException:
    """Mark an error that every rank raises alike: `sea_agreed` (no abort needed) and, off rank
    0, `sea_quiet` (the command line prints it on rank 0 only)."""
    if world.size > 1:
        with contextlib.suppress(AttributeError, TypeError):
            exc.sea_agreed = True
            if not world.main:
                exc.sea_quiet = True
    return exc


# ---------------------------------------------------------------------- slicing
def check_augment(augment: str, world: World) -> None:
    """ValueError when `augment` cannot be split across ranks exactly."""
    if world.size > 1 and augment not in _SHARDABLE:
        raise ValueError(f"augment={augment!r} cannot train on {world.size} processes (its random "
                         "draws or class statistics are per whole batch); run it in one process "
                         f"or use one of {', '.join(_SHARDABLE)}")


def lazy_features(augment: str, X, world: World) -> bool:
    """True when fit should read only this rank's rows of X (`data.features.LazyRows`): N > 1,
    X one numpy array (np.memmap included) and `augment` row-wise (_ROW_WISE)."""
    import numpy as np
    return world.size > 1 and augment in _ROW_WISE and isinstance(X, np.ndarray)


def local_batch_size(batch_size: int, world: World) -> int:
    """b = B/N; ValueError naming batch_size and the world size when N does not divide B."""
    if batch_size % world.size:
        raise ValueError(f"batch_size={batch_size} is the global batch and must be divisible by "
                         f"the world size {world.size} (every rank takes batch_size/"
                         f"{world.size} rows); use e.g. batch_size="
                         f"{max(world.size, batch_size - batch_size % world.size)}")
    return batch_size // world.size


def projection_group(group_size: int | None, batch_size: int, world: World) -> int | None:
    """G of the sharded run (None with one process: the op's own group_size applies). Without
    group_size G = b (the per-rank batch); with it, G must divide b (ValueError otherwise)."""
    if world.size == 1:
        return group_size
    b = local_batch_size(batch_size, world)
    if group_size is None:
        return b
    if b % group_size:
        raise ValueError(f"group_size={group_size} must divide the per-rank batch "
                         f"batch_size/world size = {batch_size}/{world.size} = {b}: projection "
                         "groups cannot straddle ranks")
    return group_size


def rank_rows(m: int, group: int | None, world: World) -> tuple[int, int]:
    """[start, stop) of this rank's rows in a global batch of m rows (see the module docstring)."""
    if world.size == 1:
        return 0, m
    groups = -(-m // group)
    lo = world.rank * groups // world.size
    hi = (world.rank + 1) * groups // world.size
    return min(lo * group, m), min(hi * group, m)


# ---------------------------------------------------------------------- agreement and steps
def _payload(error: BaseException | None):
    if error is None:
        return None
    text = " ".join(str(error).split()) or type(error).__name__
    try:
        blob = pickle.dumps(error)
        pickle.loads(blob)
    except Exception:   # noqa: BLE001 — an exception that does not pickle travels as text
        blob = None
    return type(error).__name__, text, blob


def _rebuild(rank: int, payload) -> BaseException:
    name, text, blob = payload
    if blob is not None:
        try:
            exc = pickle.loads(blob)
            if len(exc.args) == 1 and isinstance(exc.args[0], str):
                exc.args = (f"rank {rank}: {exc.args[0]}",)
            return exc
        except Exception:   # noqa: BLE001
            pass
    return RankLost(f"rank {rank} failed: {name}: {text}")


def _collective(fn, what: str, world: World):
    try:
        return fn()
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RankLost(f"rank {world.rank}: {what} with the other {world.size - 1} rank(s) "
                       f"failed ({type(e).__name__}: {first}); another rank failed, was killed "
                       "or hung — its own error is printed there") from e


def _alive() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def agree(world: World, error: BaseException | None = None, info=None) -> list:
    """All ranks exchange (error, info); returns every rank's info when no rank failed, else every
    rank raises the error of the lowest failing rank (its own object on that rank)."""
    if world.size == 1 or not _alive():
        if error is not None:
            raise error
        return [info]
    import torch.distributed as dist
    gathered = [None] * world.size
    _collective(lambda: dist.all_gather_object(gathered, (_payload(error), info)),
                "exchanging status", world)
    failed = [(r, p) for r, (p, _) in enumerate(gathered) if p is not None]
    if failed:
        rank, payload = failed[0]
        exc = error if (rank == world.rank and error is not None) else _rebuild(rank, payload)
        mark_quiet(exc, world)
        if exc is error:
            raise exc
        raise exc from error
    return [i for _, i in gathered]


def train_step(world: World, idx: Tensor, x: Tensor, y: Tensor, weight: Tensor, opt, loss_fn,
               group: int | None) -> Tensor:
    """One SGD step on the global batch `idx`, this rank computing `rank_rows` of it (see the
    module docstring). loss_fn(xb, yb) → mean loss of the rows. Returns the global batch loss."""
    import torch.distributed as dist
    m = int(idx.numel())
    start, stop = rank_rows(m, group, world)
    error = None
    part = torch.zeros((), dtype=weight.dtype, device=weight.device)
    opt.zero_grad(set_to_none=True)
    try:
        if stop > start:
            rows = idx[start:stop]
            loss = loss_fn(x[rows], y[rows]) * ((stop - start) / m)
            loss.backward()
            part = loss.detach().to(weight.dtype)
    except Exception as e:   # noqa: BLE001 — every rank learns of it below
        error = e
    grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
    buf = torch.cat([grad.detach().reshape(-1).to(weight.dtype), part.reshape(1),
                     weight.new_tensor([float(error is not None)])])
    _collective(lambda: dist.all_reduce(buf), "the gradient all-reduce", world)
    if float(buf[-1]) > 0:
        agree(world, error)
    weight.grad = buf[:-2].reshape(weight.shape).clone()
    opt.step()
    return buf[-2]


def start_fit(run: "Run", params: dict, fingerprint: list, seed: int,
              start: int) -> tuple[int, int | None]:
    """(seed, G) of a fit on `run.world`: one process → (seed, params["group_size"]); else the
    checks (augment, batch_size, group_size), the start agreement (same data, parameters and
    first epoch on every rank) and rank 0's seed (random_state=None draws one per rank)."""
    world = run.world
    if world.size == 1:
        return seed, params.get("group_size")
    from .checkpoint import plain_params, same_fingerprint
    check_augment(params["augment"], world)
    group = projection_group(params.get("group_size"), params["batch_size"], world)
    shared = {k: v for k, v in plain_params(params).items() if k not in ("device", "verbose")}
    infos = run.start({"params": shared, "start": start, "seed": seed, "fp": fingerprint,
                       "free": ("seed", "fp")})
    for rank, info in enumerate(infos):
        if not same_fingerprint(info["fp"], infos[0]["fp"]):
            raise mark_quiet(ValueError(
                f"rank {rank} holds other training data than rank 0 ((n, d, C) = "
                f"{tuple(info['fp'][:3])} vs {tuple(infos[0]['fp'][:3])}, or other values): "
                "every rank must fit the same data"), world)
    if params.get("group_size") is None and params["augment"] in ("sea", "sea_neg"):
        notice(world, f"group_size not set: on {world.size} processes each rank's "
                      f"{group} rows are its SeA projection group (one process matches this "
                      f"with group_size={group})")
    return int(infos[0]["seed"]), group


class Run:
    """Failure handling around one fit. `start(info)` is the first agreement: every rank's info
    (data fingerprint, parameters, seed, first epoch) is compared with rank 0's. An error before
    it is agreed there (all ranks raise the lowest failing rank's error); an error after it that
    no agreement handled aborts the process group, so the other ranks' next collective fails at
    once (RankLost) instead of waiting for the timeout."""

    def __init__(self, world: World):
        self.world, self.started = world, False

    def start(self, info: dict) -> list[dict]:
        """Every rank's info, after checking each equals rank 0's but for the keys in
        info["free"] (ValueError on every rank naming the first rank and key that differ)."""
        infos = agree(self.world, None, info)
        self.started = True
        ref, free = infos[0], set(info.get("free", ()))
        for rank, other in enumerate(infos):
            for key in ref:
                if key not in free and key != "free" and other.get(key) != ref.get(key):
                    raise mark_quiet(ValueError(
                        f"rank {rank} disagrees with rank 0 on {key} ({other.get(key)!r} vs "
                        f"{ref.get(key)!r}): every rank must fit the same data with the same "
                        "parameters"), self.world)
        return infos

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or self.world.size == 1 or getattr(exc, "sea_agreed", False):
            return False
        if not self.started and isinstance(exc, Exception) and _alive():
            self.started = True
            agree(self.world, exc)     # raises the agreed error on every rank
        _destroy()                     # the others' next collective fails at once
        with contextlib.suppress(AttributeError, TypeError):
            exc.sea_agreed = True      # handled: an enclosing Run leaves it alone
        return False


#: The Runs open in this process (`session`), innermost last.
_open_runs: list[Run] = []


@contextlib.contextmanager
def session(device="cpu"):
    """The `Run` of this piece of work, set up once: the innermost one already open in this
    process (a command opened it around everything it does, `fit` then trains in it), else — or
    inside `single_process` — a new one on `setup(device)`, open for the block."""
    if _open_runs and not _single[0]:
        yield _open_runs[-1]
        return
    with Run(setup(device)) as run:
        _open_runs.append(run)
        try:
            yield run
        finally:
            _open_runs.remove(run)
