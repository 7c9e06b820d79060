"""Many linear classifiers trained at once on shared mini-batches: `train_many` and its engine
(docs/design.md §4).

Every configuration sees the same shuffled batches, so the grid shares each batch: the weights are
stacked into one d × kC matrix (X W and Xᵀ R are single GEMMs), K = X Xᵀ is computed once per batch
and the b×b SeA work runs batched over configurations (`sea_kernels.op.batched`). Each
configuration's result is the one `SeAClassifier` gets training it alone:

* weights start at zero (d × C, no bias); each epoch `perm = torch.randperm(n, generator=g)` with
  `g = torch.Generator().manual_seed(random_state)`; batches are consecutive slices of perm of
  `batch_size` rows, the last partial batch kept;
* step: loss = fused_sea(x_b, y_b, W, α, η, λ, δ, reduction="mean"), then torch.optim.SGD
  (lr, momentum 0.9, dampening 0, weight_decay): d_p = ∇ + wd·W; buf = d_p at the first step,
  else 0.9·buf + d_p; W −= lr·buf;
* evaluation: plain logits X W; top-1 and mean per-class accuracy;
* group_size g (None: the whole batch, the paper): each batch is cut into consecutive groups of g
  rows and each row is projected onto the other rows of its group only (docs/design.md §5) —
  what `fused_sea(..., group_size=g)` does for one classifier.

A configuration whose loss becomes non-finite at a step, or that diverges by the trainer's rule at
the end of an epoch (`divergence.divergence_reasons`), is marked diverged and frozen; its
evaluation accuracies are NaN. The step loop never waits for the device: a non-finite loss is
caught on the device and masks that configuration's update from then on (its W stays the last
finite one, it cannot touch the others), and the host reads the epoch's losses, the steps at
which configurations were caught and whether their weights are finite once, at the epoch's end;
the caught configurations are then removed from the stacked matrices (no cost after that epoch).
Zero rows of X are found once per fit, so a batch needs no check on the device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..data.labels import class_indices
from ..op.batched import Hyper, Workspace, batched_sea_grad
from ..params import BATCH_SIZE, EPOCHS, MOMENTUM, ParameterError, check_int, check_seed
from ..train.devices import check_device
from ..train.divergence import divergence_reasons, zero_classifier_loss
from .grid import normalize_config

__all__ = ["ManyResult", "train_many", "evaluate_many", "prepare", "check_group_size",
           "memory_plan"]


def _as_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def _compute_dtype(x: torch.Tensor, dtype) -> torch.dtype:
    from ..op.call import compute_dtype
    return dtype if dtype is not None else compute_dtype(x)


def prepare(X, device=None) -> torch.Tensor:
    """Features exactly as `SeAClassifier` prepares them: `features.prepare_features` (per-block
    L2 normalisation, concatenation, renormalisation; float32, float64 stays float64)."""
    from ..data.features import prepare_features
    return prepare_features(X, device=device)


def _labels(y, name: str, n_rows: int, num_classes: int | None, device) -> torch.Tensor:
    """Class indices (`data.labels.class_indices`) as a long tensor on `device`."""
    return torch.from_numpy(class_indices(y, name, n_rows, num_classes)).to(device)


@torch.no_grad()
def evaluate_many(x: torch.Tensor, labels: torch.Tensor, weight_all: torch.Tensor, num_classes: int,
                  *, max_block_elems: int = 2 ** 23):
    """Top-1 and mean per-class accuracy (numpy (k,) each) of k stacked classifiers
    weight_all (d × kC) on features x (n × d), by plain logits x W_k (argmax, first on ties)."""
    n = x.shape[0]
    kc = weight_all.shape[1]
    k = kc // num_classes
    labels = labels.to(x.device)
    correct_by_class = torch.zeros(num_classes, k, dtype=torch.float64, device=x.device)
    block = max(1, max_block_elems // max(1, kc))
    for lo in range(0, n, block):
        xb = x[lo:lo + block].to(weight_all.dtype)
        yb = labels[lo:lo + block]
        pred = (xb @ weight_all).view(-1, k, num_classes).argmax(dim=2)
        correct = (pred == yb[:, None]).to(torch.float64)
        correct_by_class.index_add_(0, yb, correct)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    present = counts > 0
    top1 = correct_by_class.sum(dim=0) / max(1, n)
    mpc = (correct_by_class[present] / counts[present, None]).mean(dim=0)
    return top1.cpu().numpy(), mpc.cpu().numpy()


# ----------------------------------------------------------------------------- the engine

@dataclass
class ManyResult:
    """What `train_many` returns.

    weights: (k, d, C) float tensor on the CPU, in the order of `configs` (a diverged
      configuration keeps the non-finite weights it had when it was caught);
    diverged: (k,) bool — a non-finite loss or weight, or (checked after every epoch, as
      SeAClassifier does) a mean train loss above 2× the all-zero classifier's or 1000× the
      first epoch's; diverged_step: (k,) global step index at which it was caught (−1);
    train_loss: (epochs, k) mean of each epoch's batch losses (NaN once diverged);
    history: {eval set name: {"top1": (E, k), "mean_per_class": (E, k)}} at `eval_epochs`
      (1-based epoch numbers; NaN for diverged configurations).
    """
    configs: list
    weights: torch.Tensor
    diverged: np.ndarray
    diverged_step: np.ndarray
    train_loss: np.ndarray
    history: dict
    eval_epochs: list
    wall_time_s: float
    steps: int


class _Engine:
    """The stacked state of the still-active configurations and one SGD step for all of them.

    Configurations are kept in `order` (η = 0 first, so they form one cheap block)."""

    def __init__(self, configs, d, num_classes, dtype, device, chunk_size, max_chunk_bytes,
                 group_size=None):
        self.c = num_classes
        # passed to the batched engine only when set (0/None there = the whole batch)
        self.group_kw = {} if group_size is None else {"group_size": int(group_size)}
        self.d = d
        self.dtype = dtype
        self.device = device
        eta = np.array([cfg["eta"] for cfg in configs])
        self.order = np.concatenate([np.flatnonzero(eta == 0), np.flatnonzero(eta != 0)])
        self.active = self.order.copy()                     # original indices, engine order
        self.active_t = torch.as_tensor(self.active, device=device)

        def vec(key):
            return torch.tensor([configs[i][key] for i in self.active], dtype=dtype,
                                device=device)

        self.hyper = Hyper(vec("alpha"), vec("eta"), vec("lam"), vec("delta"))
        self.lr = vec("lr")
        self.wd = vec("weight_decay")
        self.n_baseline = int((eta == 0).sum())
        k = len(configs)
        self.weight_t = torch.zeros(k * num_classes, d, dtype=dtype, device=device)  # W_allᵀ
        self.buf = None
        self.alive = torch.ones(k, dtype=torch.bool, device=device)      # engine order
        self.caught = torch.full((k,), -1, dtype=torch.int64, device=device)
        self._rows()
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        self.workspace = Workspace()

    def _rows(self):
        c = self.c
        self.neg_lr_rows = (-self.lr).repeat_interleave(c)[:, None]
        self.wd_rows = self.wd.repeat_interleave(c)[:, None]
        self.any_wd = bool((self.wd != 0).any())

    @property
    def k(self) -> int:
        return len(self.active)

    def drop(self, bad: np.ndarray):
        """Freeze the configurations at positions `bad` (engine order); returns their original
        indices and weights (k_bad, d, C) on the CPU."""
        keep = np.flatnonzero(~bad)
        gone = np.flatnonzero(bad)
        c, d = self.c, self.d
        w3 = self.weight_t.view(self.k, c, d)
        frozen = w3[torch.as_tensor(gone, device=self.device)].transpose(1, 2).cpu().clone()
        keep_t = torch.as_tensor(keep, device=self.device)
        self.weight_t = w3[keep_t].reshape(len(keep) * c, d)
        if self.buf is not None:
            self.buf = self.buf.view(self.k, c, d)[keep_t].reshape(len(keep) * c, d)
        self.hyper = self.hyper.take(keep_t)
        self.lr, self.wd = self.lr[keep_t], self.wd[keep_t]
        self.alive, self.caught = self.alive[keep_t], self.caught[keep_t]
        self.n_baseline = int((keep < self.n_baseline).sum())
        orig = self.active[gone]
        self.active = self.active[keep]
        self.active_t = torch.as_tensor(self.active, device=self.device)
        self._rows()
        return orig, frozen

    def step(self, xb, yb, step: int = 0, keep="auto", x_gemm=None):
        """One SGD step of every active configuration on batch (xb, yb), global step index
        `step`; returns the losses (k,). No host sync: a configuration whose loss is non-finite
        is caught on the device (`alive` false, `caught` = step) and from then on its update is
        masked out — its W stays the last finite one — until `drop` removes it at the epoch's
        end. Non-finite weights always make the loss non-finite (NaN/Inf logits reach it through
        the softmax) by the next step, so checking k numbers suffices. keep: the batch's non-zero
        rows for the batched engine (None: all rows non-zero; "auto": it checks, one sync).
        x_gemm: the batch in its 16-bit input dtype for the stacked GEMMs (`batched_sea_grad`)."""
        grad, losses = batched_sea_grad(xb, yb, self.weight_t, self.hyper, self.c,
                                        n_baseline=self.n_baseline, chunk_size=self.chunk_size,
                                        max_chunk_bytes=self.max_chunk_bytes,
                                        workspace=self.workspace, keep=keep, x_gemm=x_gemm,
                                        **self.group_kw)
        bad = ~torch.isfinite(losses)
        self.caught.masked_fill_(bad & self.alive, step)
        self.alive &= ~bad
        if self.any_wd:
            grad.addcmul_(self.weight_t, self.wd_rows)
        dead = ~self.alive.repeat_interleave(self.c)[:, None]           # (kC, 1)
        grad.masked_fill_(dead, 0)                                      # NaN/Inf rows too
        if self.buf is None:
            self.buf = grad.clone()  # grad lives in the workspace
        else:
            self.buf.mul_(MOMENTUM).add_(grad)
        self.weight_t.addcmul_(self.buf, self.neg_lr_rows.masked_fill(dead, 0))
        return losses

    def nonfinite_weights(self) -> torch.Tensor:
        """(k,) bool on the device: whose W holds a NaN/Inf."""
        return ~torch.isfinite(self.weight_t.view(self.k, -1)).all(dim=1)

    def weights_dc(self) -> torch.Tensor:
        """W_all (d × kC) — the layout for evaluation GEMMs (a transposed view, no copy)."""
        return self.weight_t.T

    def full_weight(self, k_total: int, frozen: dict) -> torch.Tensor:
        """All configurations' weights (k_total × d × C) in the original order, on the CPU."""
        out = torch.empty(k_total, self.d, self.c, dtype=self.dtype)
        if self.k:
            out[torch.as_tensor(self.active)] = self.weight_t.view(self.k, self.c, self.d
                                                                   ).transpose(1, 2).cpu()
        for i, w in frozen.items():
            out[i] = w
        return out


