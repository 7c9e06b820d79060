"""`SeAClassifier` — a scikit-learn-style linear classifier on fixed deep features, trained with SeA
(Alg. 1 of Qian, Xu & Hu, ECCV 2024) or one of the paper's ablations/baselines.

    clf = SeAClassifier(eta=0.4, lr=0.4, epochs=100).fit(X_train, y_train,
                                                         eval_set=[(X_val, y_val)])
    clf.score(X_test, y_test); clf.predict(X_test); clf.save("model.pt")

The training protocol (docs/design.md §1, §7) — the sweep engine (`sea_kernels.sweep`) reproduces
it, so it is spelled out exactly:

* Features: `features.prepare_features(X)` — X ONE matrix (an n×d numpy array, torch tensor,
  DataFrame or anything with `to_numpy`/`__array__`, or a list of rows: lists or 1-D arrays) or
  a list/tuple of 2-D blocks (several models' features of the same examples): a list is blocks
  iff its first element is 2-D (`sklearn_compat.feature_input`). Every block L2-normalised per
  row (a zero row stays zero), concatenated, the result renormalised (Eq. 1). float32 (float64
  input stays float64). A 1-D X is a ValueError saying how to reshape it. Labels: any sortable
  type (integers, strings, bools, objects; `data.labels.sortable_labels` — whole-valued floats
  count as integers; NaN and a continuous target, floats with a fractional part, are refused);
  `classes_` = the sorted unique labels in their own dtype, remapped to 0..C−1; predictions map
  back to the original labels.
* Parameters are checked by `params` (numpy scalars such as np.float32(0.01) are accepted and
  trained with as Python numbers) and `device` by `train.devices.check_device` (a device this
  machine does not have is a ValueError naming the available ones), all before any work.
* Weight: W = zeros(d, C) in the feature dtype, no bias.
* Shuffling: g = torch.Generator().manual_seed(random_state) (random_state=None: one seed is drawn
  from torch.seed() — without disturbing the global RNG — and stored as `seed_`; a numpy
  RandomState / Generator: the seed is drawn from it, consuming it); every epoch
  perm = torch.randperm(n, generator=g); the batches are consecutive slices perm[k·B:(k+1)·B],
  the last partial batch kept.
* Step: loss = fused_sea(xb, yb, W, alpha, eta, lam, delta, reduction="mean", direction=augment,
  backend=backend) for augment "sea"/"sea_neg"; loss.backward(); torch.optim.SGD(lr,
  momentum=0.9, dampening=0, nesterov=False, weight_decay=wd).step(), i.e. d_p = grad + wd·W,
  buf = d_p at the first step else momentum·buf + d_p, W −= lr·buf. Constant learning rate.
  η = 0 with "sea" is the no-augmentation baseline (Π(x) = x on unit rows).
* Other `augment` values (the `backend` argument only applies to "sea"/"sea_neg"; each value is a
  strategy object of `train.augmentations`, owning its state):
  "none"    smoothed-hinge loss (λ, δ) of the plain batch, ℓ(XW).
  "adv", "rand", "mixup"   X̃ = sea_augment(xb, yb, W, ..., direction=augment) (no gradient),
            loss ℓ(X̃W) on the augmented rows only; "rand"/"mixup" draw from a second generator on
            the training device seeded with (seed_ + 1) mod 2⁶⁴.
  "isda"    `baselines.isda_loss` with λ_t = isda_strength·epoch/epochs (epoch from 0); the class
            covariances are updated from each batch before its step.
  "me_ada"  plain ℓ(XW) on a training set that grows: before the epochs
            `baselines.me_ada_round_epochs(epochs, me_ada_rounds)` every original training row gets
            an adversarial copy (`baselines.me_ada_generate`), appended with its label; the
            permutation is then over the grown set.
* Evaluation: plain logits XW (no margin); `metrics.top1`, `metrics.mean_per_class`.
* `history_`: one dict per epoch — epoch (1-based), train_loss (mean of the batch losses), lr,
  n_train (rows trained on), and per eval set `<name>_top1`, `<name>_mean_per_class` (name "eval0",
  "eval1", ... for a list, the key for a dict).

Divergence (`train.divergence`, the sweep engine's rule too): when a batch loss is NaN/Inf (found
when the epoch's batch losses are read — once, at its end: no host sync per step — and explained
as the op's NonFiniteLoss would), W stops being finite, an epoch's mean train loss exceeds 1000×
the first epoch's, or — the common failure — it exceeds 2× the loss of the all-zero classifier
(λ·log(1 + (C−1)e^{δ/λ}), the loss of the very first step: a model worse than predicting nothing),
fit raises `TrainingDiverged` naming the epoch and the learning rate and suggesting a 4× smaller
one. That last rule is what catches SeA at the authors' defaults η = 0.8, lr = 1.6 on CIFAR-10
EfficientNet-Lite0 features: on a 5,000-row training slice the test accuracy reaches 67% after two
epochs, then falls to 12–50% while the train loss oscillates at 2–5× the zero classifier's (it
stays finite); lr = 0.4 trains normally. Pick lr and η on a validation set (the paper searches
them).

Checkpoints (`train.checkpoint`): fit(..., checkpoint=path) writes the complete training state (W,
optimizer momentum, generator state, epoch, history, and the augmentation's own state: the
rand/mixup generator, the ISDA estimator, the ME-ADA rows) every `checkpoint_every` epochs and
after the last one, atomically (`data.writers.save_verified`: a format tag, a version and a
SHA-256 checksum; a file that fails verification is a `data.errors.BadFileError` naming it). If
the file exists, fit resumes from it
and the result is the same as an uninterrupted run (stop after k epochs by fitting with epochs=k,
resume with epochs=N). The training hyper-parameters and the data must match the checkpoint
(ValueError otherwise); `epochs` may grow (note that ISDA's ramp and ME-ADA's schedule depend on
`epochs`, so for those two a resumed run with a different `epochs` is a different schedule).

scikit-learn (`sklearn_compat`): with scikit-learn installed SeAClassifier is a ClassifierMixin +
BaseEstimator (Pipeline, GridSearchCV, cross_val_score, CalibratedClassifierCV, OneVsRest...;
it passes check_estimator with no expected failure); without it, the same parameter protocol
and score from a stand-in base. decision_function is n×C logits, (n,)
l₁ − l₀ for two classes (scikit-learn's binary convention).
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
from torch import Tensor

from ..data.features import LazyRows, block_dims, prepare_features
from ..data.labels import check_label_kind, encode_labels, label_array, sortable_labels
from ..op.validation import NonFiniteLoss, diagnose_nonfinite
from ..params import (
    AUGMENTS,
    BACKENDS,
    BATCH_SIZE,
    DEFAULTS,
    EPOCHS,
    ISDA_STRENGTH,
    ME_ADA_DEFAULTS,
    MOMENTUM,
    check_choice,
    check_int,
    check_real,
)
from . import checkpoint as ckpt
from . import distributed as dist
from .augmentations import AUGMENTATIONS, Augmentation, make_augmentation
from .compiled import make_step
from .devices import check_device
from .divergence import (
    TrainingDiverged,
    diverged_message,
    divergence_reasons,
    explain,
    zero_classifier_loss,
)
from .metrics import mean_per_class, top1
from .sklearn_compat import (
    EstimatorBase,
    NotFittedError,
    accuracy,
    check_n_features,
    checked_seed,
    draw_seed,
    feature_input,
    feature_names,
    readonly_ok,
    target_input,
)

__all__ = ["SeAClassifier", "TrainingDiverged", "NotFittedError", "AUGMENTS"]

# The numeric parameters, in the order they are checked (integers by check_int, else check_real).
_NUMERIC_PARAMS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "alpha", "eta", "lam",
                   "delta", "isda_strength", "me_ada_steps", "me_ada_gamma", "me_ada_beta",
                   "me_ada_lr", "me_ada_rounds")
_INT_PARAMS = ("epochs", "batch_size", "me_ada_steps", "me_ada_rounds")


def _check_compile(value, augment) -> bool:
    """compile: a bool (numpy bools accepted), True only for the fused methods."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"compile must be True or False, got {value!r}")
    if value and augment not in ("sea", "sea_neg"):
        raise ValueError(f"compile=True compiles the fused SeA step: augment must be 'sea' or "
                         f"'sea_neg', got {augment!r}")
    return bool(value)


