"""group_size (issue #9): rows [kG, min((k+1)G, b)) are projected only onto their own group.

The float64 truth projects each group alone with the independent NumPy oracle
(tests/fuzz_oracle.py, `fo.step` on the group's slice, the row weights kept global) and sums the
groups' dW. Every path is compared with it: the torch backend's stages, the reference, fused_sea
(every backend whose `sea_forward` takes group_size: the others are skipped until they do),
sea_augment and the batched sweep engine, at odd sizes (b not a multiple of G, G = 1, G ≥ b,
G = b − 1, a one-row last group), in float64 and float32.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fuzz_oracle as fo  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from backends import augment, backend_params, forward  # noqa: E402
from helpers import make_problem, rel_err  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op import torch_backend, triton_backend  # noqa: E402
from sea_kernels.op.batched import Hyper, batched_sea_grad  # noqa: E402
from sea_kernels.op.groups import BlockDiag, group_blocks, group_ranges  # noqa: E402
from sea_kernels.params import ParameterError  # noqa: E402

HYPER = dict(alpha=0.05, eta=0.8, lam=0.2, delta=0.5)
#: (b, G): b a multiple of G, not a multiple, G = 1, G = b, G > b, G = b − 1, one-row last groups.
SIZES = [(8, 4), (7, 3), (6, 1), (5, 5), (5, 9), (6, 5), (7, 2), (10, 3)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = triton_backend.Config(row_m=16, row_c=16, block_m=16, block_n=16, block_c=16, block_v=16,
                              block_d=16)


@pytest.fixture
def device_for(monkeypatch):
    """(backend) → the device its inputs go on; small Triton blocks so tiny shapes span tiles."""
    def pick(backend):
        if backend == "triton":
            monkeypatch.setattr(triton_backend, "CONFIG", SMALL)
            return DEVICE
        return "cpu"
    return pick


def truth(x, labels, weight, group_size, row_weights, dtype=np.float64, direction="sea",
          **hyper):
    """(per-row losses, dW = Σ_i s_i ∂ℓ_i/∂W, X̃) with each group projected alone by the NumPy
    oracle, in `dtype` arithmetic."""
    x, w = x.double().numpy(), weight.double().numpy()
    y, s = labels.numpy(), row_weights.double().numpy()
    h = {**HYPER, **hyper}
    rows, x_aug, dw = [], [], np.zeros(w.shape)
    for lo, hi in group_ranges(x.shape[0], group_size):
        out = fo.step(x[lo:hi], y[lo:hi], w, h["alpha"], h["eta"], h["lam"], h["delta"],
                      direction, "none", s[lo:hi], dtype)
        rows.append(out["rows"])
        x_aug.append(out["x_aug"])
        dw += out["dw"].astype(np.float64)
    return (torch.from_numpy(np.concatenate(rows).astype(np.float64)), torch.from_numpy(dw),
            torch.from_numpy(np.concatenate(x_aug).astype(np.float64)))


def assert_close(got, want, own, dtype, name):
    """float64: relative 1e-12; float32: ≤ 2 × the oracle's own float32 error + 2e-5."""
    got = got.detach().cpu().double()
    assert torch.isfinite(got).all(), f"{name} is not finite"
    err = rel_err(got, want)
    bound = 1e-12 if dtype == torch.float64 else 2 * rel_err(own, want) + 2e-5
    assert err <= bound, f"{name}: rel err {err:.3g} > {bound:.3g}"


def problem(b, dtype, seed=0, d=6, c=4):
    x, y, w = make_problem(b, d, c, seed=seed + 10 * b)
    return x.to(dtype), y, w.to(dtype)


