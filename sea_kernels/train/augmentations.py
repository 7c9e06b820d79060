"""SeAClassifier's `augment` values as objects: the batch loss and the state each method keeps
(docs/design.md §7).

    aug = make_augmentation("rand", clf.get_params(), num_features=d, num_classes=C,
                            dtype=x.dtype, device=device, seed=seed)
    aug.before_epoch(epoch, x, labels, W)          # ME-ADA grows its training set here
    x_train, y_train = aug.training_set(x, labels)
    loss = aug.loss(epoch, xb, yb, W)               # differentiable in W
    state = aug.state_dict(); aug.load_state_dict(state)   # checkpoints

augment           class             loss of a batch (xb, yb)                   state
----------------  ----------------  -----------------------------------------  ---------------
"sea", "sea_neg"  FusedSeA          fused_sea(..., direction=augment, backend)  the SeaConfig
"none"            Plain             smoothed hinge ℓ(xb W)                      —
"adv"             Augmented         ℓ(X̃ W), X̃ = sea_augment(direction="adv")  the SeaConfig
"rand", "mixup"   RandomAugmented   ℓ(X̃ W), X̃ drawn with its own generator    the generator
"isda"            ISDA              baselines.isda_loss, λ_t = strength·t/T     Σ estimator
"me_ada"          MEADA             ℓ(xb W) on the grown training set           appended rows

The random generator of "rand"/"mixup" lives on the training device, seeded with
(seed + 1) mod 2⁶⁴ (seed: the generator seed of the shuffling); the ISDA covariances are updated
from each batch before its step; ME-ADA appends an adversarial copy of every original row before
each of the epochs `baselines.me_ada_round_epochs(epochs, me_ada_rounds)`. The fused op's
arguments are validated once per fit (`op.call.configure`, a SeaConfig); a batch only binds its
tensors to it (`SeaConfig.bind`) and runs it (`op.fused.run` / `op.fused.augment`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..op.call import configure
from ..op.fused import augment, run
from ..op.reference import smoothed_hinge_loss
from ..params import DIRECTIONS
from . import baselines

__all__ = ["Augmentation", "FusedSeA", "Plain", "Augmented", "RandomAugmented", "ISDA", "MEADA",
           "AUGMENTATIONS", "make_augmentation"]


class Augmentation:
    """One `augment` value: `loss` of a batch, optional hooks, and the state it owns.

    Built from SeAClassifier's parameters (`get_params()`), the data's shape and the seed.
    `backend` is the fused-kernel backend the loss uses ("torch" for the methods without one);
    `suggests_eta`: a diverged run should also try a smaller η; `grows_training_set`: the
    training set gains rows during fit (n_train_rows_).
    """

    suggests_eta = False
    grows_training_set = False

    def __init__(self, params: dict, *, num_features: int, num_classes: int, dtype: torch.dtype,
                 device: torch.device, seed: int):
        self.name = params["augment"]
        self.params = params
        self.alpha, self.eta = params["alpha"], params["eta"]
        self.lam, self.delta = params["lam"], params["delta"]
        self.epochs = params["epochs"]
        self.num_features, self.num_classes = num_features, num_classes
        self.dtype, self.device, self.seed = dtype, torch.device(device), seed
        self.backend = "torch"

    @classmethod
    def check_params(cls, params: dict) -> None:
        """ValueError for parameters this method cannot train with (after the scalar checks)."""

    def before_epoch(self, epoch: int, x: Tensor, labels: Tensor, weight: Tensor) -> None:
        """Called before every epoch (0-based) with the original training set and the current W."""

    def training_set(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The rows the next epoch trains on: the original training set (x, labels) by default."""
        return x, labels

    def loss(self, epoch: int, xb: Tensor, yb: Tensor, weight: Tensor) -> Tensor:
        """The mean loss of batch (xb, yb), differentiable in weight: ℓ(xb W) here."""
        return smoothed_hinge_loss(xb @ weight, yb, self.lam, self.delta)

    def state_dict(self) -> dict:
        """What a checkpoint must hold to resume exactly (CPU tensors, weights_only-loadable)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output (tensors moved to this device and dtype)."""


class FusedSeA(Augmentation):
    """"sea" (Alg. 1) and "sea_neg" (the negative-classes-only ablation): the fused op."""

    suggests_eta = True

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.config = configure(alpha=self.alpha, eta=self.eta, lam=self.lam, delta=self.delta,
                                reduction="mean", direction=self.name,
                                group_size=params.get("group_size"),   # None: the whole batch
                                backend=params["backend"], device=self.device, dtype=self.dtype)
        self.backend = self.config.backend

    def loss(self, epoch, xb, yb, weight):
        # diagnose=False: no per-batch host sync; the trainer reads the epoch's losses once
        # and names the cause of a NaN/Inf one then (estimator._run_epoch)
        return run(self.config.bind(xb, yb, weight), diagnose=False)


