"""The public ops' contract beyond a comparison with the truth (which tests/test_backends_agree.py
makes on every backend): the group layout, random directions within groups, sea_augment's
ablation directions and bias, an nn.Linear head trained with its bias, a trainable bias with a
frozen weight, sea vs sea_neg at a large margin, and the refusal of bad group sizes and biases.
"""
import numpy as np
import pytest
import torch
from backends import backend_params
from cases import margin_arrays
from helpers import make_problem, rel_err

import sea_kernels
from sea_kernels import reference
from sea_kernels.op.groups import BlockDiag, group_blocks, group_ranges
from sea_kernels.params import ParameterError

HYPER = dict(alpha=0.05, eta=0.8, lam=0.2, delta=0.5)
SIZES = [(8, 4), (7, 3), (6, 1), (5, 5), (5, 9), (6, 5), (7, 2), (10, 3)]


def problem(b, dtype, seed=0, d=6, c=4):
    x, y, w = make_problem(b, d, c, seed=seed + 10 * b)
    return x.to(dtype), y, w.to(dtype)


def bias_problem(b, d, c, dtype, seed=0):
    x, y, w = make_problem(b, d, c, seed=seed)
    bias = torch.randn(c, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return x.to(dtype), y, w.to(dtype), bias.to(dtype)



@pytest.mark.parametrize("b,g", SIZES + [(4, None)])
def test_group_layout(b, g):
    """Consecutive groups of g rows covering 0..b−1 once, the last one shorter; one group when
    g is None or ≥ b. BlockDiag products equal the dense block-diagonal matrix's."""
    ranges = group_ranges(b, g)
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(b))
    size = b if g is None or g >= b else g
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


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_linear_head_trained_with_bias(dtype, tol):
    """An nn.Linear(d, C) head, 5 SGD steps (momentum 0.9) with fused_sea(x, y, lin.weight.T,
    bias=lin.bias), equals the same head trained with the float64 reference loss."""
    torch.manual_seed(0)
    b, d, c = 12, 8, 4
    x, y, _ = make_problem(b, d, c, seed=6)
    torch.manual_seed(1)
    init = torch.nn.Linear(d, c, dtype=torch.float64)
    heads = []
    for kind in ("fused", "reference"):
        lin = torch.nn.Linear(d, c, dtype=dtype if kind == "fused" else torch.float64)
        with torch.no_grad():
            lin.weight.copy_(init.weight)
            lin.bias.copy_(init.bias)
        opt = torch.optim.SGD(lin.parameters(), lr=0.5, momentum=0.9)
        for step in range(5):
            rows = slice(0, 8) if step % 2 == 0 else slice(4, 12)
            opt.zero_grad()
            if kind == "fused":
                loss = sea_kernels.fused_sea(x[rows].to(dtype), y[rows], lin.weight.T,
                                             bias=lin.bias, backend="auto", **HYPER)
            else:
                loss = reference.sea_loss(x[rows], y[rows], lin.weight.T, bias=lin.bias,
                                          **HYPER)
            loss.backward()
            opt.step()
        heads.append(lin)
    got, want = heads
    assert rel_err(got.weight.detach(), want.weight.detach()) <= tol
    assert rel_err(got.bias.detach(), want.bias.detach()) <= tol
    assert (want.bias.detach() - init.bias.detach()).abs().max() > 1e-3   # the bias did train


def test_bias_only_requires_grad():
    """A frozen weight with a trainable bias: db only (weight.grad stays None)."""
    x, y, w, bias = bias_problem(5, 4, 3, torch.float64, seed=9)
    bg = bias.clone().requires_grad_(True)
    sea_kernels.fused_sea(x, y, w, bias=bg, backend="torch", **HYPER).backward()
    want = reference.sea_loss_and_grad(x, y, w, bias=bias, **HYPER)[2]
    torch.testing.assert_close(bg.grad, want, rtol=1e-12, atol=1e-15)
    assert w.grad is None


def test_sea_augment_with_bias():
    x, y, w, bias = bias_problem(7, 5, 4, torch.float64, seed=10)
    for direction in ("sea", "sea_neg", "adv"):
        got = sea_kernels.sea_augment(x, y, w, bias=bias, direction=direction, group_size=3,
                                      **HYPER)
        want = reference.augment(x, y, w, bias=bias, direction=direction, group_size=3, **HYPER)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
        plain = sea_kernels.sea_augment(x, y, w, direction=direction, group_size=3, **HYPER)
        assert (plain - got).abs().max() > 1e-4


@pytest.mark.parametrize("bad,exc,match", [
    (torch.zeros(4), ValueError, r"shape \(classes=3,\)"),
    (torch.zeros(1, 3), ValueError, r"shape \(classes=3,\)"),
    (torch.zeros(3, dtype=torch.int64), TypeError, "bias must be float"),
    ([0.0, 0.0, 0.0], TypeError, "bias must be a torch.Tensor"),
    (torch.tensor([0.0, float("nan"), 0.0]), ValueError, "bias contains NaN"),
    (torch.zeros(3, device="meta"), ValueError, "device"),
])
def test_bad_bias_refused(bad, exc, match):
    x, y, w, _ = bias_problem(5, 4, 3, torch.float32)
    for fn in (sea_kernels.fused_sea, sea_kernels.sea_augment):
        with pytest.raises(exc, match=match):
            fn(x, y, w, bias=bad)


@pytest.mark.parametrize("direction", reference.DIRECTIONS)
def test_sea_augment_directions(direction):
    x, y, w = make_problem(20, 30, 6, seed=9)
    got = sea_kernels.sea_augment(x, y, w, eta=0.4, direction=direction,
                                  generator=torch.Generator().manual_seed(1))
    want = reference.augment(x, y, w, eta=0.4, direction=direction,
                             generator=torch.Generator().manual_seed(1))
    assert rel_err(got, want) < 1e-12
    got32 = sea_kernels.sea_augment(x.float(), y, w.float(), direction=direction)
    assert got32.dtype == torch.float32 and torch.isfinite(got32).all()


@pytest.mark.parametrize("backend", backend_params(dtype=torch.float64))
def test_direction_keeps_w_y_beyond_the_rounding_of_p_y(backend):
    """At 50λ (beyond 36.7λ, where p_y − 1 rounds to 0 even in float64) the target-class term of
    the direction still counts: sea's dW differs from sea_neg's (the direction without −w_y)."""
    x, y, w, _ = (torch.from_numpy(a) for a in margin_arrays(50))
    grads = []
    for direction in ("sea", "sea_neg"):
        wg = w.clone().requires_grad_(True)
        sea_kernels.fused_sea(x, y, wg, direction=direction, backend=backend, alpha=0.01,
                              eta=0.8, lam=0.1, delta=0.0).backward()
        grads.append(wg.grad)
    assert rel_err(grads[1], grads[0]) > 1e-3
