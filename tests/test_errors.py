"""Bad input raises a ValueError/TypeError naming the argument — never a NaN or a kernel crash."""
import pytest
import torch
from helpers import make_problem

import sea_kernels
from sea_kernels.op.validation import NonFiniteLoss

x0, y0, w0 = make_problem(8, 6, 4, dtype=torch.float32)

BAD = {
    "labels_too_large": (dict(labels=torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])),
                         ValueError, r"labels.*\[0, 4\).*4"),
    "labels_negative": (dict(labels=torch.tensor([0, -1, 2, 3, 0, 0, 1, 2])),
                        ValueError, r"labels.*-1"),
    "labels_float": (dict(labels=y0.float()), TypeError, "labels.*integer"),
    "labels_2d": (dict(labels=y0[:, None]), ValueError, "labels must be 1-D"),
    "labels_wrong_length": (dict(labels=y0[:5]), ValueError, "labels has 5 entries"),
    "x_1d": (dict(x=x0[0]), ValueError, "x must be 2-D"),
    "x_int": (dict(x=x0.long()), TypeError, "x must be float"),
    "x_not_tensor": (dict(x=x0.numpy()), TypeError, "x must be a torch.Tensor"),
    "x_empty": (dict(x=x0[:0], labels=y0[:0]), ValueError, "at least one row"),
    "weight_shape": (dict(weight=w0[:5]), ValueError, "weight must have shape"),
    "weight_int": (dict(weight=w0.long()), TypeError, "weight must be a floating"),
    "x_nan": (dict(x=x0.clone().index_fill_(0, torch.tensor([3]), float("nan"))),
              ValueError, "x contains NaN"),
    "x_inf": (dict(x=x0.clone().index_fill_(0, torch.tensor([3]), float("inf"))),
              ValueError, "x contains NaN or Inf"),
    "weight_nan": (dict(weight=w0.clone().index_fill_(0, torch.tensor([1]), float("nan"))),
                   ValueError, "weight contains NaN"),
    "weight_overflow": (dict(weight=w0 * 1e37, lam=1e-3), ValueError, "overflowed.*learning rate"),
    "weight_one_class": (dict(weight=w0[:, :1], labels=torch.zeros(8, dtype=torch.long)),
                         ValueError, "weight needs at least 2 classes"),
    "weight_no_class": (dict(weight=w0[:, :0]), ValueError, "weight needs at least 2 classes"),
    "weights_overflow_logits": (dict(x=x0 * 10, weight=w0 / w0.abs().max() * 3e38), NonFiniteLoss,
                                "weights are too large.*learning rate"),
    "logits_over_lam": (dict(weight=w0 * 1e4, lam=1e-35), NonFiniteLoss,
                        r"tempered logits.*lam = 1e-35.*raise lam"),
    "alpha_rounds_to_zero": (dict(alpha=1e-50), ValueError, "alpha = 1e-50 rounds to 0 in float32"),
    "alpha_subnormal": (dict(alpha=1e-40), ValueError, "alpha = 1e-40 rounds to a subnormal"),
    "eta_overflow": (dict(eta=1e20), ValueError, "eta = 1e\\+20 is too large for float32"),
    "lam_overflow": (dict(lam=1e-39), ValueError, "lam = 1e-39 is too small for float32"),
    "delta_overflow": (dict(delta=1e38, lam=0.1), ValueError,
                       "delta = 1e\\+38 .*overflows float32"),
    "alpha_zero": (dict(alpha=0.0), ValueError, "alpha.*> 0"),
    "alpha_negative": (dict(alpha=-1.0), ValueError, "alpha"),
    "lam_zero": (dict(lam=0.0), ValueError, "lam.*> 0"),
    "eta_negative": (dict(eta=-0.1), ValueError, "eta.*≥ 0"),
    "delta_nan": (dict(delta=float("nan")), ValueError, "delta must be finite"),
    "alpha_string": (dict(alpha="0.01"), TypeError, "alpha must be a real number"),
    "reduction": (dict(reduction="avg"), ValueError, "reduction must be one of"),
    "backend": (dict(backend="cuda"), ValueError, "backend must be one of"),
    "direction": (dict(direction="adv"), ValueError, "direction must be one of"),
    "x_requires_grad": (dict(x=x0.clone().requires_grad_(True)), ValueError, "x.detach"),
    "triton_on_cpu_without_interpreter": (dict(backend="triton"), ValueError, "CUDA"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case, monkeypatch):
    kw, exc, match = BAD[case]
    if case.startswith("triton"):
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        pytest.importorskip("triton")
    args = dict(x=x0, labels=y0, weight=w0.clone().requires_grad_(True))
    args.update(kw)
    with pytest.raises(exc, match=match):
        sea_kernels.fused_sea(args.pop("x"), args.pop("labels"), args.pop("weight"), **args)


