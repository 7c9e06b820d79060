"""Zero rows of X (issue #8): masked out of every row's projection softmax like the diagonal.

Exact math: a zero row adds nothing to ĝ_i = Σ_j q_ij x_j and only Π(ĝ_i) is used, so leaving it
out only rescales ĝ_i. Kept in, its score 0 took all of q_i once every other score was below the
exp underflow (α = 1e-3: scores ≈ −750), ĝ_i became 0 and x̃_i = Π(x_i) instead of the moved row:
losses 50–70 % off in float32 (the fuzz case below, found by benches/fuzz.py --cases 2000).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fuzz_oracle as fo  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from backends import augment, backend_params, takes  # noqa: E402
from helpers import make_problem  # noqa: E402
from test_groups import truth  # noqa: E402

import sea_kernels  # noqa: E402
from sea_kernels import reference  # noqa: E402
from sea_kernels.op.batched import Hyper, batched_sea_grad  # noqa: E402

BACKENDS = backend_params()
#: The fuzz failure (cpp float32 loss 50–70 % off; the oracle itself underflowed e^-752).
CASE = fo.Case(b=3, d=6, c=4, alpha=0.001, eta=1.125, lam=0.08666, delta=1.444, kind="clustered",
               margin=1000, one_class=True, zero_rows=1, reduction="none", dtype="float32",
               seed=1041177725)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_case(backend, dtype):
    """The regression case through fused_sea (and sea_augment for torch) against the oracle."""
    if backend == "triton" and dtype == "float64":
        pytest.skip("triton computes in float32 only")
    fo.assert_close(fo.replace(CASE, dtype=dtype), backend, augment_too=backend == "torch")


def test_fuzz_case_through_the_reference():
    """The paper-literal reference, in float32 and float64, on the same case."""
    tr = fo.truths(CASE)
    ref32 = tr.lows[0]                      # reference.sea_loss / augment in float32
    for i, name in enumerate(("loss", "dW", "x_aug")):
        m = fo.metric(name, ref32[i], tr.truth[i], [tr.lows[1][i]], "float32", CASE.b)
        assert m.ok, str(m)
    inp = tr.inp
    x, w = torch.from_numpy(inp.x_r), torch.from_numpy(inp.w_r)
    y = torch.from_numpy(inp.y)
    got = reference.augment(x, y, w, alpha=CASE.alpha, eta=CASE.eta, lam=CASE.lam,
                            delta=CASE.delta)
    np.testing.assert_allclose(got.numpy(), tr.truth[2], rtol=0, atol=1e-12)


def test_zero_partner_does_not_take_the_weight():
    """α = 5e-4, row 0's other scores −0.707/α ≈ −1414 (below the exp underflow in float32 and
    float64): the zero row still gets q = 0 and ĝ_0 points at the non-zero partners (reference,
    torch backend, oracle); unmasked, x̃_0 would be Π(x_0)."""
    x = torch.tensor([[1.0, 0, 0], [0, 0, 0], [1.0, 1.0, 0], [1.0, 0, 1.0]], dtype=torch.float64)
    x = reference.unit(x)
    y = torch.tensor([0, 1, 1, 1])
    w = torch.tensor([[5.0, -5.0], [0, 0], [0, 0]], dtype=torch.float64)
    g = reference.gradient_direction(x, y, w, 0.1, 0.0)
    q = reference.projection_weights(x, g, alpha=5e-4)
    assert (q[:, 1] == 0).all() and (q.diagonal() == 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(4, dtype=torch.float64))
    q_oracle = fo.projection(x.numpy(), y.numpy(), w.numpy(), 5e-4, 0.1, 0.0)
    np.testing.assert_allclose(q.numpy(), q_oracle, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(q[0], torch.tensor([0, 0, 0.5, 0.5], dtype=torch.float64))
    kw = dict(alpha=5e-4, eta=0.8, lam=0.1, delta=0.0)
    want = reference.augment(x, y, w, **kw)
    assert (want[0] - x[0]).norm() > 0.2          # row 0 is moved towards rows 2, 3
    for dtype in (torch.float64, torch.float32):
        got = augment(x.to(dtype), y, w.to(dtype), **kw)
        torch.testing.assert_close(got.double(), want, rtol=0,
                                   atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_masking_is_exact():
    """At moderate scores (nothing underflows) the masked x̃ equals the unmasked formula
    (softmax over every j ≠ i, zero rows included), float64."""
    x, y, w = make_problem(7, 5, 3, seed=2)
    x[[1, 4]] = 0
    kw = dict(alpha=0.5, eta=0.8, lam=0.3, delta=0.2)
    g = reference.unit(reference.gradient_direction(x, y, w, kw["lam"], kw["delta"]))
    s = (g @ x.T / kw["alpha"]).fill_diagonal_(float("-inf"))
    unmasked = torch.softmax(s, dim=1)
    assert unmasked[[0, 2, 3, 5, 6]][:, [1, 4]].min() > 1e-3   # the zero rows carried weight
    want = reference.unit(x + kw["eta"] * reference.unit(unmasked @ x))
    torch.testing.assert_close(reference.augment(x, y, w, **kw), want, rtol=0, atol=1e-14)
    torch.testing.assert_close(augment(x, y, w, **kw), want, rtol=0,
                               atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_zero_partners(backend):
    """Groups of 3 where row 0's partners are both zero: q_0 = 0, x̃_0 = Π(x_0); the zero rows
    themselves move to Π(x_0) (their only non-zero partner); group 2 is ordinary."""
    if backend != "torch":
        if not takes(backend, "group_size"):
            pytest.skip(f"{backend} takes no group_size yet")
    x, y, w = make_problem(6, 4, 3, seed=3)
    x[1:3] = 0
    kw = dict(alpha=0.05, eta=0.8, lam=0.2, delta=0.0)
    x_aug = reference.augment(x, y, w, group_size=3, **kw)
    torch.testing.assert_close(x_aug[:3], reference.unit(x[:1]).expand(3, -1), rtol=0,
                               atol=1e-15)
    s = torch.full((6,), 1.0 / 6, dtype=torch.float64)
    want = truth(x, y, w, 3, s, **kw)
    torch.testing.assert_close(want[2], x_aug, rtol=0, atol=1e-14)
    dev = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    dtype = torch.float32 if backend == "triton" else torch.float64
    wg = w.to(dev, dtype).requires_grad_(True)
    loss = sea_kernels.fused_sea(x.to(dev, dtype), y.to(dev), wg, group_size=3, backend=backend,
                                 reduction="none", **kw)
    (dw,) = torch.autograd.grad(loss.sum() / 6, wg)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(loss.cpu().double(), want[0], rtol=tol, atol=tol)
    torch.testing.assert_close(dw.cpu().double(), want[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_engine(dtype):
    """The batched engine masks zero rows too (the underflowing α = 1e-3 and a moderate α)."""
    x, y, w0 = make_problem(6, 5, 3, seed=4)
    x[2] = 0
    x = x.to(dtype)
    cfg = dict(alpha=[1e-3, 0.05], eta=[1.0, 0.8], lam=[0.1, 0.2], delta=[0.0, 0.5])
    hyper = Hyper(*(torch.tensor(cfg[k], dtype=dtype) for k in ("alpha", "eta", "lam", "delta")))
    weights = [30 * w0, w0]
    grad_t, losses = batched_sea_grad(x, y, torch.cat([wk.T for wk in weights]).to(dtype)
                                      .contiguous(), hyper, 3)
    s = torch.full((6,), 1.0 / 6, dtype=torch.float64)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    for k, wk in enumerate(weights):
        want = truth(x, y, wk.to(dtype), None, s, **{n: cfg[n][k] for n in cfg})
        torch.testing.assert_close(losses[k].double(), want[0].mean(), rtol=tol, atol=0)
        torch.testing.assert_close(grad_t[3 * k:3 * k + 3].T.double(), want[1], rtol=tol,
                                   atol=tol * want[1].abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_row_is_not_a_zero_row(backend):
    """Only exactly zero rows are masked: x₂ = 1e-24·e₂ has ‖x₂‖² = 0 in float32 (K₂₂ underflows)
    but a direction; it scores ≈ 0 against x₁'s −300 (α = 1e-3), takes q₀, and x̃₀ moves along e₂
    — as in float64, where nothing underflows. The C++ kernel tested K_jj > 0 before."""
    x = torch.tensor([[1.0, 0.0], [0.91 ** 0.5, -0.3], [0.0, 1e-24]])
    y, w = torch.tensor([0, 1, 0]), torch.tensor([[0.0, 0.0], [0.0, 5.0]])
    kw = dict(alpha=0.001, eta=0.8, lam=0.1, delta=0.0, reduction="none")
    got = sea_kernels.fused_sea(x, y, w, backend=backend, **kw)
    want = reference.sea_loss(x.double(), y, w.double(), **kw)
    moved = reference.smoothed_hinge_loss(
        reference.unit(x[:1].double() + 0.8 * torch.tensor([[0.0, 1.0]], dtype=torch.float64))
        @ w.double(), y[:1], lam=0.1, reduction="none")
    assert torch.allclose(want[0], moved[0], rtol=1e-6)          # float64: x̃₀ = Π(e₁ + ηe₂)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-7)