def expected(x, y, w, g, s, dtype, direction="sea", **hyper):
    want = truth(x, y, w, g, s, direction=direction, **hyper)
    own = want if dtype == torch.float64 else truth(x, y, w, g, s, np.float32, direction,
                                                    **hyper)
    return want, own


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("b,g", SIZES + [(4, None)])
def test_group_layout(b, g):
    """Consecutive groups of g rows covering 0..b−1 once, the last one shorter; one group when
    g is None or ≥ b. BlockDiag products equal the dense block-diagonal matrix's."""
    ranges = group_ranges(b, g)
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(b))
    size = b if not g or g >= b else g
    assert all(hi - lo == size for lo, hi in ranges[:-1]) and 0 < ranges[-1][1] - ranges[-1][0]
    assert len(ranges) == -(-b // size)
    blocks = group_blocks(b, g)
    parts = [torch.randn(n, m, m, dtype=torch.float64) for _, n, m in blocks]
    q = BlockDiag(parts, blocks, b)
    dense = torch.zeros(b, b, dtype=torch.float64)
    for (lo, n, m), p in zip(blocks, parts):
        for k in range(n):
            dense[lo + k * m:lo + (k + 1) * m, lo + k * m:lo + (k + 1) * m] = p[k]
    v = torch.randn(b, 3, dtype=torch.float64)
    assert torch.equal(q.dense(), dense)
    torch.testing.assert_close(q.matmul(v), dense @ v)
    torch.testing.assert_close(q.t_matmul(v), dense.T @ v)
    rows = torch.tensor([b - 1, 0])
    assert torch.equal(q.dense_rows(rows), dense[rows])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("direction", ["sea", "sea_neg"])
@pytest.mark.parametrize("b,g", SIZES)
def test_torch_backend(b, g, direction, dtype):
    x, y, w = problem(b, dtype)
    s = torch.rand(b, dtype=torch.float64) + 0.1
    want, own = expected(x, y, w, g, s, dtype, direction)
    losses, dw = forward(torch_backend.sea_forward, x, y, w, s.to(dtype),
                         negative_only=direction == "sea_neg", group_size=g, **HYPER)
    assert losses.dtype == dw.dtype == dtype
    assert_close(losses, want[0], own[0], dtype, "loss")
    assert_close(dw, want[1], own[1], dtype, "dW")
    x_aug = augment(x, y, w, negative_only=direction == "sea_neg", group_size=g, **HYPER)
    assert_close(x_aug, want[2], own[2], dtype, "x̃")


@pytest.mark.parametrize("b,g", SIZES)
def test_reference(b, g):
    """reference.sea_loss / augment with group_size, float64, against the oracle per group."""
    x, y, w = problem(b, torch.float64, seed=1)
    want = truth(x, y, w, g, torch.ones(b))
    wg = w.clone().requires_grad_(True)
    rows = reference.sea_loss(x, y, wg, reduction="none", group_size=g, **HYPER)
    (dw,) = torch.autograd.grad(rows.sum(), wg)
    assert_close(rows, want[0], None, torch.float64, "loss")
    assert_close(dw, want[1], None, torch.float64, "dW")
    assert_close(reference.augment(x, y, w, group_size=g, **HYPER), want[2], None, torch.float64,
                 "x̃")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("b,g", [(7, 3), (6, 1), (6, 5), (7, 2)])
@pytest.mark.parametrize("backend", backend_params("group_size"))
def test_fused_sea(backend, b, g, reduction, device_for):
    dtypes = [torch.float32] + ([] if backend == "triton" else [torch.float64])
    dev = device_for(backend)
    for dtype in dtypes:
        x, y, w = problem(b, dtype, seed=2)
        up = torch.rand(b, dtype=torch.float64) + 0.1
        s = up if reduction == "none" else torch.full((b,), 1.0 / b if reduction == "mean"
                                                      else 1.0, dtype=torch.float64)
        want, own = expected(x, y, w, g, s, dtype)
        wg = w.to(dev).requires_grad_(True)
        loss = sea_kernels.fused_sea(x.to(dev), y.to(dev), wg, reduction=reduction,
                                     group_size=g, backend=backend, **HYPER)
        if reduction == "none":
            (dw,) = torch.autograd.grad(loss @ up.to(dev, loss.dtype), wg)
            assert_close(loss, want[0], own[0], dtype, "loss")
        else:
            (dw,) = torch.autograd.grad(loss, wg)
            scale = 1.0 / b if reduction == "mean" else 1.0
            assert_close(loss.reshape(1), want[0].sum().reshape(1) * scale,
                         own[0].sum().reshape(1) * scale, dtype, "loss")
        assert_close(dw, want[1], own[1], dtype, "dW")


@pytest.mark.parametrize("backend", backend_params())
def test_group_of_whole_batch_is_the_default(backend, device_for):
    """G ≥ b is the whole batch: the same numbers as group_size=None, bit for bit."""
    dev = device_for(backend)
    x, y, w = (t.to(dev) for t in problem(5, torch.float32, seed=3))
    base = sea_kernels.fused_sea(x, y, w, reduction="none", backend=backend, **HYPER)
    for g in (5, 6, 100):
        got = sea_kernels.fused_sea(x, y, w, reduction="none", group_size=g, backend=backend,
                                    **HYPER)
        assert torch.equal(got, base)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,g", [(7, 3), (6, 1), (7, 2)])
def test_sea_augment(b, g, dtype):
    x, y, w = problem(b, dtype, seed=4)
    want, own = expected(x, y, w, g, torch.ones(b), dtype, "sea_neg")
    got = sea_kernels.sea_augment(x, y, w, direction="sea_neg", group_size=g, **HYPER)
    assert got.dtype == dtype
    assert_close(got, want[2], own[2], dtype, "x̃")


@pytest.mark.parametrize("direction", ["rand", "mixup"])
def test_random_directions_stay_in_their_group(direction):
    """rand/mixup with groups: a group's x̃ depends on its own rows only (the draws are per
    group), and a one-row group is not moved."""
    x, y, w = problem(7, torch.float64, seed=5)
    other = x.clone()
    other[3:6] = torch.nn.functional.normalize(torch.randn(3, 6, dtype=torch.float64), dim=1)
    kw = dict(direction=direction, group_size=3, **HYPER)
    a = sea_kernels.sea_augment(x, y, w, generator=torch.Generator().manual_seed(0), **kw)
    c = sea_kernels.sea_augment(other, y, w, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(a[:3], c[:3], rtol=0, atol=0)
    torch.testing.assert_close(a[6], reference.unit(x[6:]).squeeze(0), rtol=1e-15, atol=1e-15)
    assert (a[:3] - c[:3]).abs().max() == 0 and (a[3:6] - c[3:6]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b,g,d", [(7, 3, 6), (6, 1, 6), (7, 2, 2), (9, 4, 3), (6, 5, 8)])
def test_batched_engine(b, g, d, dtype):
    """batched_sea_grad with group_size: every configuration (η = 0 first, chunks of 2) against
    the per-group oracle; d < G takes the ĝ = QX path inside a group."""
    x, y, w0 = make_problem(b, d, 4, seed=b + g)
    x = x.to(dtype)
    weights = [w0 * f for f in (1.0, 0.5, 2.0, 0.0)]
    cfg = dict(alpha=[0.05, 0.02, 0.1, 0.05], eta=[0.0, 0.8, 0.4, 1.0], lam=[0.2, 0.1, 1.0, 0.5],
               delta=[0.5, 0.0, 1.0, 0.0])
    hyper = Hyper(*(torch.tensor(cfg[k], dtype=dtype) for k in ("alpha", "eta", "lam", "delta")))
    w_t = torch.cat([wk.T for wk in weights]).to(dtype).contiguous()
    grad_t, losses = batched_sea_grad(x, y, w_t, hyper, 4, n_baseline=1, chunk_size=2,
                                      group_size=g)
    s = torch.full((b,), 1.0 / b, dtype=torch.float64)
    for k, wk in enumerate(weights):
        hk = {name: cfg[name][k] for name in cfg}
        want, own = expected(x, y, wk.to(dtype), g, s, dtype, **hk)
        assert_close(losses[k].reshape(1), want[0].mean().reshape(1), own[0].mean().reshape(1),
                     dtype, f"loss {k}")
        assert_close(grad_t[4 * k:4 * k + 4].T, want[1], own[1], dtype, f"dW {k}")


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3", [2]])
def test_bad_group_size_refused(bad):
    x, y, w = problem(5, torch.float32)
    for fn in (sea_kernels.fused_sea, sea_kernels.sea_augment):
        with pytest.raises((ValueError, TypeError), match="group_size") as info:
            fn(x, y, w, group_size=bad)
        if isinstance(bad, bool) or not isinstance(bad, int):
            assert isinstance(info.value, ParameterError)


def test_numpy_integer_group_size():
    x, y, w = problem(7, torch.float64)
    a = sea_kernels.fused_sea(x, y, w, group_size=np.int64(3), backend="torch")
    b = sea_kernels.fused_sea(x, y, w, group_size=3, backend="torch")
    assert torch.equal(a, b)
