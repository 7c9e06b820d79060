"""Every name and default of the package, and the rule each scalar argument obeys — torch-free.

One definition, used by the op (`op.fused`), the estimator (`train.estimator`), the sweep engine
(`sweeps.grid`) and the command line (`cli`, which builds its parser from this module without
importing torch). The defaults (docs/design.md §1): α = 0.01, η = 0.8, λ = 0.1, δ = 0, SGD with
momentum 0.9, weight decay 1e-6, 100 epochs, and lr 1.6 at batch 256 — a starting point, not the
paper's choice: the paper picks lr from its grid (powers of two) on validation, and lr 1.6 with
η = 0.8 collapses on some feature sets (docs/design.md §7).

A wrong *type* raises `ParameterError`, which is both a TypeError and a ValueError (as
scikit-learn's InvalidParameterError): callers that catch either see it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

# ------------------------------------------------------------------------------- names

#: The six axes of the paper's hyper-parameter search (Sec. 4), in grid order (η varies fastest).
GRID_PARAMS = ("lr", "weight_decay", "alpha", "lam", "delta", "eta")
#: Other spellings accepted for them (grids, --set, configs).
ALIASES = {"wd": "weight_decay", "learning_rate": "lr", "lambda": "lam", "lambda_": "lam",
           "tau": "weight_decay", "margin": "delta"}
#: `augment=` of SeAClassifier: SeA, its ablations (Sec. 4.1) and the Table 5 baselines.
AUGMENTS = ("sea", "sea_neg", "none", "adv", "rand", "mixup", "isda", "me_ada")
#: Directions of `sea_augment`/`reference.augment`; the fused op computes the first two.
DIRECTIONS = ("sea", "sea_neg", "adv", "rand", "mixup", "none")
FUSED_DIRECTIONS = ("sea", "sea_neg")
#: Backends of the fused op ("auto" walks `op.dispatch.PRIORITY`).
BACKENDS = ("auto", "torch", "cpp", "triton")
REDUCTIONS = ("mean", "sum", "none")
#: Selection metrics of a sweep (Sec. 4: top-1, mean per-class accuracy).
METRICS = ("top1", "mean_per_class")

# ------------------------------------------------------------------------------- defaults

#: Defaults of the op and of a grid axis that a sweep leaves out.
DEFAULTS = {"lr": 1.6, "weight_decay": 1e-6, "alpha": 0.01, "lam": 0.1, "delta": 0.0, "eta": 0.8}
MOMENTUM = 0.9
EPOCHS = 100
BATCH_SIZE = 256
ISDA_STRENGTH = 0.5
# ME-ADA's own defaults (garyzhao/ME-ADA, run_main_cifar10.sh / model_cifar.py): T_max = 15 ascent
# steps, K = 2 rounds, γ = 1.0, entropy weight β (their `eta`) = 10.0. Their ascent step lr_max = 20
# acts on images with a batch-mean loss and does not transfer: on unit-norm CIFAR-10
# EfficientNet-Lite0 features (5,000 training rows, 20 epochs, lr 0.4; 77.2% test accuracy without
# augmentation) ascent steps of 0.03 / 0.01 / 0.003 give 19% / 67% / 76%: larger steps push the
# copies across the class boundaries. Hence 0.003; the paper searched ME-ADA's parameters.
ME_ADA_DEFAULTS = {"steps": 15, "rounds": 2, "gamma": 1.0, "beta": 10.0, "lr": 0.003}
VAL_FRACTION = 0.2
#: The methods `compare` compares by default, and its candidates when no grid is given (per
#: method as `sea_kernels.compare.run` describes); here, so that `sea compare --help` shows them
#: without importing numpy.
COMPARE_METHODS = ("none", "sea", "mixup")
COMPARE_GRID = {"lr": [0.25, 0.5, 1.0, 2.0, 4.0], "eta": [0.0, 0.2, 0.4, 0.8], "lam": [0.1, 1.0]}

#: `compare(head=...)` / `sea compare --head`: the classifier every method trains on the frozen
#: features — "linear" (SeAClassifier, the paper's probe) or "mlp" (train.mlp.MLPProbe:
#: Linear(d, hidden) → GELU → SeALinear(hidden, C), trained end to end).
HEADS = ("linear", "mlp")
#: The MLP head's defaults (train.mlp): width, AdamW (lr, weight decay) with a cosine decay of
#: the lr to 0 over the run, SeA's α; λ = 1, δ = 0 (Eq. 15 is then cross-entropy on the moved,
#: normalised hidden rows, and η = 0 is plain cross-entropy: the baseline differs only in η).
MLP_DEFAULTS = {"hidden": 512, "lr": 3e-3, "weight_decay": 1e-4, "optimizer": "adamw",
                "alpha": 0.01, "eta": 0.0, "epochs": 20}
#: Its optimizers: "adamw" (torch.optim.AdamW) or "sgd" (momentum MOMENTUM, Nesterov).
MLP_OPTIMIZERS = ("adamw", "sgd")
#: The MLP lrs `compare(head="mlp")` searches when the grid gives no `mlp_lr`.
COMPARE_MLP_LRS = [3e-3, 1e-2]

#: The paper's search (Sec. 4): 6 × 4 × 3 × 3 × 2 × 4 = 1,728 configurations.
PAPER_GRID = {
    "lr": [2.0 ** i for i in range(-2, 4)],
    "weight_decay": [0.0, 1e-6, 1e-5, 1e-4],
    "alpha": [0.01, 0.02, 0.05],
    "lam": [0.05, 0.1, 1.0],
    "delta": [0.0, 1.0],
    "eta": [0.0, 0.2, 0.4, 0.8],
}

# ------------------------------------------------------------------------------- rules


class ParameterError(ValueError, TypeError):
    """An argument of the wrong type (a TypeError and a ValueError), named in the message."""


@dataclass(frozen=True)
class Rule:
    """The range of one real scalar: lo ≤ v (lo < v when lo_open), v ≤ hi (v < hi when hi_open)."""
    lo: float | None = None
    lo_open: bool = False
    hi: float | None = None
    hi_open: bool = False
    hint: str = ""


RULES = {
    "lr": Rule(0, True, hint="the learning rate"),
    "momentum": Rule(0, False, 1, True),
    "weight_decay": Rule(0),
    "alpha": Rule(0, True, hint="the projection temperature; the paper uses 0.01–0.05"),
    "eta": Rule(0, hint="the augmentation step; η = 0 disables the augmentation"),
    "lam": Rule(0, True, hint="the loss temperature; λ = 1, δ = 0 is cross-entropy"),
    "delta": Rule(),
    "isda_strength": Rule(0),
    "me_ada_gamma": Rule(0),
    "me_ada_beta": Rule(0),
    "me_ada_lr": Rule(0, True),
    "val_fraction": Rule(0, True, 1, True),
}
#: Integer arguments and their minimum.
INT_MINIMUM = {"epochs": 1, "batch_size": 1, "me_ada_steps": 1, "me_ada_rounds": 1,
               "checkpoint_every": 1, "chunk_size": 1, "max_chunk_bytes": 1, "random_state": 0}
SEED_LIMIT = 2 ** 64   # torch.Generator seeds are unsigned 64-bit


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def check_real(name: str, value, where: str | None = None, rule: Rule | None = None) -> float:
    """`value` as a float after checking it is a finite real number obeying RULES[name]."""
    rule = rule or RULES.get(name, Rule())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{_prefix(where)}{name} must be a real number, got "
                             f"{type(value).__name__} {value!r}")
    v = float(value)
    # = math.isfinite(v) (NaN compares False), but also traceable when torch.compile(dynamic=True)
    # traces a Python float argument as a SymFloat, which math.isfinite cannot take.
    if not -math.inf < v < math.inf:
        raise ValueError(f"{_prefix(where)}{name} must be finite, got {v}")
    bad = None
    if rule.lo is not None and (v <= rule.lo if rule.lo_open else v < rule.lo):
        bad = f"{'>' if rule.lo_open else '≥'} {rule.lo:g}"
    elif rule.hi is not None and (v >= rule.hi if rule.hi_open else v > rule.hi):
        bad = f"{'<' if rule.hi_open else '≤'} {rule.hi:g}"
    if bad:
        hint = f" ({rule.hint})" if rule.hint else ""
        raise ValueError(f"{_prefix(where)}{name} must be {bad}, got {v:g}{hint}")
    return v


def check_int(name: str, value, where: str | None = None, minimum: int | None = None) -> int:
    """`value` as an int after checking it is an integer ≥ the minimum (INT_MINIMUM[name])."""
    lo = INT_MINIMUM.get(name, 0) if minimum is None else minimum
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{_prefix(where)}{name} must be an integer, got "
                             f"{type(value).__name__} {value!r}")
    if value < lo:
        raise ValueError(f"{_prefix(where)}{name} must be ≥ {lo}, got {value}")
    return int(value)


def check_seed(value, name: str = "random_state") -> int | None:
    """None, or an integer seed in [0, 2⁶⁴) (what torch.Generator.manual_seed takes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an int or None, got {type(value).__name__} "
                             f"{value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must lie in [0, 2**64), got {value}")
    return int(value)


def check_choice(name: str, value, choices, where: str | None = None):
    """`value` if it is one of `choices`, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{_prefix(where)}{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def canonical(key: str) -> str:
    """A grid axis name from its name or alias (ValueError for anything else)."""
    name = ALIASES.get(key, key)
    if name not in GRID_PARAMS:
        raise ValueError(f"unknown hyper-parameter {key!r}; expected one of {GRID_PARAMS} "
                         f"(aliases {sorted(ALIASES)})")
    return name
