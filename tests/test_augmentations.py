"""train.augmentations: one strategy object per `augment` value — the registry, fit as a plain loop
over a strategy, and every strategy's state round trip (what checkpoints rely on)."""
import io

import numpy as np
import pytest
import torch

from sea_kernels import params as P
from sea_kernels.data.features import prepare_features
from sea_kernels.data.labels import encode_labels
from sea_kernels.train import augmentations as A
from sea_kernels.train.estimator import SeAClassifier

CPU = torch.device("cpu")


def _toy(n=90, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = (rng.standard_normal((c, d))[y] * 2 + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


def _params(augment, **kw):
    kw = {"epochs": 4, "lr": 0.4, "eta": 0.05 if augment == "adv" else 0.4, "batch_size": 32,
          "random_state": 3, "me_ada_rounds": 2, "backend": "torch", **kw}
    return SeAClassifier(augment=augment, **kw).get_params()


def _make(augment, params, x, c, seed=3):
    return A.make_augmentation(augment, params, num_features=x.shape[1], num_classes=c,
                               dtype=x.dtype, device=CPU, seed=seed)


def test_registry_covers_every_augment_value():
    assert tuple(A.AUGMENTATIONS) == P.AUGMENTS
    assert all(issubclass(cls, A.Augmentation) for cls in A.AUGMENTATIONS.values())
    x = torch.zeros(4, 3)
    flags = {a: _make(a, _params(a), x, 2).suggests_eta for a in P.AUGMENTS}
    assert {a for a, f in flags.items() if f} == {"sea", "sea_neg", "adv"}
    assert [a for a in P.AUGMENTS if A.AUGMENTATIONS[a].grows_training_set] == ["me_ada"]
    assert _make("sea", _params("sea"), x, 2).backend == "torch"
    assert _make("isda", _params("isda", backend="auto"), x, 2).backend == "torch"
    with pytest.raises(ValueError, match="me_ada_rounds=2 needs epochs ≥ 3"):
        A.MEADA.check_params(_params("me_ada", epochs=2))
    A.Plain.check_params(_params("none", epochs=1))        # no constraint


@pytest.mark.parametrize("augment", P.AUGMENTS)
def test_fit_is_a_plain_loop_over_the_strategy(augment):
    """SeAClassifier.fit has no per-method branch: the same loop over the strategy object gives
    bit-identical weights (same shuffling, same augmentation random streams)."""
    X, y = _toy()
    params = _params(augment)
    clf = SeAClassifier(**params).fit(X, y)

    x = prepare_features(X)
    classes, idx = encode_labels(y)
    labels = torch.as_tensor(idx)
    W = torch.zeros(x.shape[1], len(classes), requires_grad=True)
    opt = torch.optim.SGD([W], lr=0.4, momentum=0.9, weight_decay=params["weight_decay"])
    gen = torch.Generator().manual_seed(3)
    aug = _make(augment, params, x, len(classes))
    for epoch in range(params["epochs"]):
        aug.before_epoch(epoch, x, labels, W)
        xt, yt = aug.training_set(x, labels)
        perm = torch.randperm(xt.shape[0], generator=gen)
        for s in range(0, xt.shape[0], 32):
            b = perm[s:s + 32]
            loss = aug.loss(epoch, xt[b], yt[b], W)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.equal(clf.W_, W.detach())
    if augment == "me_ada":
        assert clf.n_train_rows_ == xt.shape[0] == 3 * x.shape[0]


def _flat(state):
    return [t for v in state.values() for t in (v.values() if isinstance(v, dict) else [v])]


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("augment", P.AUGMENTS)
def test_state_round_trip_continues_identically(augment):
    X, y = _toy()
    x = prepare_features(X)
    labels = torch.as_tensor(y)
    params = _params(augment)
    w = torch.randn(x.shape[1], 3, generator=torch.Generator().manual_seed(1)) * 0.5
    first = _make(augment, params, x, 3)
    for epoch in (0, 1):                                   # ME-ADA's rounds: before epochs 1, 2
        first.before_epoch(epoch, x, labels, w)
        xt, yt = first.training_set(x, labels)
        for s in range(0, 64, 32):
            first.loss(epoch, xt[s:s + 32], yt[s:s + 32], w)
    state = _roundtrip(first.state_dict())
    for v in state.values():
        assert not isinstance(v, torch.Tensor) or v.device.type == "cpu"
    second = _make(augment, params, x, 3, seed=99)        # another seed: the state must win
    second.load_state_dict(state)
    for aug in (first, second):
        aug.before_epoch(2, x, labels, w)
    (xa, ya), (xb, yb) = first.training_set(x, labels), second.training_set(x, labels)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for s in (0, 32):
        la = first.loss(2, xa[s:s + 32], ya[s:s + 32], w)
        lb = second.loss(2, xb[s:s + 32], yb[s:s + 32], w)
        assert torch.equal(la, lb)
    sa, sb = first.state_dict(), second.state_dict()
    assert sa.keys() == sb.keys()
    for ta, tb in zip(_flat(sa), _flat(sb)):
        assert (torch.equal(ta, tb) if isinstance(ta, torch.Tensor) else ta == tb)


def test_states_hold_what_each_method_owns():
    X, y = _toy()
    x, labels = prepare_features(X), torch.as_tensor(y)
    w = torch.full((x.shape[1], 3), 0.1)
    for a in ("sea", "sea_neg", "none", "adv"):
        assert _make(a, _params(a), x, 3).state_dict() == {}
    rand = _make("rand", _params("rand"), x, 3)
    assert set(rand.state_dict()) == {"generator"}
    ref = torch.Generator().manual_seed(4)                 # (seed 3 + 1)
    assert torch.equal(rand.state_dict()["generator"], ref.get_state())
    isda = _make("isda", _params("isda"), x, 3)
    isda.loss(0, x[:10], labels[:10], w)
    est = isda.state_dict()["estimator"]
    assert int(est["count"].sum()) == 10 and est["cov"].shape == (3, 8, 8)
    me = _make("me_ada", _params("me_ada"), x, 3)
    assert me.rounds == [1, 2] and me.state_dict() == {"x": None, "y": None}
    me.before_epoch(0, x, labels, w)
    assert me.training_set(x, labels)[0] is x              # no round before epoch 0
    me.before_epoch(1, x, labels, w)
    st = me.state_dict()
    assert st["x"].shape == x.shape and torch.equal(st["y"], labels)
    assert torch.allclose(st["x"].norm(dim=1), torch.ones(len(x)))