def memory_plan(k: int, d: int, c: int, b: int, dtype=torch.float32, device_type: str = "cuda",
                max_chunk_bytes: int | None = None) -> dict:
    """Bytes `train_many` holds for k configurations while it trains (the features excluded):
    the tensors the engine allocates, in the compute dtype (e bytes an element).

    weights W_allᵀ, momentum buffer and gradient workspace: k·C·d·e each (3 k·C·d·e);
    logits L_allᵀ and rows R_allᵀ workspaces: k·C·b·e each; the chunk working set of the η > 0
    configurations: at most `auto_chunk_size`'s budget (1 GiB on CUDA, 16 MiB on the CPU), at
    least one configuration's (`op.batched.chunk_bytes_per_config`); the result's weights
    (ManyResult.weights, k·C·d·e on the CPU, built at the end). Transient: dropping diverged
    configurations at an epoch's end copies the kept weights and momentum once more.
    """
    from ..op.batched import auto_chunk_size, chunk_bytes_per_config
    e = torch.finfo(dtype).bits // 8
    stacked = k * c * d * e
    chunk = (min(k, auto_chunk_size(b, d, c, dtype, max_chunk_bytes, device_type))
             * chunk_bytes_per_config(b, d, c, dtype))
    plan = {"weights": stacked, "momentum": stacked, "gradient": stacked,
            "logits_rows": 2 * k * c * b * e, "chunk": chunk, "result": stacked}
    plan["total"] = sum(plan.values())
    return plan


