"""The MLP probe: SeA as the loss of a small network trained end to end on frozen features, through
the input gradient of `SeALinear` (docs/design.md §8; issue 16).

With x the prepared (unit, Eq. 1) feature rows, A, a the hidden layer and V, b the SeA layer:

    h_i = GELU(A x_i + a)                       the hidden features (hidden = 512 by default)
    ĥ_i = h_i/‖h_i‖,  u_i = Π(ĝ_i) detached      SeALinear's normalisation and SeA direction
    h̃_i = Π(ĥ_i + η u_i),  loss = CE(h̃ Vᵀ + b, y)    (λ = 1, δ = 0: Eq. 15 is cross-entropy)

and ∂loss/∂A, ∂loss/∂a flow through h̃ and the normalisation (the input gradient of
`sea_linear_cross_entropy`, the direction held fixed). η = 0 is exactly cross-entropy on the
normalised hidden features, F.cross_entropy(F.linear(F.normalize(h), V, b), y): the baseline is
the same architecture, the same initialisation and the same batches, and differs only in η.

Training (`MLPProbe.fit`), deterministic under `random_state`:
* init: the layers' own (nn.Linear) initialisation drawn after torch.manual_seed(random_state)
  inside torch.random.fork_rng (the global RNG is left as it was), on the CPU, then moved;
* batches: g = torch.Generator().manual_seed(random_state); every epoch
  perm = torch.randperm(n, generator=g) and consecutive slices perm[k·B:(k+1)·B] (the last
  partial batch kept) — SeAClassifier's rule;
* step: AdamW(lr, weight_decay) (or SGD with momentum 0.9, Nesterov) and a cosine decay of the
  lr from `lr` to 0 over all steps (CosineAnnealingLR, stepped per batch);
* divergence: a non-finite batch loss, or an epoch whose mean loss breaks the package's one rule
  (`train.divergence`, ℓ₀ = log C), raises TrainingDiverged.

η, and the lr, are selected on validation by `sea_kernels.compare.compare(head="mlp")` (`sea
compare --head mlp`): the MLP with η = 0 (cross-entropy), the MLP with the best η > 0 and the
linear SeA probe, per seed, refitted on train + validation and tested.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..params import (
    BACKENDS,
    BATCH_SIZE,
    MLP_DEFAULTS,
    MLP_OPTIMIZERS,
    MOMENTUM,
    check_choice,
    check_int,
    check_real,
    check_seed,
)

__all__ = ["MLPHead", "MLPProbe"]


class MLPHead(nn.Module):
    """x → Linear(in_features, hidden) → GELU → SeALinear(hidden, num_classes) (λ = 1, δ = 0).

    forward(x) returns the logits F.linear(F.normalize(h), V, b) of the hidden rows h;
    forward(x, target) the SeA loss (mean over the batch) with the head's η, α, group_size."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = MLP_DEFAULTS["hidden"],
                 *, eta=MLP_DEFAULTS["eta"], alpha=MLP_DEFAULTS["alpha"],
                 group_size: int | None = None, backend: str = "auto"):
        super().__init__()
        from ..op.linear import SeALinear
        in_features = check_int("in_features", in_features, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        self.fc = nn.Linear(in_features, hidden)
        self.out = SeALinear(hidden, num_classes, alpha=alpha, eta=eta, lam=1.0, delta=0.0,
                             group_size=group_size, backend=backend)

    def hidden(self, x: Tensor) -> Tensor:
        """h = GELU(A x + a), the rows the SeA layer normalises and moves."""
        return F.gelu(self.fc(x))

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        return self.out(self.hidden(x), target)


def _features(X) -> Tensor:
    """X as prepared float32 unit rows (Eq. 1, `prepare_features`, whose errors name X; an n×d
    array or tensor, or a list of blocks)."""
    from ..data.features import prepare_features
    return prepare_features(X).to(torch.float32)


class MLPProbe:
    """An MLP head on frozen features trained with the SeA loss (η > 0) or cross-entropy (η = 0).

    Parameters (checked by `checked_params` before any work; ValueError / ParameterError naming
    the argument): hidden (width), eta (SeA step η ≥ 0), alpha (SeA's projection temperature),
    lr, weight_decay, optimizer ("adamw" or "sgd"), epochs, batch_size, group_size (SeA groups;
    None: the whole batch), random_state (int seed, or None: one is drawn and stored as seed_),
    backend (of SeALinear), device ("cpu", "cuda", ...).

    After fit: model_ (MLPHead, eval mode), classes_ (the sorted labels), seed_, history_ (one
    dict per epoch: epoch, train_loss — the mean loss over the epoch's rows), n_features_in_.
    """

    def __init__(self, *, hidden: int = MLP_DEFAULTS["hidden"], eta=MLP_DEFAULTS["eta"],
                 alpha=MLP_DEFAULTS["alpha"], lr=MLP_DEFAULTS["lr"],
                 weight_decay=MLP_DEFAULTS["weight_decay"],
                 optimizer: str = MLP_DEFAULTS["optimizer"], epochs: int = MLP_DEFAULTS["epochs"],
                 batch_size: int = BATCH_SIZE, group_size: int | None = None,
                 random_state: int | None = 0, backend: str = "auto", device="cpu"):
        self.hidden, self.eta, self.alpha, self.lr = hidden, eta, alpha, lr
        self.weight_decay, self.optimizer, self.epochs = weight_decay, optimizer, epochs
        self.batch_size, self.group_size, self.random_state = batch_size, group_size, random_state
        self.backend, self.device = backend, device

    def checked_params(self) -> dict:
        """Every parameter checked and normalised (numbers as Python floats / ints)."""
        from ..op.call import check_group_size
        from .devices import check_device
        return {"hidden": check_int("hidden", self.hidden, minimum=1),
                "eta": check_real("eta", self.eta), "alpha": check_real("alpha", self.alpha),
                "lr": check_real("lr", self.lr),
                "weight_decay": check_real("weight_decay", self.weight_decay),
                "optimizer": check_choice("optimizer", self.optimizer, MLP_OPTIMIZERS),
                "epochs": check_int("epochs", self.epochs),
                "batch_size": check_int("batch_size", self.batch_size),
                "group_size": check_group_size(self.group_size),
                "random_state": check_seed(self.random_state),
                "backend": check_choice("backend", self.backend, BACKENDS),
                "device": check_device(self.device)}

    def _optimizer(self, model: nn.Module, p: dict) -> torch.optim.Optimizer:
        if p["optimizer"] == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=p["lr"],
                                     weight_decay=p["weight_decay"])
        return torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=MOMENTUM, nesterov=True,
                               weight_decay=p["weight_decay"])

    def fit(self, X, y) -> "MLPProbe":
        """Train on (X, y): X n×d features (prepared to unit rows, Eq. 1), y n labels (≥ 2
        classes). Returns self; TrainingDiverged when the loss diverges (module docstring)."""
        from ..data.labels import encode_labels
        from .divergence import (
            TrainingDiverged,
            diverged_message,
            divergence_reasons,
            explain,
            zero_classifier_loss,
        )
        p = self.checked_params()
        x = _features(X)
        classes, idx = encode_labels(y, name="y", min_classes=2)
        if len(idx) != x.shape[0]:
            raise ValueError(f"y has {len(idx)} labels but X has {x.shape[0]} rows")
        seed = p["random_state"]
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2 ** 63)
        dev = p["device"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLPHead(x.shape[1], len(classes), p["hidden"], eta=p["eta"],
                            alpha=p["alpha"], group_size=p["group_size"], backend=p["backend"])
        model = model.to(dev).train()
        x, labels = x.to(dev), torch.as_tensor(idx, device=dev)
        opt = self._optimizer(model, p)
        n, bs = x.shape[0], p["batch_size"]
        steps = p["epochs"] * math.ceil(n / bs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        gen = torch.Generator().manual_seed(seed)
        zero = zero_classifier_loss(1.0, 0.0, len(classes))
        history, first = [], None
        for epoch in range(p["epochs"]):
            perm = torch.randperm(n, generator=gen).to(dev)
            total = torch.zeros((), dtype=torch.float64, device=dev)
            for s in range(0, n, bs):
                b = perm[s:s + bs]
                loss = model(x[b], labels[b])
                if not bool(torch.isfinite(loss)):
                    raise TrainingDiverged(diverged_message(epoch, float(loss), p["lr"],
                                                            eta=p["eta"]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach().to(torch.float64) * len(b)
            mean = float(total) / n
            first = mean if first is None else first
            finite = all(bool(torch.isfinite(t).all()) for t in model.parameters())
            why = str(divergence_reasons(mean, first, zero, finite).item())
            if why:
                raise TrainingDiverged(diverged_message(epoch, mean, p["lr"],
                                                        explain(why, first, zero), p["eta"]))
            history.append({"epoch": epoch, "train_loss": mean})
        self.model_, self.classes_, self.seed_ = model.eval(), classes, seed
        self.history_, self.n_features_in_ = history, int(x.shape[1])
        return self

    def _fitted(self) -> MLPHead:
        if not hasattr(self, "model_"):
            raise ValueError("this MLPProbe is not fitted yet; call fit(X, y) first")
        return self.model_

    def decision_function(self, X) -> Tensor:
        """The logits F.linear(F.normalize(h), V, b) of the hidden rows h of X (n × C, CPU)."""
        model = self._fitted()
        x = _features(X)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features but this MLPProbe was fitted on "
                             f"{self.n_features_in_}")
        dev = next(model.parameters()).device
        with torch.no_grad():
            return torch.cat([model(x[s:s + 4096].to(dev)).cpu()
                              for s in range(0, x.shape[0], 4096)])

    def predict(self, X) -> np.ndarray:
        """The class of the largest logit, as the original labels."""
        best = self.decision_function(X).argmax(dim=1).numpy()
        return self.classes_[best]

    def score(self, X, y) -> float:
        """Top-1 accuracy on (X, y)."""
        from .metrics import top1
        return top1(self.predict(X), y)

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("hidden", "eta", "alpha", "lr", "weight_decay",
                                              "optimizer", "epochs", "batch_size", "group_size",
                                              "random_state", "backend", "device")}

    def __repr__(self) -> str:
        return f"MLPProbe({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
