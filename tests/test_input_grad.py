"""The backend contract's input_grad=True (op/dispatch.py, op/input_grad.py, docs/design.md §8):
every backend declaring "input_grad" returns dX = ∂(Σ_i s_i ℓ(x̃_i))/∂X with the direction held
fixed, against a float64 autograd implementation written without Gram space: u = Π(Q X) from
the paper-literal reference (detached), x̃ = Π(x + ηu), logits X̃W + 1bᵀ, Eq. 15 — groups, bias,
zero rows, extreme margins, row scales of every reduction, float32 and float64; and η = 0
(`unmoved_forward`, x̃ = Π(x)). A backend that does not declare it is skipped, with the reason.
"""
from __future__ import annotations

import pytest
import torch
from backends import NAMES, declares, device, one_thread, param  # noqa: F401
from helpers import make_problem, margin_problem, rel_err

from sea_kernels.op import reference, torch_backend
from sea_kernels.op.call import Hyper
from sea_kernels.op.dispatch import BACKENDS_BY_NAME
from sea_kernels.op.groups import group_ranges

TOL = {torch.float32: 2e-4, torch.float64: 1e-10}


def _params():
    out = []
    for name in NAMES:
        marks = () if declares(name, ("input_grad",)) else (pytest.mark.skip(
            reason=f"backend {name!r} does not declare input_grad (op/dispatch.py)"),)
        out.append(param(name, marks=marks))
    return out


def literal(x, labels, w, scale, hyper: Hyper, bias=None):
    """(losses, dW, db or None, dX) in float64 by autograd, the direction detached, no Gram
    space: u_i = Π(Σ_j q_ij x_j) per group with q of Eq. 10 (reference.projection_weights)."""
    x, w = x.double(), w.double()
    bias = None if bias is None else bias.double()
    with torch.no_grad():
        parts = []
        for lo, hi in group_ranges(x.shape[0], hyper.group_size):
            xg = x[lo:hi]
            g = reference.gradient_direction(xg, labels[lo:hi], w, hyper.lam, hyper.delta,
                                             hyper.negative_only, bias)
            parts.append(reference.unit(reference.projection_weights(xg, g, hyper.alpha) @ xg))
        u = torch.cat(parts)
    xv = x.clone().requires_grad_(True)
    wv = w.clone().requires_grad_(True)
    bv = None if bias is None else bias.clone().requires_grad_(True)
    x_aug = reference.unit(xv + hyper.eta * u)
    losses = reference.smoothed_hinge_loss(reference.logits_of(x_aug, wv, bv), labels,
                                           hyper.lam, hyper.delta, "none")
    wrt = (xv, wv) + (() if bv is None else (bv,))
    grads = torch.autograd.grad((losses * scale.double()).sum(), wrt)
    return losses.detach(), grads[1], (grads[2] if bv is not None else None), grads[0]


def _scale(kind, b, dtype, seed=0):
    if kind == "mean":
        return torch.full((b,), 1.0 / b, dtype=dtype)
    if kind == "sum":
        return torch.ones(b, dtype=dtype)
    return torch.rand(b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
                      ).to(dtype)


def _check(name, x, labels, w, scale, hyper, bias, dtype, tol=None):
    dev = device(name)
    args = [t.to(dev) for t in (x.to(dtype), labels, w.to(dtype), scale.to(dtype))]
    b = None if bias is None else bias.to(dtype).to(dev)
    forward = (torch_backend.unmoved_forward if hyper.eta == 0 and name == "torch" else
               BACKENDS_BY_NAME[name].forward)
    out = forward(*args, hyper, True, b, input_grad=True)
    assert len(out) == 4
    losses, dw, db, dx = (t.cpu() for t in out)
    ref_l, ref_w, ref_b, ref_x = literal(x, labels, w, scale, hyper, bias)
    tol = tol or TOL[dtype]
    assert dx.shape == x.shape and dx.dtype == dtype
    errs = {"loss": rel_err(losses, ref_l), "dW": rel_err(dw, ref_w), "dX": rel_err(dx, ref_x)}
    if bias is not None:
        errs["db"] = rel_err(db, ref_b)
    assert all(e < tol for e in errs.values()), errs
    # input_grad=False: the three outputs of before, the same numbers
    plain = forward(*args, hyper, True, b)
    assert len(plain) == 3
    for got, want in zip(plain, out[:3]):
        torch.testing.assert_close(got, want, rtol=tol, atol=0)