def _warn_overflow(rows: int, epoch: int) -> None:
    """A RuntimeWarning when rare rows exceeded the batched engine's fixed per-step budget
    (`op.batched.rare_budget`): those rows kept the Gram-space value instead of the direct one."""
    if rows:
        import warnings
        warnings.warn(f"epoch {epoch + 1}: {rows} rows needed the direct (cancellation-free) "
                      "repair beyond the batched engine's fixed per-chunk budget and kept the "
                      "Gram-space value; raise max_chunk_bytes (the budget is an eighth of it)",
                      RuntimeWarning, stacklevel=3)


def _resolve_device(device, x):
    """The training device: `device` checked usable (`devices.check_device`), else the device of
    a tensor x, else CUDA when available, else the CPU."""
    if device is not None:
        return check_device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_random_state(value, name: str = "random_state") -> int:
    """A sweep's seed: an int in [0, 2⁶⁴) (`params.check_seed`; None is refused, the engine
    needs one seed for every configuration)."""
    seed = check_seed(value, name)
    if seed is None:
        raise ParameterError(f"{name} must be an int (the seed every configuration shares), "
                             "got None")
    return seed


def check_group_size(value) -> int | None:
    """None (the whole batch) or an int ≥ 1 — the op's rule (`op.call.check_group_size`,
    ParameterError / ValueError naming group_size)."""
    from ..op.call import check_group_size as op_check
    return op_check(value)