def test_mixed_devices():
    if not torch.cuda.is_available():
        meta = w0.to("meta")
        with pytest.raises(ValueError, match="one device"):
            sea_kernels.fused_sea(x0, y0, meta)
    else:
        with pytest.raises(ValueError, match="one device"):
            sea_kernels.fused_sea(x0, y0, w0.cuda())


def test_cpp_backend_on_wrong_device_or_missing():
    from sea_kernels.op import cpp_backend as _ext
    if _ext.CPP_AVAILABLE:
        with pytest.raises(ValueError, match="backend='cpp' runs on CPU"):
            sea_kernels.resolve_backend("cpp", torch.device("meta"))
    else:
        with pytest.raises(ValueError, match="backend='cpp' is not available"):
            sea_kernels.resolve_backend("cpp", torch.device("cpu"))


def test_sea_augment_bad_input():
    with pytest.raises(ValueError, match="direction"):
        sea_kernels.sea_augment(x0, y0, w0, direction="up")
    with pytest.raises(ValueError, match="labels"):
        sea_kernels.sea_augment(x0, y0 + 10, w0)
    with pytest.raises(ValueError, match="x contains NaN"):
        sea_kernels.sea_augment(x0 * float("nan"), y0, w0)


def test_float64_takes_what_float32_cannot():
    """The range checks follow the compute dtype: α = 1e-40 and η = 1e20 are fine in float64."""
    x, y, w = make_problem(8, 6, 4)
    for kw in (dict(alpha=1e-40), dict(eta=1e20), dict(lam=1e-39, weight=w * 1e-30)):
        w_kw = kw.pop("weight", w)
        assert torch.isfinite(sea_kernels.fused_sea(x, y, w_kw, backend="torch", **kw))
    with pytest.raises(ValueError, match="alpha = .* rounds to a subnormal number in float64"):
        sea_kernels.fused_sea(x, y, w, alpha=1e-320)
    with pytest.raises(ValueError, match="eta"):
        sea_kernels.sea_augment(x.float(), y, w.float(), eta=1e20)


def test_numpy_scalars_are_accepted():
    """numpy scalars are numbers.Real: fused_sea and sea_augment take them as their float value."""
    np = pytest.importorskip("numpy")
    hyper = dict(alpha=np.float32(0.01), eta=np.float64(0.8), lam=np.float32(0.1),
                 delta=np.int64(1))
    plain = {k: float(v) for k, v in hyper.items()}
    w = w0.clone().requires_grad_(True)
    loss = sea_kernels.fused_sea(x0, y0, w, backend="torch", **hyper)
    loss.backward()
    w2 = w0.clone().requires_grad_(True)
    want = sea_kernels.fused_sea(x0, y0, w2, backend="torch", **plain)
    want.backward()
    assert torch.equal(loss, want) and torch.equal(w.grad, w2.grad)
    assert torch.equal(sea_kernels.sea_augment(x0, y0, w0, **hyper),
                       sea_kernels.sea_augment(x0, y0, w0, **plain))
