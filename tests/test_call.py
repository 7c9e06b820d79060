"""One call, validated once (op/call.py): the SeaCall value and its conventions, the backends'
declared features and the reasons `auto` gives, and the trainer validating once per fit."""
import dataclasses

import numpy as np
import pytest
import torch

import sea_kernels
from sea_kernels.op import call as calls
from sea_kernels.op import dispatch, fused
from sea_kernels.op.call import Hyper, compute_dtype, configure, group_size_of, validate


def problem(b=6, d=5, c=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return x, torch.randint(0, c, (b,), generator=g, dtype=torch.int32), \
        torch.randn(d, c, generator=g, dtype=dtype)


def test_validate_normalises_once():
    x, y, w = problem()
    call = validate(x, y, w, alpha=1, eta=0, lam=2, delta=0, group_size=6, backend="torch")
    assert call.labels.dtype == torch.int64 and call.backend == "torch"
    assert call.hyper == Hyper(1.0, 0.0, 2.0, 0.0, False, None)      # G ≥ b: the whole batch
    assert all(type(v) is float for v in call.hyper[:4]) and call.features == frozenset()
    grouped = validate(x, y, w, group_size=4, direction="sea_neg",
                       bias=torch.zeros(3, dtype=torch.float64))
    assert grouped.hyper.group_size == 4 and grouped.hyper.negative_only
    assert grouped.features == {"groups", "bias"} and grouped.dtype == torch.float64
    assert torch.equal(grouped.row_scale(), torch.full((6,), 1 / 6, dtype=torch.float64))


def test_one_compute_dtype_and_group_convention():
    f32, f64 = torch.ones(1), torch.ones(1, dtype=torch.float64)
    assert compute_dtype(f32, f32, f64) == compute_dtype(torch.float64) == torch.float64
    assert compute_dtype(f32.half(), f32.bfloat16(), None) == torch.float32
    assert [group_size_of(g, 8) for g in (None, 1, 7, 8, 100)] == [None, 1, 7, None, None]
    with pytest.raises(ValueError, match="group_size"):
        calls.check_group_size(0)


def test_a_missing_feature_is_refused_with_the_reason(monkeypatch):
    x, y, w = problem()
    torch_spec = dispatch.BACKENDS_BY_NAME["torch"]
    monkeypatch.setitem(dispatch.BACKENDS_BY_NAME, "torch",
                        dataclasses.replace(torch_spec, features=frozenset({"bias"})))
    with pytest.raises(ValueError, match="backend='torch' does not support groups"):
        sea_kernels.fused_sea(x, y, w, group_size=2, backend="torch")
    assert sea_kernels.fused_sea(x, y, w, group_size=6, backend="torch").isfinite()  # = whole


def test_auto_explains_every_refusal(monkeypatch):
    for name, spec in list(dispatch.BACKENDS_BY_NAME.items()):   # a feature no backend declares
        monkeypatch.setitem(dispatch.BACKENDS_BY_NAME, name, dataclasses.replace(
            spec, features=spec.features - {"input_grad"}))
    reasons = dispatch.explain("cpu", (torch.float32,), ("input_grad",))
    assert list(reasons) == list(dispatch.PRIORITY)
    assert all(any("does not support input_grad" in r for r in rs) for rs in reasons.values())
    with pytest.raises(ValueError, match=r"no backend takes this call .*input_grad.*: triton .*"
                                         r"; cpp .*; torch does not support input_grad"):
        dispatch.resolve_backend("auto", "cpu", (torch.float32,), ("input_grad",))
    assert all("input_grad" not in b.features for b in dispatch.BACKENDS_BY_NAME.values())


def test_config_bind_equals_validate():
    x, y, w = problem(b=7)
    cfg = configure(alpha=0.05, group_size=4, backend="torch", dtype=x.dtype)
    assert cfg.hyper.group_size == 4
    bound = cfg.bind(x, y, w)
    full = validate(x, y, w, alpha=0.05, group_size=4, backend="torch")
    assert bound[4:] == full[4:] and torch.equal(bound.labels, full.labels)
    assert cfg.bind(x[:3], y[:3], w).hyper.group_size is None    # a short last batch: whole
    torch.testing.assert_close(fused.run(bound),
                               sea_kernels.fused_sea(x, y, w, alpha=0.05, group_size=4,
                                                     backend="torch"), rtol=0, atol=0)


def test_trainer_validates_once_per_fit(monkeypatch):
    counts = {"validate": 0, "configure": 0}
    for name in counts:
        real = getattr(calls, name)

        def counted(*a, _real=real, _name=name, **k):
            counts[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(calls, name, counted)
    monkeypatch.setattr(fused.calls, "validate", calls.validate)
    import sea_kernels.train.augmentations as aug
    monkeypatch.setattr(aug, "configure", calls.configure)
    g = np.random.default_rng(0)
    X, y = g.normal(size=(40, 6)).astype(np.float32), g.integers(0, 3, 40)
    sea_kernels.SeAClassifier(epochs=2, batch_size=8, lr=0.1, backend="torch").fit(X, y)
    assert counts == {"validate": 0, "configure": 1}     # 10 batches, one configuration