def train_many(X, y, configs: Sequence[Mapping[str, Any]], *, epochs: int = EPOCHS,
               batch_size: int = BATCH_SIZE, random_state: int = 0, group_size: int | None = None,
               eval_sets: Mapping | None = None, eval_every: int | None = 1,
               num_classes: int | None = None,
               chunk_size: int | None = None, max_chunk_bytes: int | None = None, device=None,
               dtype: torch.dtype | None = None, progress: bool = False) -> ManyResult:
    """Train every configuration at once on (X, y); features are used as given (prepare them
    first: `prepare`), float64 inputs train in float64, anything else in float32; bfloat16 /
    float16 features (with dtype=None) keep their dtype in the two stacked GEMMs per step, X W_all
    and R_allᵀX (tensor cores, fp32 accumulation; docs/design.md §4), the rest in float32.

    configs: list of dicts (keys lr, weight_decay, alpha, lam, delta, eta; missing → DEFAULTS).
    eval_sets: {name: (X_e, y_e)} evaluated after every `eval_every` epochs and after the last
    (eval_every=None: only after the last). chunk_size: η > 0 configurations per batched b×b
    chunk (None: sized from max_chunk_bytes, default 16 MiB on CPU, 1 GiB on GPU); results do
    not depend on it beyond float rounding. group_size: rows per SeA group (None: the whole
    batch; see the module docstring). Returns a ManyResult.
    """
    t0 = time.perf_counter()
    configs = [normalize_config(cfg, f"configs[{i}]") for i, cfg in enumerate(configs)]
    if not configs:
        raise ValueError("configs is empty; give at least one configuration")
    epochs, batch_size = check_int("epochs", epochs), check_int("batch_size", batch_size)
    random_state = check_random_state(random_state)
    group_size = check_group_size(group_size)
    chunk_size, max_chunk_bytes = (None if v is None else check_int(name, v) for name, v in
                                   (("chunk_size", chunk_size),
                                    ("max_chunk_bytes", max_chunk_bytes)))
    if eval_every is not None:
        eval_every = check_int("eval_every", eval_every, minimum=0)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, minimum=1)
    device = _resolve_device(device, X)
    x = _as_tensor(X)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (samples × features), got shape "
                         f"{tuple(x.shape)}")
    x_in = x.to(device) if x.dtype in (torch.bfloat16, torch.float16) and dtype is None else None
    dtype = _compute_dtype(x, dtype)
    x = x.to(device=device, dtype=dtype)
    n, d = x.shape
    labels = _labels(y, "y", n, num_classes, device)
    c = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    evals = {}
    for name, (xe, ye) in (eval_sets or {}).items():
        xe = _as_tensor(xe).to(device=device, dtype=dtype)
        ye = _labels(ye, f"eval_sets[{name!r}] y", None, c, device)
        if xe.dim() != 2 or xe.shape[1] != d or ye.shape[0] != xe.shape[0]:
            raise ValueError(f"eval_sets[{name!r}] must be (X (m × {d}), y (m,)), got shapes "
                             f"{tuple(xe.shape)} and {tuple(ye.shape)}")
        evals[name] = (xe, ye)

    k = len(configs)
    engine = _Engine(configs, d, c, dtype, device, chunk_size, max_chunk_bytes, group_size)
    frozen: dict[int, torch.Tensor] = {}
    diverged = np.zeros(k, dtype=bool)
    diverged_step = np.full(k, -1, dtype=np.int64)
    train_loss = np.full((epochs, k), np.nan)
    history = {name: {"top1": [], "mean_per_class": []} for name in evals}
    eval_epochs = []
    gen = torch.Generator().manual_seed(random_state)
    steps_per_epoch = -(-n // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * steps_per_epoch, desc=f"sweep ({k} configs)", unit="step")

    def freeze(bad_positions, steps):
        orig, weights = engine.drop(bad_positions)
        for i, w, at in zip(orig, weights, steps):
            frozen[int(i)] = w
            diverged[i] = True
            diverged_step[i] = at

    zero_rows = (x == 0).all(dim=1).cpu().numpy()           # host-side: no sync per batch
    zero_loss = np.array([zero_classifier_loss(cfg["lam"], cfg["delta"], c) for cfg in configs])
    step = 0
    with torch.no_grad():
        for epoch in range(epochs):
            perm_cpu = torch.randperm(n, generator=gen)                 # drawn on the host
            perm = perm_cpu.to(device)
            perm_np = perm_cpu.numpy() if zero_rows.any() else None
            loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
            batches = 0
            for lo in range(0, n, batch_size):
                if engine.k == 0:
                    break
                idx = perm[lo:lo + batch_size]
                xb = x[idx]
                keep = None if perm_np is None or not zero_rows[perm_np[lo:lo + batch_size]].any() \
                    else xb.ne(0).any(dim=1)
                losses = engine.step(xb, labels[idx], step, keep,
                                     None if x_in is None else x_in[idx])
                loss_sum.index_add_(0, engine.active_t, losses.to(torch.float64))
                step += 1
                batches += 1
                if bar is not None:
                    bar.update(1)
            if engine.k:   # the epoch's one host read: losses, caught steps, finite weights
                ka = engine.k
                read = torch.cat([loss_sum, engine.caught.to(torch.float64),
                                  engine.nonfinite_weights().to(torch.float64),
                                  engine.workspace.overflow(device, ka).to(torch.float64)]
                                 ).cpu().numpy()
                sums, caught, w_bad = read[:k], read[k:k + ka], read[k + ka:k + 2 * ka] > 0
                over = read[k + 2 * ka:]
                _warn_overflow(int(over[(caught < 0) & ~w_bad].sum()), epoch)
                engine.workspace.overflow(device, ka).zero_()
                gone = caught >= 0
                if gone.any():   # a non-finite loss within the epoch: frozen at that step
                    freeze(gone, caught[gone].astype(np.int64))
                    w_bad = w_bad[~gone]
            else:
                sums, w_bad = loss_sum.cpu().numpy(), np.zeros(0, dtype=bool)
            train_loss[epoch] = sums / max(1, batches)
            train_loss[epoch, diverged] = np.nan
            if engine.k:  # the trainer's rule: W or the loss non-finite, collapsed or exploded
                act = engine.active
                ep_loss = train_loss[epoch, act]
                first = train_loss[0, act]
                reasons = divergence_reasons(ep_loss, first, zero_loss[act],
                                             weights_finite=~w_bad)
                bad = reasons != ""
                if bad.any():
                    freeze(bad, np.full(int(bad.sum()), step))
                    train_loss[epoch, diverged] = np.nan
            if bar is not None:
                bar.set_postfix(active=engine.k, diverged=int(diverged.sum()))
            last = epoch == epochs - 1
            if evals and (last or (eval_every and (epoch + 1) % eval_every == 0)):
                eval_epochs.append(epoch + 1)
                for name, (xe, ye) in evals.items():
                    t1 = np.full(k, np.nan)
                    mpc = np.full(k, np.nan)
                    if engine.k:
                        a, b_ = evaluate_many(xe, ye, engine.weights_dc(), c)
                        t1[engine.active], mpc[engine.active] = a, b_
                    history[name]["top1"].append(t1)
                    history[name]["mean_per_class"].append(mpc)
    if bar is not None:
        bar.close()
    for name in history:
        for m in history[name]:
            history[name][m] = np.array(history[name][m]).reshape(len(eval_epochs), k)
    weights = engine.full_weight(k, frozen)
    return ManyResult(configs=configs, weights=weights, diverged=diverged,
                      diverged_step=diverged_step, train_loss=train_loss, history=history,
                      eval_epochs=eval_epochs, wall_time_s=time.perf_counter() - t0, steps=step)