class SeAClassifier(EstimatorBase):
    """Linear classifier (no bias) on fixed features, trained by SGD with SeA augmentation.

    Parameters (scikit-learn conventions: stored unchanged, validated in fit)
    ----------
    augment : "sea" (default), "sea_neg", "none", "adv", "rand", "mixup", "isda", "me_ada"
    epochs : int.   batch_size : int.   lr : float, for a batch of params.BATCH_SIZE (the
        default can be too large for some feature sets — see TrainingDiverged).   momentum.
    weight_decay : τ.   alpha : projection temperature α.   eta : step η (0 = no
        augmentation).   lam : loss temperature λ.   delta : margin δ.
    backend : "auto", "torch", "cpp", "triton" — the fused SeA kernel ("sea"/"sea_neg" only).
    random_state : int, None, or a numpy RandomState / Generator (fit draws its seed from it).
    device : "cpu", "cuda", ...
    isda_strength : λ_0 of ISDA's ramp (ISDA's default).
    me_ada_steps, me_ada_gamma, me_ada_beta, me_ada_rounds (ME-ADA's CIFAR defaults), me_ada_lr
        (the feature-space ascent step; `params.ME_ADA_DEFAULTS` says why).
    verbose : print one line per epoch.
    group_size : rows projected together (None: the whole batch; `fused_sea`'s group_size).
    compile : True runs each step of "sea"/"sea_neg" (op + SGD update) as one compiled graph
        (`train.compiled`): torch.compile(mode="reduce-overhead", CUDA graphs) on CUDA, the
        default mode on the CPU; the same weights as the eager step up to float rounding. One
        process only (under torchrun the step stays eager).
    Every default is `sea_kernels.params`' (DEFAULTS, EPOCHS, BATCH_SIZE, MOMENTUM,
    ISDA_STRENGTH, ME_ADA_DEFAULTS), checked by its check_real / check_int / check_seed.

    Attributes after fit: classes_, n_features_in_, feature_dims_, coef_ (C×d numpy), W_ (d×C
    tensor), history_, seed_, n_iter_ (epochs trained), backend_ (resolved backend), and for
    "me_ada" n_train_rows_ (original + appended rows).

    X: one matrix (array, tensor, DataFrame, list of rows) or a list/tuple of 2-D blocks (Eq. 1;
    a list is blocks iff its first element is 2-D). y: labels of any sortable type; predict
    returns them in their own dtype (classes_). decision_function: n×C logits XW ((n,) l₁ − l₀
    for two classes). predict_proba returns softmax(XW/λ): the distribution the smoothed-hinge
    loss is the negative log-likelihood of (for δ = 0), up to the factor λ.
    """

    def __init__(self, augment="sea", epochs=EPOCHS, batch_size=BATCH_SIZE, lr=DEFAULTS["lr"],
                 momentum=MOMENTUM, weight_decay=DEFAULTS["weight_decay"],
                 alpha=DEFAULTS["alpha"], eta=DEFAULTS["eta"], lam=DEFAULTS["lam"],
                 delta=DEFAULTS["delta"], backend="auto", random_state=None, device="cpu",
                 isda_strength=ISDA_STRENGTH, me_ada_steps=ME_ADA_DEFAULTS["steps"],
                 me_ada_gamma=ME_ADA_DEFAULTS["gamma"], me_ada_beta=ME_ADA_DEFAULTS["beta"],
                 me_ada_lr=ME_ADA_DEFAULTS["lr"], me_ada_rounds=ME_ADA_DEFAULTS["rounds"],
                 verbose=False, group_size=None, compile=False):
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.alpha = alpha
        self.eta = eta
        self.lam = lam
        self.delta = delta
        self.backend = backend
        self.random_state = random_state
        self.device = device
        self.isda_strength = isda_strength
        self.me_ada_steps = me_ada_steps
        self.me_ada_gamma = me_ada_gamma
        self.me_ada_beta = me_ada_beta
        self.me_ada_lr = me_ada_lr
        self.me_ada_rounds = me_ada_rounds
        self.verbose = verbose
        self.group_size = group_size
        self.compile = compile

    # ------------------------------------------------------------------ parameters
    # get_params / set_params / repr: scikit-learn's BaseEstimator (or sklearn_compat's stand-in).
    def checked_params(self) -> dict:
        """The parameters, checked (ValueError / ParameterError naming the bad one), with the
        numeric ones as Python int/float (numpy scalars accepted) and random_state an int or
        None (None also for a numpy RandomState / Generator, which fit draws from). `device`
        must be usable here (`train.devices.check_device`). The one check of the parameters:
        fit runs it, and so does the command line before it reads any data. (Not
        scikit-learn's `_validate_params`, which checks `_parameter_constraints`.)"""
        checked = self.get_params(deep=False)
        check_choice("augment", self.augment, AUGMENTS)
        for name in _NUMERIC_PARAMS:
            checked[name] = (check_int if name in _INT_PARAMS else check_real)(
                name, getattr(self, name))
        AUGMENTATIONS[self.augment].check_params(checked)
        checked["random_state"] = checked_seed(self.random_state)
        check_choice("backend", self.backend, BACKENDS)
        check_device(self.device)
        if self.group_size is not None:
            checked["group_size"] = check_int("group_size", self.group_size, minimum=1)
        checked["compile"] = _check_compile(self.compile, self.augment)
        return checked

    # ------------------------------------------------------------------ data helpers
    def _prepare_X(self, X, name: str = "X", *, fitted: bool = False) -> Tensor:
        """`prepare_features` of X in any accepted form (`sklearn_compat.feature_input`); with
        `fitted`, X must have the fitted feature layout (and DataFrame column names)."""
        X_in = X
        X = feature_input(X, name)
        if fitted:
            check_n_features(X, self.feature_dims_, name, type(self).__name__)
            feature_names(self, X_in, reset=False)
        with readonly_ok():
            return prepare_features(X, device=torch.device(self.device))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "W_")

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise NotFittedError("this SeAClassifier is not fitted yet; call fit(X, y) first")

    def _prepare_eval(self, eval_set, train=None):
        """[(name, prepared X, labels)] of eval_set; an entry whose X is the training X itself
        (`train`: (X as given, its prepared tensor)) reuses the prepared training rows."""
        if eval_set is None:
            return []
        items = list(eval_set.items()) if isinstance(eval_set, dict) else \
            [(f"eval{k}", pair) for k, pair in enumerate(eval_set)]
        out = []
        for name, pair in items:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"eval_set entry {name!r} must be an (X, y) pair, got "
                                f"{type(pair).__name__}")
            Xe, ye = pair
            if train is not None and Xe is train[0]:
                xe = train[1]
            else:
                xe = self._prepare_X(Xe, f"eval_set {name!r} X", fitted=True)
            out.append((str(name), xe, self._labels_like_classes(ye, f"eval_set {name!r} y",
                                                                 xe.shape[0])))
        return out

    def _labels_like_classes(self, y, name: str, n_rows: int | None = None) -> np.ndarray:
        """Labels to score against: 1-D, one per row, of the same kind as classes_."""
        arr = label_array(y, name, n_rows)
        check_label_kind(arr, self.classes_, name)
        return arr

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, eval_set=None, checkpoint=None, checkpoint_every: int = 1,
            progress: bool = False) -> "SeAClassifier":
        """Train on features X (one matrix — array, tensor, DataFrame, list of rows — or a
        list of 2-D blocks) and labels y (any sortable type: integers, floats, strings, bools,
        objects; classes_ keeps their dtype; an n×1 column is raveled with a warning).

        eval_set: list of (X, y) pairs (or a dict name → (X, y)) scored after every epoch into
        history_. checkpoint: path; saved every `checkpoint_every` epochs and at the end
        (atomically); an existing file is resumed from. progress: tqdm bar over epochs.
        Raises TrainingDiverged when the loss blows up (see the module docstring).
        Under torchrun (or with an initialised process group) one model trains on all the
        processes (`train.distributed`): batch_size is the global batch; with one numpy X
        (np.memmap included) and augment sea/sea_neg/none/adv each rank reads only its rows
        (`data.features.LazyRows`; the whole X is verified and fingerprinted in chunks).
        """
        with dist.session(self.device) as run:
            return self._fit(run, X, y, eval_set=eval_set, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, progress=progress)

    def _fit(self, run, X, y, *, eval_set, checkpoint, checkpoint_every, progress):
        world = run.world
        params = self.checked_params()
        check_int("checkpoint_every", checkpoint_every)
        device = torch.device(self.device)
        for attr in ("W_", "history_", "n_iter_", "n_train_rows_"):
            self.__dict__.pop(attr, None)

        X_in, X = X, feature_input(X)
        dims = block_dims(X)
        # N > 1 and one numpy X: each rank reads only its rows (verified and fingerprinted whole)
        x = LazyRows(X, device=device) if dist.lazy_features(self.augment, X, world) else \
            self._prepare_X(X)
        feature_names(self, X_in, reset=True)
        n, d = x.shape
        classes, y_idx = encode_labels(sortable_labels(target_input(y, n), "y", n), min_classes=2)
        self.classes_ = classes
        self.feature_dims_ = dims
        self.n_features_in_ = d
        prepared = (X_in, x) if isinstance(x, Tensor) else None
        evals = [(name, xe.to(x.dtype), ye)
                 for name, xe, ye in self._prepare_eval(eval_set, prepared)]
        labels = torch.as_tensor(y_idx, dtype=torch.long, device=device)
        C = len(classes)

        seed = params["random_state"] if params["random_state"] is not None else \
            draw_seed(self.random_state)
        W = torch.zeros(d, C, dtype=x.dtype, device=device, requires_grad=True)
        opt = torch.optim.SGD([W], lr=params["lr"], momentum=params["momentum"], dampening=0,
                              nesterov=False, weight_decay=params["weight_decay"])
        fingerprint = ckpt.fingerprint(x, labels, classes)
        state = None
        if checkpoint is not None and os.path.exists(checkpoint):
            state = ckpt.load_training_state(checkpoint, params=params,
                                             data_fingerprint=fingerprint, weight=W,
                                             optimizer=opt)
            seed = state["seed"]
        seed, group = dist.start_fit(run, params, fingerprint, seed,
                                     int(state["epoch"]) if state is not None else 0)
        gen = torch.Generator().manual_seed(seed)
        strategy = make_augmentation(self.augment, params, num_features=d, num_classes=C,
                                     dtype=x.dtype, device=device, seed=seed)
        self.backend_ = strategy.backend
        if state is not None:
            ckpt.restore_generators(checkpoint, state, gen, strategy)
        self.seed_ = seed

        history = list(state["history"]) if state is not None else []
        start = int(state["epoch"]) if state is not None else 0
        epochs = params["epochs"]
        if start > epochs:
            raise ValueError(f"checkpoint {checkpoint!r} already holds {start} epochs, more than "
                             f"epochs={epochs}; raise epochs or use another checkpoint path")
        x_train, y_train = strategy.training_set(x, labels)
        step = None
        if params["compile"] and world.size == 1:
            step = make_step(strategy.config, W, opt, lr=params["lr"],
                             momentum=params["momentum"], weight_decay=params["weight_decay"])

        bar = None
        if progress and world.main:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, initial=start, desc=f"SeA {self.augment}", unit="epoch")
        try:
            for epoch in range(start, epochs):
                strategy.before_epoch(epoch, x, labels, W)
                x_train, y_train = strategy.training_set(x, labels)
                train_loss = self._run_epoch(epoch, x_train, y_train, W, opt, gen, strategy,
                                             history, params, world=world, group=group,
                                             step=step)
                record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": params["lr"],
                          "n_train": int(x_train.shape[0])}
                with torch.no_grad():
                    for name, xe, ye in evals:
                        pred = self.classes_[(xe @ W).argmax(1).cpu().numpy()]
                        record[f"{name}_top1"] = top1(pred, ye)
                        record[f"{name}_mean_per_class"] = mean_per_class(pred, ye)
                history.append(record)
                if self.verbose and world.main:
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in record.items()), flush=True)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{train_loss:.4g}")
                done = epoch + 1
                if checkpoint is not None and world.main and (done % checkpoint_every == 0
                                                              or done == epochs):
                    ckpt.save_training_state(
                        checkpoint, params=params, epoch=done, seed=seed, weight=W,
                        optimizer=opt, generator=gen, augmentation=strategy.state_dict(),
                        history=history, data_fingerprint=fingerprint, classes=classes,
                        feature_dims=dims)
        except TrainingDiverged as e:
            self.history_ = e.history = list(history)
            raise dist.mark_quiet(e, world)  # every rank diverges alike
        finally:
            if bar is not None:
                bar.close()

        self.W_ = W.detach()
        self.history_ = history
        self.n_iter_ = epochs
        if strategy.grows_training_set:
            self.n_train_rows_ = int(x_train.shape[0])
        return self

    def _batch_loss(self, epoch, xb, yb, W, strategy: Augmentation) -> Tensor:
        return strategy.loss(epoch, xb, yb, W)

    def _run_epoch(self, epoch, x_train, y_train, W, opt, gen, strategy: Augmentation,
                   history, params: dict | None = None, *, world=dist.SINGLE,
                   group=None, step=None) -> float:
        """One epoch of SGD steps (`step`: the compiled step of `train.compiled`, else the eager
        one); returns the mean batch loss. The batch losses stay on the device: the host reads
        them once, at the epoch's end, with whether W is finite (one sync per epoch). A NaN/Inf
        batch loss raises TrainingDiverged then, naming its cause
        (`validation.diagnose_nonfinite` on that batch's rows and the current W)."""
        params = params if params is not None else self.checked_params()
        n = x_train.shape[0]
        bs = params["batch_size"]
        device = x_train.device
        perm = torch.randperm(n, generator=gen).to(device)
        starts = range(0, n, bs)
        total = torch.zeros((), dtype=torch.float64, device=device)   # summed in step order
        losses = torch.empty(len(starts), dtype=torch.float64, device=device)
        for k, s in enumerate(starts):
            idx = perm[s:s + bs]
            try:
                if world.size > 1:   # this rank's rows of the global batch, dW all-reduced
                    loss = dist.train_step(world, idx, x_train, y_train, W, opt, lambda a, b:
                                           self._batch_loss(epoch, a, b, W, strategy), group)
                elif step is not None:
                    loss = step(x_train[idx], y_train[idx])
                else:
                    loss = self._batch_loss(epoch, x_train[idx], y_train[idx], W, strategy)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            except NonFiniteLoss as exc:  # sea_augment / a strategy: a NaN/Inf loss or weight
                raise TrainingDiverged(self._diverged_msg(epoch, float("nan"), strategy,
                                                          str(exc), params)) from exc
            loss = loss.detach().to(torch.float64)
            total += loss
            losses[k] = loss
        # the epoch's one host sync: [Σ losses, W finite, every batch loss]
        read = torch.cat([total.reshape(1), torch.isfinite(W).all().reshape(1).to(total.dtype),
                          losses]).cpu().numpy()
        train_loss = float(read[0] / len(starts))
        bad = np.flatnonzero(~np.isfinite(read[2:]))
        if bad.size and world.size == 1 and getattr(strategy, "config", None) is not None:
            self._raise_nonfinite(epoch, x_train[perm[bad[0] * bs:(bad[0] + 1) * bs]], W,
                                  strategy, params)
        first = history[0]["train_loss"] if history else train_loss
        zero = zero_classifier_loss(params["lam"], params["delta"], int(W.shape[1]))
        reason = divergence_reasons(train_loss, first, zero,
                                    weights_finite=bool(read[1])).item()
        if reason:
            raise TrainingDiverged(self._diverged_msg(epoch, train_loss, strategy,
                                                      explain(reason, first, zero), params))
        return train_loss

    def _raise_nonfinite(self, epoch, xb, W, strategy: Augmentation, params: dict):
        """TrainingDiverged for a batch whose fused loss came out NaN/Inf, naming the input at
        fault as the op's own check does (`validation.diagnose_nonfinite`, which always raises)."""
        cfg = strategy.config
        h = cfg.hyper
        try:
            diagnose_nonfinite(xb, W.detach(), h.lam, cfg.dtype, alpha=h.alpha, eta=h.eta,
                               delta=h.delta)
        except NonFiniteLoss as exc:
            raise TrainingDiverged(self._diverged_msg(epoch, float("nan"), strategy, str(exc),
                                                      params)) from exc

    def _diverged_msg(self, epoch, loss, strategy: Augmentation, why=None,
                      params: dict | None = None) -> str:
        p = params if params is not None else {"lr": float(self.lr), "eta": float(self.eta)}
        eta = p["eta"] if strategy.suggests_eta else None
        return diverged_message(epoch, loss, p["lr"], why, eta)

    # ------------------------------------------------------------------ inference
    def _logits(self, X) -> Tensor:
        """Plain logits XW (n×C, on the model's device), on prepared (unit-normalised) rows."""
        self._check_fitted()
        x = self._prepare_X(X, fitted=True)
        with torch.no_grad():
            return x @ self.W_.to(x.device, x.dtype)

    def decision_function(self, X) -> np.ndarray:
        """Plain logits XW (n×C numpy); for two classes scikit-learn's (n,) score l₁ − l₀ of
        classes_[1] (> 0 predicts it)."""
        logits = self._logits(X)
        if logits.shape[1] == 2:
            logits = logits[:, 1] - logits[:, 0]
        return logits.cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """The predicted original labels (argmax of XW), in the dtype of classes_."""
        best = self._logits(X).argmax(1).cpu().numpy()
        return self.classes_[best]

    def predict_proba(self, X) -> np.ndarray:
        """softmax(XW / λ), n×C (float64), columns in the order of classes_."""
        return torch.softmax(self._logits(X).double() / float(self.lam), dim=1).cpu().numpy()

    def predict_log_proba(self, X) -> np.ndarray:
        """log softmax(XW / λ), n×C (float64)."""
        return torch.log_softmax(self._logits(X).double() / float(self.lam), dim=1).cpu().numpy()

    def score(self, X, y, sample_weight=None) -> float:
        """Top-1 accuracy on (X, y), weighted by sample_weight (ClassifierMixin's score); y:
        labels of the kind of classes_."""
        self._check_fitted()
        return accuracy(self._labels_like_classes(y, "y"), self.predict(X), sample_weight)

    @property
    def coef_(self) -> np.ndarray:
        """C×d weight matrix (scikit-learn's layout: Wᵀ)."""
        self._check_fitted()
        return self.W_.T.cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the model file (`train.checkpoint.save_model`): params, W, classes_, feature
        dims, history, seed — a plain dict, stored with a format tag, a version and a SHA-256
        checksum (loadable with torch.load(weights_only=True))."""
        self._check_fitted()
        if checked_seed(self.random_state) is None and self.random_state is not None:
            saved = copy.copy(self)          # a numpy RNG is no file content: the seed it gave
            saved.random_state = self.seed_
            return ckpt.save_model(saved, path)
        ckpt.save_model(self, path)

    @classmethod
    def load(cls, path, *, device=None) -> "SeAClassifier":
        """Rebuild a fitted classifier written by `save` (device: override the saved one).

        The file is verified (format tag, checksum, finite weights, expected keys and shapes):
        a `data.errors.BadFileError` (a ValueError) naming the file and what is wrong."""
        return ckpt.load_model(cls, path, device=device)
