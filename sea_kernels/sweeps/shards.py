"""Sweeps on N processes: the configurations sharded across ranks by cost (docs/design.md §5).

Every rank holds the same features and the same seeded permutation, so a configuration trained on
any rank sees exactly the batches it sees in one process. Rank r trains its share in one pass of
the sweep engine (`train_many`); the per-configuration results (validation accuracies, diverged,
last-epoch loss) are gathered on every rank (`all_gather_object`), so the selection — argmax of the
validation metric, ties to the first in grid order — is computed from the same numbers everywhere.

Cost model (`config_costs`, flops per step at batch b, d features, C classes): every
configuration pays the plain GEMMs 4bdC (logits XW, dW = XᵀR); an η > 0 one adds the b×b work
of its groups (`op.groups.group_blocks`), per group of g rows 2g²·min(g, d) (QK, or QX when
d < g) + 6g²C (S, QL, D'Q) + 8g² (the softmaxes). η = 0 configurations skip it (the exact
baseline block), so they are cheap.
Shards: greedy longest-processing-time (`assign_shards`): configurations by decreasing cost (ties
in grid order) each to the least-loaded rank (ties to the lowest rank) — within 4/3 of the best
makespan; each shard is kept in grid order.

World detection, the process group and failure handling are `train.distributed`'s: a rank whose
training raises still takes part in the gather (`distributed.agree`) with its error, and every
rank then raises it at once; a rank that dies makes the gather fail on the others with
`distributed.RankLost` (gloo: the closed connection; otherwise after the collective timeout
SEA_DIST_TIMEOUT), so no rank hangs. Rank 0 alone retrains the winner, with the world turned off
(`distributed.single_process`): the retrained model is the one-process sweep's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["config_costs", "assign_shards", "Gathered", "train_sharded"]


def config_costs(configs: Sequence[dict], *, batch_size: int, n_rows: int, d: int, c: int,
                 group_size: int | None = None) -> np.ndarray:
    """Relative cost of each configuration per training step (the module docstring's model)."""
    from ..op.groups import group_blocks
    b = max(1, min(int(batch_size), int(n_rows)))
    plain = 4.0 * b * d * c
    sea = sum(n * (2.0 * g * g * min(g, d) + 6.0 * g * g * c + 8.0 * g * g)
              for _, n, g in group_blocks(b, group_size))
    eta = np.array([float(cfg["eta"]) for cfg in configs])
    return plain + np.where(eta != 0, sea, 0.0)


def assign_shards(costs, world_size: int) -> list[np.ndarray]:
    """Greedy LPT: indices of each rank's configurations (ascending), balanced by cost."""
    costs = np.asarray(costs, dtype=np.float64)
    order = np.lexsort((np.arange(len(costs)), -costs))      # decreasing cost, ties in grid order
    load = np.zeros(world_size)
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for i in order:
        r = int(np.argmin(load))                             # least loaded, ties → lowest rank
        shards[r].append(int(i))
        load[r] += costs[i]
    return [np.array(sorted(s), dtype=np.int64) for s in shards]


@dataclass
class Gathered:
    """Per-configuration results of all shards, in grid order (what `sweep` needs of a pass).

    best_weights: {global index: (d × C) CPU tensor} — each rank's own best by the metric (ties
    to the first in grid order); the global winner is always among them."""
    val_top1: np.ndarray
    val_mean_per_class: np.ndarray
    diverged: np.ndarray
    train_loss: np.ndarray
    wall_time_s: float
    steps: int
    best_weights: dict
    shards: list


def _local_best(scores: np.ndarray) -> int | None:
    finite = np.isfinite(scores)
    return int(np.argmax(np.where(finite, scores, -np.inf))) if finite.any() else None


def _payload(train: Callable, configs, idx, metric: str):
    """(error or None, this rank's share: trained, with what the gather needs — k numbers each
    and one d×C weight)."""
    out = {"idx": idx}
    if len(idx) == 0:
        return None, out
    try:
        many = train([configs[i] for i in idx])
    except Exception as e:  # noqa: BLE001 — agreed below: every rank raises it
        return e, out
    top1 = many.history["val"]["top1"][-1]
    mpc = many.history["val"]["mean_per_class"][-1]
    j = _local_best(top1 if metric == "top1" else mpc)
    out.update(top1=top1, mpc=mpc, diverged=many.diverged, loss=many.train_loss[-1],
               wall=many.wall_time_s, steps=many.steps,
               best=None if j is None else (int(idx[j]), many.weights[j].clone()))
    return None, out


def train_sharded(train: Callable, configs: Sequence[dict], costs, world, *,
                  metric: str = "top1", fingerprint=None) -> Gathered:
    """Train this rank's share with `train(sub_configs) -> ManyResult` (validation set "val",
    evaluated after the last epoch), gather every share on every rank (`distributed.agree`: an
    error of any rank is raised on every rank), merge in grid order. `fingerprint`
    (`checkpoint.fingerprint` of the training rows) must match rank 0's (ValueError on every
    rank otherwise: every rank must sweep the same data)."""
    from ..train.checkpoint import same_fingerprint
    from ..train.distributed import agree, mark_quiet

    shards = assign_shards(costs, world.size)
    error, mine = _payload(train, configs, shards[world.rank], metric)
    mine["fp"] = fingerprint
    parts = agree(world, error, mine)
    for rank, p in enumerate(parts):
        if fingerprint is not None and not same_fingerprint(p["fp"], parts[0]["fp"]):
            raise mark_quiet(ValueError(
                f"rank {rank} swept other training data than rank 0 ((n, d, C) = "
                f"{tuple(p['fp'][:3])} vs {tuple(parts[0]['fp'][:3])}, or other values): every "
                "rank must sweep the same data"), world)
    k = len(configs)
    top1, mpc, loss = (np.full(k, np.nan) for _ in range(3))
    diverged = np.zeros(k, dtype=bool)
    best, wall, steps = {}, 0.0, 0
    for p in parts:
        idx = p["idx"]
        if len(idx) == 0:
            continue
        top1[idx], mpc[idx], loss[idx] = p["top1"], p["mpc"], p["loss"]
        diverged[idx] = p["diverged"]
        wall, steps = max(wall, p["wall"]), max(steps, p["steps"])
        if p["best"] is not None:
            best[p["best"][0]] = p["best"][1]
    return Gathered(val_top1=top1, val_mean_per_class=mpc, diverged=diverged, train_loss=loss,
                    wall_time_s=wall, steps=steps, best_weights=best, shards=shards)
