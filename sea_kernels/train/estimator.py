"""`SeAClassifier` — a scikit-learn-style linear classifier on fixed deep features, trained with SeA
(Alg. 1 of Qian, Xu & Hu, ECCV 2024) or one of the paper's ablations/baselines.

    clf = SeAClassifier(eta=0.4, lr=0.4, epochs=100).fit(X_train, y_train,
                                                         eval_set=[(X_val, y_val)])
    clf.score(X_test, y_test); clf.predict(X_test); clf.save("model.pt")

The training protocol (DESIGN.md §1) — the sweep engine (`sea_kernels.sweep`) reproduces it, so it
is spelled out exactly:

* Features: `features.prepare_features(X)` — X one n×d array/tensor or a list of blocks (several
  models' features of the same examples); every block L2-normalised per row, concatenated, the
  result renormalised (Eq. 1). float32 (float64 input stays float64). Labels: `classes_` = sorted
  unique labels, remapped to 0..C−1; predictions map back to the original labels.
* Weight: W = zeros(d, C) in the feature dtype, no bias.
* Shuffling: g = torch.Generator().manual_seed(random_state) (random_state=None: one seed is drawn
  from torch.seed() — without disturbing the global RNG — and stored as `seed_`); every epoch
  perm = torch.randperm(n, generator=g); the batches are consecutive slices perm[k·B:(k+1)·B],
  the last partial batch kept.
* Step: loss = fused_sea(xb, yb, W, alpha, eta, lam, delta, reduction="mean", direction=augment,
  backend=backend) for augment "sea"/"sea_neg"; loss.backward(); torch.optim.SGD(lr,
  momentum=0.9, dampening=0, nesterov=False, weight_decay=wd).step(), i.e. d_p = grad + wd·W,
  buf = d_p at the first step else momentum·buf + d_p, W −= lr·buf. Constant learning rate.
  η = 0 with "sea" is the no-augmentation baseline (Π(x) = x on unit rows).
* Other `augment` values (the `backend` argument only applies to "sea"/"sea_neg"):
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

Divergence: when a batch loss is NaN/Inf, W stops being finite, an epoch's mean train loss exceeds
1000× the first epoch's, or — the common failure — it exceeds 2× the loss of the all-zero classifier
(λ·log(1 + (C−1)e^{δ/λ}), the loss of the very first step: a model worse than predicting nothing),
fit raises `TrainingDiverged` naming the epoch and the learning rate and suggesting a 4× smaller
one. That last rule is what catches SeA at the authors' defaults η = 0.8, lr = 1.6 on CIFAR-10
EfficientNet-Lite0 features: on a 5,000-row training slice the test accuracy reaches 67% after two
epochs, then falls to 12–50% while the train loss oscillates at 2–5× the zero classifier's (it
stays finite); lr = 0.4 trains normally. Pick lr and η on a validation set (the paper searches them).

Checkpoints: fit(..., checkpoint=path) writes the complete training state (W, optimizer momentum,
generator states, epoch, history, ISDA estimator / ME-ADA rows) every `checkpoint_every` epochs and
after the last one, atomically (temp file + os.replace). If the file exists, fit resumes from it
and the result is the same as an uninterrupted run (stop after k epochs by fitting with epochs=k,
resume with epochs=N). The training hyper-parameters and the data must match the checkpoint
(ValueError otherwise); `epochs` may grow (note that ISDA's ramp and ME-ADA's schedule depend on
`epochs`, so for those two a resumed run with a different `epochs` is a different schedule).
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
import tempfile
import warnings

import numpy as np
import torch
from torch import Tensor

from . import baselines
from .baselines import ME_ADA_DEFAULTS
from .divergence import COLLAPSE_FACTOR, DIVERGENCE_FACTOR, TrainingDiverged, zero_classifier_loss
from ..data.writers import save_torch
from ..data.features import block_dims, check_block_dims, prepare_features
from .metrics import mean_per_class, top1
from ..op.fused import fused_sea, resolve_backend, sea_augment
from ..op.reference import smoothed_hinge_loss

__all__ = ["SeAClassifier", "TrainingDiverged", "NotFittedError", "AUGMENTS"]

AUGMENTS = ("sea", "sea_neg", "none", "adv", "rand", "mixup", "isda", "me_ada")
_FORMAT_MODEL = "sea_kernels.SeAClassifier/1"
_FORMAT_CKPT = "sea_kernels.SeAClassifier.checkpoint/1"
# Parameters that may differ between a checkpoint and the run resuming it.
_RESUME_FREE = ("epochs", "backend", "device", "verbose")


class NotFittedError(ValueError, AttributeError):
    """predict/score/coef_/save before fit (ValueError and AttributeError, as in scikit-learn)."""


def _draw_seed() -> int:
    state = torch.get_rng_state()
    try:
        return int(torch.seed())
    finally:
        torch.set_rng_state(state)


def _labels_to_numpy(y, n_rows: int | None, name: str = "y") -> np.ndarray:
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per row), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and \
                np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} labels but X has {n_rows} rows")
    return arr


def _check_real(name, v, *, lo=None, lo_open=False, hi=None, hi_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '≥'} {lo}, got {v}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{name} must be {'<' if hi_open else '≤'} {hi}, got {v}")


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be ≥ {lo}, got {v}")


class SeAClassifier:
    """Linear classifier (no bias) on fixed features, trained by SGD with SeA augmentation.

    Parameters (scikit-learn conventions: stored unchanged, validated in fit)
    ----------
    augment : "sea" (default), "sea_neg", "none", "adv", "rand", "mixup", "isda", "me_ada"
    epochs : int, 100.   batch_size : int, 256.   lr : float, 1.6 (the paper's default at batch 256;
        too large for some feature sets — see TrainingDiverged).   momentum : 0.9.
    weight_decay : τ, 1e-6.   alpha : projection temperature α, 0.01.   eta : step η, 0.8
        (0 = no augmentation).   lam : loss temperature λ, 0.1.   delta : margin δ, 0.0.
    backend : "auto", "torch", "cpp", "triton" — the fused SeA kernel ("sea"/"sea_neg" only).
    random_state : int or None.   device : "cpu", "cuda", ...
    isda_strength : λ_0 of ISDA's ramp, 0.5 (ISDA's default).
    me_ada_steps=15, me_ada_gamma=1.0, me_ada_beta=10.0, me_ada_rounds=2 (ME-ADA's CIFAR
        defaults), me_ada_lr=0.003 (feature-space ascent step, see `baselines`).
    verbose : print one line per epoch.

    Attributes after fit: classes_, n_features_in_, feature_dims_, coef_ (C×d numpy), W_ (d×C
    tensor), history_, seed_, n_iter_ (epochs trained), backend_ (resolved backend), and for
    "me_ada" n_train_rows_ (original + appended rows).

    predict_proba returns softmax(XW/λ): the distribution the smoothed-hinge loss is the negative
    log-likelihood of (for δ = 0), up to the factor λ.
    """

    _estimator_type = "classifier"

    def __init__(self, augment="sea", epochs=100, batch_size=256, lr=1.6, momentum=0.9,
                 weight_decay=1e-6, alpha=0.01, eta=0.8, lam=0.1, delta=0.0, backend="auto",
                 random_state=None, device="cpu", isda_strength=0.5,
                 me_ada_steps=ME_ADA_DEFAULTS["steps"], me_ada_gamma=ME_ADA_DEFAULTS["gamma"],
                 me_ada_beta=ME_ADA_DEFAULTS["beta"], me_ada_lr=ME_ADA_DEFAULTS["lr"],
                 me_ada_rounds=ME_ADA_DEFAULTS["rounds"], verbose=False):
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

    # ------------------------------------------------------------------ sklearn parameter protocol
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """All constructor arguments, as a dict (scikit-learn semantics)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "SeAClassifier":
        """Set constructor arguments by name; unknown names are a ValueError. Returns self."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator SeAClassifier. "
                                 f"Valid parameters are: {sorted(valid)}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()
                    if k != "self"}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"SeAClassifier({', '.join(changed)})"

    def _validate_params(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_real("lr", self.lr, lo=0, lo_open=True)
        _check_real("momentum", self.momentum, lo=0, hi=1, hi_open=True)
        _check_real("weight_decay", self.weight_decay, lo=0)
        _check_real("alpha", self.alpha, lo=0, lo_open=True)
        _check_real("eta", self.eta, lo=0)
        _check_real("lam", self.lam, lo=0, lo_open=True)
        _check_real("delta", self.delta)
        _check_real("isda_strength", self.isda_strength, lo=0)
        _check_int("me_ada_steps", self.me_ada_steps, 1)
        _check_real("me_ada_gamma", self.me_ada_gamma, lo=0)
        _check_real("me_ada_beta", self.me_ada_beta, lo=0)
        _check_real("me_ada_lr", self.me_ada_lr, lo=0, lo_open=True)
        _check_int("me_ada_rounds", self.me_ada_rounds, 1)
        if self.augment == "me_ada":
            baselines.me_ada_round_epochs(self.epochs, self.me_ada_rounds)
        if self.random_state is not None:
            if isinstance(self.random_state, bool) or not isinstance(self.random_state,
                                                                     numbers.Integral):
                raise TypeError(f"random_state must be an int or None, got "
                                f"{type(self.random_state).__name__}")
            if self.random_state < 0:
                raise ValueError(f"random_state must be ≥ 0, got {self.random_state}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device {self.device!r} is not a torch device: {exc}") from None

    # ------------------------------------------------------------------ data helpers
    def _prepare_X(self, X) -> Tensor:
        return prepare_features(X, device=torch.device(self.device))

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise NotFittedError("this SeAClassifier is not fitted yet; call fit(X, y) first")

    def _prepare_eval(self, eval_set):
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
            check_block_dims(Xe, self.feature_dims_, f"eval_set {name!r} X")
            xe = self._prepare_X(Xe)
            out.append((str(name), xe, _labels_to_numpy(ye, xe.shape[0], f"eval_set {name!r} y")))
        return out

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, eval_set=None, checkpoint=None, checkpoint_every: int = 1,
            progress: bool = False) -> "SeAClassifier":
        """Train on features X (n×d array/tensor or list of blocks) and integer labels y.

        eval_set: list of (X, y) pairs (or a dict name → (X, y)) scored after every epoch into
        history_. checkpoint: path; saved every `checkpoint_every` epochs and at the end (temp file
        + os.replace); an existing file is resumed from. progress: tqdm bar over epochs.
        Raises TrainingDiverged when the loss blows up (see the module docstring).
        """
        self._validate_params()
        _check_int("checkpoint_every", checkpoint_every, 1)
        device = torch.device(self.device)
        for attr in ("W_", "history_", "n_iter_", "n_train_rows_"):
            self.__dict__.pop(attr, None)

        dims = block_dims(X)
        x = self._prepare_X(X)
        n, d = x.shape
        y_np = _labels_to_numpy(y, n)
        classes, y_idx = np.unique(y_np, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y contains a single class ({classes[0]!r}); a classifier needs at "
                             "least 2 classes")
        self.classes_ = classes
        self.feature_dims_ = dims
        self.n_features_in_ = d
        evals = [(name, xe.to(x.dtype), ye) for name, xe, ye in self._prepare_eval(eval_set)]
        labels = torch.as_tensor(y_idx.reshape(-1), dtype=torch.long, device=device)
        C = len(classes)
        backend = resolve_backend(self.backend, device, (x.dtype,)) if self.augment in ("sea", "sea_neg") \
            else "torch"
        self.backend_ = backend

        seed = int(self.random_state) if self.random_state is not None else _draw_seed()
        W = torch.zeros(d, C, dtype=x.dtype, device=device, requires_grad=True)
        opt = torch.optim.SGD([W], lr=self.lr, momentum=self.momentum, dampening=0,
                              nesterov=False, weight_decay=self.weight_decay)
        state = {"epoch": 0, "history": [], "seed": seed, "extra_x": None, "extra_y": None,
                 "isda": None, "aug_gen": None}
        fingerprint = _fingerprint(x, labels, classes)
        if checkpoint is not None and os.path.exists(checkpoint):
            state = self._load_checkpoint(checkpoint, fingerprint, W, opt)
            seed = state["seed"]
        gen = torch.Generator().manual_seed(seed)
        if state.get("generator") is not None:
            gen.set_state(state["generator"])
        aug_gen = None
        if self.augment in ("rand", "mixup"):
            aug_gen = torch.Generator(device=device).manual_seed((seed + 1) % 2**64)
            if state["aug_gen"] is not None:
                aug_gen.set_state(state["aug_gen"])
        isda = None
        if self.augment == "isda":
            isda = baselines.ISDAEstimator(d, C, dtype=x.dtype, device=device)
            if state["isda"] is not None:
                isda.load_state_dict(state["isda"])
        self.seed_ = seed

        x_train, y_train = x, labels
        if state["extra_x"] is not None:
            x_train = torch.cat([x, state["extra_x"].to(device, x.dtype)])
            y_train = torch.cat([labels, state["extra_y"].to(device)])
        rounds = baselines.me_ada_round_epochs(self.epochs, self.me_ada_rounds) \
            if self.augment == "me_ada" else []
        history = list(state["history"])
        start = int(state["epoch"])
        if start > self.epochs:
            raise ValueError(f"checkpoint {checkpoint!r} already holds {start} epochs, more than "
                             f"epochs={self.epochs}; raise epochs or use another checkpoint path")

        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.epochs, initial=start, desc=f"SeA {self.augment}", unit="epoch")
        try:
            for epoch in range(start, self.epochs):
                if epoch in rounds:
                    new_x = baselines.me_ada_generate(
                        x, labels, W.detach(), lam=self.lam, delta=self.delta,
                        steps=self.me_ada_steps, lr=self.me_ada_lr, gamma=self.me_ada_gamma,
                        beta=self.me_ada_beta)
                    x_train = torch.cat([x_train, new_x])
                    y_train = torch.cat([y_train, labels])
                train_loss = self._run_epoch(epoch, x_train, y_train, W, opt, gen, aug_gen, isda,
                                             backend, history)
                record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": float(self.lr),
                          "n_train": int(x_train.shape[0])}
                with torch.no_grad():
                    for name, xe, ye in evals:
                        pred = self.classes_[(xe @ W).argmax(1).cpu().numpy()]
                        record[f"{name}_top1"] = top1(pred, ye)
                        record[f"{name}_mean_per_class"] = mean_per_class(pred, ye)
                history.append(record)
                if self.verbose:
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in record.items()), flush=True)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{train_loss:.4g}")
                done = epoch + 1
                if checkpoint is not None and (done % checkpoint_every == 0 or done == self.epochs):
                    self._save_checkpoint(checkpoint, done, W, opt, gen, aug_gen, isda, history,
                                          seed, fingerprint, x_train[n:], y_train[n:])
        except TrainingDiverged as e:
            self.history_ = e.history = list(history)
            raise
        finally:
            if bar is not None:
                bar.close()

        self.W_ = W.detach()
        self.history_ = history
        self.n_iter_ = self.epochs
        if self.augment == "me_ada":
            self.n_train_rows_ = int(x_train.shape[0])
        return self

    def _batch_loss(self, epoch, xb, yb, W, aug_gen, isda, backend) -> Tensor:
        aug = self.augment
        if aug in ("sea", "sea_neg"):
            return fused_sea(xb, yb, W, alpha=self.alpha, eta=self.eta, lam=self.lam,
                             delta=self.delta, reduction="mean", direction=aug, backend=backend)
        if aug in ("none", "me_ada"):
            return smoothed_hinge_loss(xb @ W, yb, self.lam, self.delta)
        if aug in ("adv", "rand", "mixup"):
            xa = sea_augment(xb, yb, W.detach(), alpha=self.alpha, eta=self.eta, lam=self.lam,
                             delta=self.delta, direction=aug, generator=aug_gen)
            return smoothed_hinge_loss(xa @ W, yb, self.lam, self.delta)
        # isda
        isda.update(xb, yb)
        ratio = self.isda_strength * epoch / self.epochs
        return baselines.isda_loss(xb, yb, W, isda.cov, ratio, lam=self.lam, delta=self.delta)

    def _run_epoch(self, epoch, x_train, y_train, W, opt, gen, aug_gen, isda, backend,
                   history) -> float:
        n = x_train.shape[0]
        bs = self.batch_size
        perm = torch.randperm(n, generator=gen).to(x_train.device)
        total = torch.zeros((), dtype=torch.float64, device=x_train.device)
        batches = 0
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            xb, yb = x_train[idx], y_train[idx]
            try:
                loss = self._batch_loss(epoch, xb, yb, W, aug_gen, isda, backend)
            except ValueError as exc:  # fused_sea / sea_augment raise on a NaN/Inf loss or weight
                if "NaN" not in str(exc) and "Inf" not in str(exc):
                    raise
                raise TrainingDiverged(self._diverged_msg(epoch, float("nan"), str(exc))) from exc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().to(torch.float64)
            batches += 1
        train_loss = float(total / batches)
        if not math.isfinite(train_loss) or not bool(torch.isfinite(W).all()):
            raise TrainingDiverged(self._diverged_msg(epoch, train_loss))
        zero = zero_classifier_loss(self.lam, self.delta, int(W.shape[1]))
        if train_loss > COLLAPSE_FACTOR * zero:
            raise TrainingDiverged(self._diverged_msg(
                epoch, train_loss, f"the train loss is above {COLLAPSE_FACTOR:g}× the loss "
                f"{zero:.4g} of the all-zero classifier: the model collapsed"))
        first = history[0]["train_loss"] if history else train_loss
        if train_loss > DIVERGENCE_FACTOR * max(first, 1e-12):
            raise TrainingDiverged(self._diverged_msg(
                epoch, train_loss, f"the train loss grew above {DIVERGENCE_FACTOR:g}× the first "
                f"epoch's ({first:.4g})"))
        return train_loss

    def _diverged_msg(self, epoch, loss, why=None):
        msg = (f"training diverged at epoch {epoch + 1} (loss {loss:.4g}) with lr={self.lr:g}; "
               f"try lr={self.lr / 4:g} or lower")
        if self.augment in ("sea", "sea_neg", "adv") and self.eta > 0:
            msg += f" (or a smaller eta than {self.eta:g})"
        return msg + (f" [{why}]" if why else "")

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, path, epoch, W, opt, gen, aug_gen, isda, history, seed,
                         fingerprint, extra_x, extra_y):
        ckpt = {
            "format": _FORMAT_CKPT,
            "params": _plain_params(self.get_params()),
            "epoch": int(epoch),
            "seed": int(seed),
            "W": W.detach().cpu().clone(),
            "optimizer": _to_cpu(opt.state_dict()),
            "generator": gen.get_state(),
            "aug_gen": aug_gen.get_state().cpu() if aug_gen is not None else None,
            "isda": isda.state_dict() if isda is not None else None,
            "extra_x": extra_x.detach().cpu().clone() if extra_x.shape[0] else None,
            "extra_y": extra_y.detach().cpu().clone() if extra_y.shape[0] else None,
            "history": [dict(r) for r in history],
            "fingerprint": fingerprint,
            "classes": [int(c) for c in self.classes_],
            "feature_dims": list(self.feature_dims_),
        }
        save_torch(ckpt, path)

    def _load_checkpoint(self, path, fingerprint, W, opt) -> dict:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT_CKPT:
            raise ValueError(f"checkpoint {path!r} is not a SeAClassifier training checkpoint")
        saved, now = ckpt["params"], _plain_params(self.get_params())
        for key, value in now.items():
            if key in _RESUME_FREE or (key == "random_state" and value is None):
                continue
            if saved.get(key) != value:
                raise ValueError(f"checkpoint {path!r} was written with {key}={saved.get(key)!r}, "
                                 f"this run has {key}={value!r}; use the same training parameters "
                                 "or another checkpoint path")
        if not _same_fingerprint(ckpt["fingerprint"], fingerprint):
            raise ValueError(f"checkpoint {path!r} was written for different training data "
                             f"(n, d, C) = {tuple(ckpt['fingerprint'][:3])} vs "
                             f"{tuple(fingerprint[:3])} or different values; use another path")
        with torch.no_grad():
            W.copy_(ckpt["W"].to(W.device, W.dtype))
        opt.load_state_dict(ckpt["optimizer"])
        return ckpt

    # ------------------------------------------------------------------ inference
    def decision_function(self, X) -> np.ndarray:
        """Plain logits XW (n×C numpy), on prepared (unit-normalised) features."""
        self._check_fitted()
        check_block_dims(X, self.feature_dims_)
        x = self._prepare_X(X)
        with torch.no_grad():
            return (x @ self.W_.to(x.device, x.dtype)).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """The predicted original labels (argmax of XW)."""
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(1)]

    def predict_proba(self, X) -> np.ndarray:
        """softmax(XW / λ), n×C, columns in the order of classes_."""
        logits = torch.from_numpy(self.decision_function(X))
        return torch.softmax(logits.double() / self.lam, dim=1).numpy()

    def predict_log_proba(self, X) -> np.ndarray:
        logits = torch.from_numpy(self.decision_function(X))
        return torch.log_softmax(logits.double() / self.lam, dim=1).numpy()

    def score(self, X, y) -> float:
        """Top-1 accuracy on (X, y)."""
        y_np = _labels_to_numpy(y, None)
        return top1(self.predict(X), y_np)

    @property
    def coef_(self) -> np.ndarray:
        """C×d weight matrix (scikit-learn's layout: Wᵀ)."""
        self._check_fitted()
        return self.W_.T.cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """torch.save a plain dict (loadable with weights_only=True): params, W, classes_,
        feature dims, history, seed."""
        self._check_fitted()
        blob = {
            "format": _FORMAT_MODEL,
            "params": _plain_params(self.get_params()),
            "W": self.W_.detach().cpu().clone(),
            "classes": self.classes_.tolist(),
            "classes_dtype": str(self.classes_.dtype),
            "feature_dims": list(self.feature_dims_),
            "n_features_in": int(self.n_features_in_),
            "history": [dict(r) for r in self.history_],
            "seed": int(self.seed_),
            "n_iter": int(self.n_iter_),
        }
        save_torch(blob, path)

    @classmethod
    def load(cls, path, *, device=None) -> "SeAClassifier":
        """Rebuild a fitted classifier written by `save` (device: override the saved one)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT_MODEL:
            raise ValueError(f"{path!r} is not a saved SeAClassifier (use SeAClassifier.save)")
        params = dict(blob["params"])
        if device is not None:
            params["device"] = str(device)
        elif torch.device(params["device"]).type == "cuda" and not torch.cuda.is_available():
            warnings.warn(f"{path!r} was saved on {params['device']}; no CUDA here, loading on CPU",
                          RuntimeWarning, stacklevel=2)
            params["device"] = "cpu"
        clf = cls(**params)
        clf.W_ = blob["W"].to(torch.device(clf.device))
        clf.classes_ = np.asarray(blob["classes"], dtype=np.dtype(blob["classes_dtype"]))
        clf.feature_dims_ = list(blob["feature_dims"])
        clf.n_features_in_ = int(blob["n_features_in"])
        clf.history_ = list(blob["history"])
        clf.seed_ = int(blob["seed"])
        clf.n_iter_ = int(blob["n_iter"])
        clf.backend_ = None
        return clf


# ---------------------------------------------------------------------- module helpers
def _plain_params(params: dict) -> dict:
    """Params as plain Python values (weights_only-loadable)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, torch.device):
            v = str(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _fingerprint(x: Tensor, labels: Tensor, classes: np.ndarray) -> list:
    """Cheap content check of the training data: shape, classes and two weighted sums."""
    n, d = x.shape
    rows = x.double().sum(1)
    pos = torch.arange(n, dtype=torch.float64, device=x.device) / max(n, 1)
    return [int(n), int(d), int(len(classes)), float(rows.sum()), float((rows * pos).sum()),
            int(labels.sum()), float((labels.double() * pos).sum()),
            [int(c) for c in classes]]


def _same_fingerprint(a, b) -> bool:
    if list(a[:3]) != list(b[:3]) or a[5] != b[5] or list(a[7]) != list(b[7]):
        return False
    return all(math.isclose(a[i], b[i], rel_tol=1e-6, abs_tol=1e-6) for i in (3, 4, 6))