CASES = {                       # b, d, C, group_size, bias, zero rows
    "plain": (17, 12, 5, None, False, ()),
    "groups": (19, 10, 4, 6, False, ()),
    "bias": (16, 9, 6, None, True, ()),
    "groups+bias+zero": (21, 11, 5, 7, True, (3, 10)),
    "odd": (5, 33, 3, None, False, (0,)),
    "one-row groups": (6, 8, 3, 1, True, ()),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", _params())
def test_input_grad_matches_float64_autograd(name, case, reduction, dtype):
    if not declares(name, dtype=dtype):
        pytest.skip(f"{name} does not compute in {dtype}")
    b, d, c, group, with_bias, zero = CASES[case]
    x, labels, w = make_problem(b, d, c, seed=len(case) + b)
    x[list(zero)] = 0
    bias = 0.5 * torch.randn(c, generator=torch.Generator().manual_seed(b),
                             dtype=torch.float64) if with_bias else None
    hyper = Hyper(0.05, 0.8, 0.5, 0.1, False, group)
    _check(name, x, labels, w, _scale(reduction, b, torch.float64, b), hyper, bias, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("margin", [1.0, 60.0, 400.0])
@pytest.mark.parametrize("name", _params())
def test_input_grad_extreme_margins(name, margin, dtype):
    """Confident rows (docs/design.md §3): D_i = s_i σ(t_i)(U − Y) tiny but exact."""
    if not declares(name, dtype=dtype):
        pytest.skip(f"{name} does not compute in {dtype}")
    x, labels, w = margin_problem(24, 12, 5, margin, lam=0.1)
    hyper = Hyper(0.01, 0.8, 0.1, 0.0, False, None)
    _check(name, x, labels, w, _scale("none", 24, torch.float64), hyper, None, dtype,
           tol=1e-3 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("name", _params())
def test_input_grad_negative_only_and_unnormalised_rows(name):
    """sea_neg, and rows not of unit length (n_i = ‖x_i + ηu_i‖ ≠ 1 + …)."""
    x, labels, w = make_problem(14, 9, 4, seed=3, normalise=False)
    x = x * torch.linspace(0.2, 3.0, 14, dtype=torch.float64)[:, None]
    hyper = Hyper(0.05, 1.3, 0.2, 0.0, True, None)
    dtype = torch.float64 if declares(name, dtype=torch.float64) else torch.float32
    _check(name, x, labels, w, _scale("none", 14, torch.float64), hyper, None, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_unmoved_input_grad(with_bias, dtype):
    """η = 0 (`unmoved_forward`): x̃ = Π(x), dX = (γ − βx̃)/‖x‖; a zero row gets 0."""
    x, labels, w = make_problem(13, 7, 4, seed=5, normalise=False)
    x[4] = 0
    bias = torch.randn(4, dtype=torch.float64) if with_bias else None
    _check("torch", x, labels, w, _scale("none", 13, torch.float64), Hyper(0.01, 0.0, 0.3, 0.2),
           bias, dtype)


@pytest.mark.parametrize("name", _params())
def test_input_grad_without_weight_grad(name):
    """input_grad with compute_grad=False: dX alone, dW and db empty."""
    dtype = torch.float64 if declares(name, dtype=torch.float64) else torch.float32
    x, labels, w = (t.to(dtype) if t.is_floating_point() else t
                    for t in make_problem(9, 6, 3, seed=1))
    s = torch.full((9,), 1 / 9, dtype=dtype)
    forward = BACKENDS_BY_NAME[name].forward
    hyper = Hyper(0.05, 0.8, 0.5, 0.0, False, None)
    losses, dw, db, dx = forward(x, labels, w, s, hyper, False, None, input_grad=True)
    assert dw.numel() == 0 and db.numel() == 0
    full = forward(x, labels, w, s, hyper, True, None, input_grad=True)
    torch.testing.assert_close(dx, full[3], rtol=1e-12, atol=0)
    torch.testing.assert_close(losses, full[0], rtol=1e-12, atol=0)