class Plain(Augmentation):
    """"none": the smoothed-hinge loss (λ, δ) of the plain batch."""


class Augmented(Augmentation):
    """"adv": the loss of X̃ = sea_augment(xb, yb, W, direction) only (no gradient through X̃)."""

    suggests_eta = True
    generator: torch.Generator | None = None

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.config = configure(alpha=self.alpha, eta=self.eta, lam=self.lam, delta=self.delta,
                                reduction=None, direction=self.name, backend=None,
                                device=self.device, dtype=self.dtype, directions=DIRECTIONS)

    def loss(self, epoch, xb, yb, weight):
        xa = augment(self.config.bind(xb, yb, weight.detach()), self.generator)
        return smoothed_hinge_loss(xa @ weight, yb, self.lam, self.delta)


class RandomAugmented(Augmented):
    """"rand", "mixup": as "adv", the random draws from a generator of their own."""

    suggests_eta = False

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.generator = torch.Generator(device=self.device).manual_seed((self.seed + 1) % 2**64)

    def state_dict(self):
        return {"generator": self.generator.get_state().cpu()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


class ISDA(Augmentation):
    """"isda": ISDA's surrogate loss with the linear ramp λ_t = isda_strength · epoch / epochs and
    the class covariances estimated online (`baselines.ISDAEstimator`)."""

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.strength = params["isda_strength"]
        self.estimator = baselines.ISDAEstimator(self.num_features, self.num_classes,
                                                 dtype=self.dtype, device=self.device)

    def loss(self, epoch, xb, yb, weight):
        self.estimator.update(xb, yb)
        ratio = self.strength * epoch / self.epochs
        return baselines.isda_loss(xb, yb, weight, self.estimator.cov, ratio, lam=self.lam,
                                   delta=self.delta)

    def state_dict(self):
        return {"estimator": self.estimator.state_dict()}

    def load_state_dict(self, state):
        self.estimator.load_state_dict(state["estimator"])


class MEADA(Augmentation):
    """"me_ada": plain ℓ(XW) on a training set that grows by one adversarial copy of the original
    rows (`baselines.me_ada_generate`) before each round epoch."""

    grows_training_set = True

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.rounds = baselines.me_ada_round_epochs(self.epochs, params["me_ada_rounds"])
        self.ascent = dict(steps=params["me_ada_steps"], lr=params["me_ada_lr"],
                           gamma=params["me_ada_gamma"], beta=params["me_ada_beta"])
        self.extra_x: Tensor | None = None       # the appended rows, in the order generated
        self.extra_y: Tensor | None = None
        self._grown = None

    @classmethod
    def check_params(cls, params):
        baselines.me_ada_round_epochs(params["epochs"], params["me_ada_rounds"])

    def before_epoch(self, epoch, x, labels, weight):
        if epoch not in self.rounds:
            return
        new_x = baselines.me_ada_generate(x, labels, weight.detach(), lam=self.lam,
                                          delta=self.delta, **self.ascent)
        self._append(new_x, labels)

    def _append(self, new_x, new_y):
        self.extra_x = new_x if self.extra_x is None else torch.cat([self.extra_x, new_x])
        self.extra_y = new_y if self.extra_y is None else torch.cat([self.extra_y, new_y])
        self._grown = None

    def training_set(self, x, labels):
        if self.extra_x is None:
            return x, labels
        if self._grown is None:
            self._grown = (torch.cat([x, self.extra_x]), torch.cat([labels, self.extra_y]))
        return self._grown

    def state_dict(self):
        if self.extra_x is None:
            return {"x": None, "y": None}
        return {"x": self.extra_x.detach().cpu().clone(), "y": self.extra_y.detach().cpu().clone()}

    def load_state_dict(self, state):
        self.extra_x = self.extra_y = self._grown = None
        if state.get("x") is not None:
            self._append(state["x"].to(self.device, self.dtype), state["y"].to(self.device))


#: The class of every `augment` value, in params.AUGMENTS order.
AUGMENTATIONS = {"sea": FusedSeA, "sea_neg": FusedSeA, "none": Plain, "adv": Augmented,
                 "rand": RandomAugmented, "mixup": RandomAugmented, "isda": ISDA, "me_ada": MEADA}


def make_augmentation(augment: str, params: dict, **kw) -> Augmentation:
    """The strategy object of `augment` for a fit with SeAClassifier parameters `params` (keyword
    arguments: num_features, num_classes, dtype, device, seed)."""
    return AUGMENTATIONS[augment]({**params, "augment": augment}, **kw)
