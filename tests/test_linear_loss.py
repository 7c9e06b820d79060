"""`sea_linear_cross_entropy` and `SeALinear` (docs/design.md §8) against a float64 autograd
implementation written without Gram space: x = F.normalize(h), ĝ = Q X with q from x_jᵀg_i/α
(`reference.gradient_direction` / `projection_weights` on the detached x and W = Vᵀ), u = Π(ĝ)
detached, x̃ = Π(x + ηu), logits X̃Vᵀ + b, Eq. 15 as −λ log softmax. Value and gradients to the
input, weight and bias; groups; reductions; ignore_index; zero rows; float32; the η = 0 equality
with F.linear_cross_entropy; gradcheck; bad arguments; torch.compile with a tensor η."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sea_kernels
from sea_kernels.op import reference
from sea_kernels.op.groups import group_ranges
from sea_kernels.op.linear import SeALinear, sea_linear_cross_entropy

D64 = torch.float64
HYPER = dict(alpha=0.05, eta=0.5, lam=0.3, delta=0.2)


def ref_loss(h, v, y, bias=None, *, alpha=0.05, eta=0.5, lam=0.3, delta=0.2, group_size=None,
             reduction="mean", ignore_index=-100):
    """Paper-literal, b×d throughout, autograd through x̃ with the direction detached."""
    x = F.normalize(h, dim=1)
    valid = y != ignore_index
    lab = y.masked_fill(~valid, 0)
    if eta != 0:
        with torch.no_grad():
            xd = x.detach() * valid[:, None]
            w = v.detach().T
            bd = None if bias is None else bias.detach()
            us = []
            for lo, hi in group_ranges(x.shape[0], group_size):
                g = reference.gradient_direction(xd[lo:hi], lab[lo:hi], w, lam, delta, bias=bd)
                q = reference.projection_weights(xd[lo:hi], g, alpha)
                us.append(reference.unit(q @ xd[lo:hi]))
            u = torch.cat(us)
        m = x + eta * u
        x = m / m.norm(dim=1, keepdim=True)
    logits = x @ v.T + (0 if bias is None else bias)
    one = F.one_hot(lab, v.shape[0]).to(logits.dtype)
    z = (logits + delta * (1 - one)) / lam
    rows = -lam * torch.log_softmax(z, dim=1).gather(1, lab[:, None])[:, 0]
    rows = torch.where(valid, rows, 0)
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / valid.sum()


def problem(b=10, d=6, c=4, dtype=D64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=g, dtype=dtype) * 3
    v = torch.randn(c, d, generator=g, dtype=dtype)
    bb = torch.randn(c, generator=g, dtype=dtype) if bias else None
    y = torch.randint(0, c, (b,), generator=g)
    return h, v, y, bb


def grads(fn, h, v, y, bias, **kw):
    """(loss, ∂/∂h, ∂/∂V, ∂/∂b or None) of fn (summing a "none" loss with fixed weights)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (h, v)]
    if bias is not None:
        leaves.append(bias.detach().clone().requires_grad_(True))
    out = fn(leaves[0], leaves[1], y, leaves[2] if bias is not None else None, **kw)
    scalar = out if out.dim() == 0 else (out * torch.linspace(0.5, 1.5, out.numel(),
                                                              dtype=out.dtype)).sum()
    gs = torch.autograd.grad(scalar, leaves)
    return (out.detach(), *gs, *([None] if bias is None else []))


def ours(h, v, y, bias, **kw):
    return sea_linear_cross_entropy(h, v, y, linear_bias=bias, **kw)


def close(a, b, rtol=1e-10, atol=1e-12):
    if a is None or b is None:
        assert a is None and b is None
        return
    torch.testing.assert_close(a.to(D64), b.to(D64), rtol=rtol, atol=atol)


def check_all(h, v, y, bias, rtol=1e-10, atol=1e-12, **kw):
    kw = {**HYPER, **kw}
    for a, b in zip(grads(ours, h, v, y, bias, **kw), grads(ref_loss, h, v, y, bias, **kw)):
        close(a, b, rtol, atol)


# ------------------------------------------------------------------------------ against the spec
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradients_match_the_paper_literal_spec(with_bias, reduction):
    h, v, y, b = problem(bias=with_bias)
    check_all(h, v, y, b, reduction=reduction)


@pytest.mark.parametrize("group_size", [1, 3, 4, 9, 50])
def test_groups(group_size):
    h, v, y, b = problem(b=11)
    check_all(h, v, y, b, group_size=group_size)


def test_other_hyperparameters_and_cross_entropy_setting():
    h, v, y, b = problem(b=9, c=5, seed=3)
    check_all(h, v, y, b, alpha=0.01, eta=0.8, lam=0.1, delta=0.0)
    check_all(h, v, y, b, alpha=0.5, eta=0.2, lam=1.0, delta=0.0)
    check_all(h, v, y, b, alpha=0.02, eta=1.5, lam=2.0, delta=-0.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignore_index_rows_have_no_loss_no_gradient_and_no_span(reduction):
    h, v, y, b = problem(b=10)
    y = y.clone()
    y[[1, 4, 7]] = -100
    check_all(h, v, y, b, reduction=reduction)
    _, gh, _, _ = grads(ours, h, v, y, b, reduction=reduction)
    assert gh[[1, 4, 7]].abs().max() == 0
    # an ignored row is not in any span: changing it changes nothing else
    h2 = h.clone()
    h2[4] = torch.randn(6, dtype=D64) * 5
    out1 = ours(h, v, y, b, reduction="none")
    out2 = ours(h2, v, y, b, reduction="none")
    close(out1, out2)
    y2 = problem(b=10)[2].clone()
    y2[[0, 2]] = 7
    check_all(h, v, y2, b, ignore_index=7)


def test_all_rows_ignored_and_empty_batch_behave_as_torch():
    h, v, y, b = problem(b=4)
    y = torch.full_like(y, -100)
    for red in ("mean", "sum", "none"):
        want = F.linear_cross_entropy(F.normalize(h, dim=1), v, y, linear_bias=b, reduction=red,
                                      ignore_index=-100)
        torch.testing.assert_close(ours(h, v, y, b, reduction=red), want, equal_nan=True)
    e = h[:0].clone().requires_grad_(True)
    for red in ("mean", "sum", "none"):
        want = F.linear_cross_entropy(e, v, y[:0], linear_bias=b, reduction=red,
                                      ignore_index=-100)
        got = ours(e, v, y[:0], b, reduction=red)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, equal_nan=True)


def test_zero_rows_stay_zero_and_are_in_no_span():
    h, v, y, b = problem(b=8)
    h = h.clone()
    h[[2, 5]] = 0
    out, gh, gv, gb = grads(ours, h, v, y, b, reduction="none", **HYPER)
    ro, rh, rv, rb = grads(ref_loss, h, v, y, b, reduction="none", **HYPER)
    close(out, ro)
    close(gv, rv)
    close(gb, rb)
    keep = [i for i in range(8) if i not in (2, 5)]
    close(gh[keep], rh[keep])
    # a zero row is in no span: the other rows' losses do not see it
    only = ours(h[keep], v, y[keep], b, reduction="none", **HYPER)
    close(out[keep], only)


def test_float32_is_close_to_float64():
    h, v, y, b = problem(b=16, d=12, c=5, seed=2)
    got = grads(ours, h.float(), v.float(), y, b.float(), **HYPER)
    want = grads(ref_loss, h, v, y, b, **HYPER)
    for a, w in zip(got, want):
        assert a.dtype == torch.float32
        close(a, w, rtol=2e-4, atol=2e-5)


# ------------------------------------------------------------------------------ η = 0
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_eta_zero_is_linear_cross_entropy_of_the_normalised_input(reduction, with_bias,
                                                                  monkeypatch):
    from sea_kernels.op import linear

    def no_direction(*a, **k):
        raise AssertionError("a direction was computed at eta = 0")

    monkeypatch.setattr(linear, "_direction", no_direction)
    h, v, y, b = problem(b=12, bias=with_bias)
    y = y.clone()
    y[3] = -100

    def torch_ce(h, v, y, bias, **kw):
        return F.linear_cross_entropy(F.normalize(h, dim=1), v, y, linear_bias=bias,
                                      reduction=reduction, ignore_index=-100)

    got = grads(ours, h, v, y, b, eta=0, lam=1.0, delta=0.0, reduction=reduction)
    want = grads(torch_ce, h, v, y, b)
    for a, w in zip(got, want):
        close(a, w, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------ gradcheck
def test_gradcheck_on_the_input_with_the_direction_fixed():
    h, v, y, b = problem(b=6, d=4, c=3)
    with torch.no_grad():   # the direction of this h: a constant, as in the loss
        from sea_kernels.op.linear import _direction
        x = F.normalize(h, dim=1)
        u = _direction(x, y, v.T, b, 0.05, 0.3, 0.2, None, None)

    from sea_kernels.op import linear

    def fixed(*a, **k):
        return u

    def f(hh, vv, bb):     # the autograd path with u fixed (the fused path equals it: below)
        old, old_fused = linear._direction, linear._use_fused
        linear._direction, linear._use_fused = fixed, lambda *a: False
        try:
            return sea_linear_cross_entropy(hh, vv, y, linear_bias=bb, alpha=0.05, eta=0.5,
                                            lam=0.3, delta=0.2)
        finally:
            linear._direction, linear._use_fused = old, old_fused

    args = (h.clone().requires_grad_(True), v.clone().requires_grad_(True),
            b.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(f, args)
    # and that fixed direction is the one the loss computes
    close(f(*args), sea_linear_cross_entropy(h, v, y, linear_bias=b, alpha=0.05, eta=0.5,
                                             lam=0.3, delta=0.2))


# ------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(h=torch.randn(4)), ValueError, "input"),
    (dict(h=torch.randn(4, 6, dtype=torch.float64).long()), TypeError, "input"),
    (dict(v=torch.randn(6, 3, dtype=torch.float64)), ValueError, "linear_weight"),
    (dict(v=torch.randn(1, 6, dtype=torch.float64)), ValueError, "linear_weight"),
    (dict(y=torch.zeros(4)), TypeError, "target"),
    (dict(y=torch.zeros(5, dtype=torch.long)), ValueError, "target"),
    (dict(y=torch.tensor([0, 1, 9, 0])), ValueError, "target"),
    (dict(b=torch.zeros(4, dtype=torch.float64)), ValueError, "linear_bias"),
    (dict(alpha=0.0), ValueError, "alpha"),
    (dict(eta=-1.0), ValueError, "eta"),
    (dict(eta=torch.tensor(-1.0)), ValueError, "eta"),
    (dict(eta=torch.ones(2)), TypeError, "eta"),
    (dict(lam="1"), TypeError, "lam"),
    (dict(group_size=0), ValueError, "group_size"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(backend="nope"), ValueError, "backend"),
    (dict(backend="triton"), (TypeError, ValueError), "triton"),
    (dict(ignore_index=1.5), TypeError, "ignore_index"),
])
def test_bad_arguments_are_named(kwargs, exc, word):
    h, v, y, b = problem(b=4, d=6, c=3)
    args = dict(h=h, v=v, y=y, b=b)
    for k in ("h", "v", "y", "b"):
        if k in kwargs:
            args[k] = kwargs.pop(k)
    with pytest.raises(exc, match=word):
        sea_linear_cross_entropy(args["h"], args["v"], args["y"], linear_bias=args["b"],
                                 **kwargs)


def test_backends_are_accepted_and_give_the_torch_path():
    h, v, y, b = problem()
    want = ours(h, v, y, b, backend="torch")
    for name in ("auto", "cpp"):
        try:
            got = ours(h, v, y, b, backend=name)
        except ValueError as exc:     # cpp not built here
            assert "cpp" in str(exc)
            continue
        close(got, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------ hyper-parameters
def test_tensor_hyperparameters_equal_numbers():
    h, v, y, b = problem()
    kw = dict(alpha=0.05, eta=0.5, lam=0.3, delta=0.2)
    want = grads(ours, h, v, y, b, **kw)
    got = grads(ours, h, v, y, b, **{k: torch.tensor(x) for k, x in kw.items()})
    for a, w in zip(got, want):
        close(a, w, rtol=1e-6, atol=1e-8)   # float32 0-dim tensors for α, λ, δ


def test_tensor_eta_does_not_recompile_under_compile():
    """fullgraph=True, dynamic=True, η a 0-dim tensor argument: five values, one compilation
    (the direction is the opaque custom op; η is never read on the host)."""
    from torch._dynamo.testing import CompileCounter

    h, v, y, b = problem(b=8, dtype=torch.float32)
    kw = dict(alpha=0.05, lam=0.3, delta=0.2)
    vv = v.clone().requires_grad_(True)

    def step(h, y, eta):
        return sea_linear_cross_entropy(h, vv, y, linear_bias=b, eta=eta, **kw)

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(step, backend=counter, fullgraph=True, dynamic=True)
    for i, eta in enumerate((0.1, 0.3, 0.5, 0.8, 1.2)):
        e = torch.tensor(eta)
        if i:
            with torch.compiler.set_stance("fail_on_recompile"):
                got = compiled(h, y, e)
        else:
            got = compiled(h, y, e)
        close(got.detach(), ours(h, v, y, b, eta=eta, **kw), rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1
    got.backward()
    assert vv.grad is not None and torch.isfinite(vv.grad).all()


# ------------------------------------------------------------------------------ the module
def test_seallinear_is_nn_linear_with_the_sea_loss():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4)
    torch.manual_seed(0)
    sea = SeALinear(6, 4, alpha=0.05, eta=0.5, lam=0.3, delta=0.2)
    assert sea.state_dict().keys() == lin.state_dict().keys()
    for k, t in lin.state_dict().items():
        assert torch.equal(sea.state_dict()[k], t)
    assert sea_kernels.SeALinear is SeALinear
    assert sea_kernels.sea_linear_cross_entropy is sea_linear_cross_entropy
    h = torch.randn(7, 6)
    y = torch.randint(0, 4, (7,))
    torch.testing.assert_close(sea(h), lin(F.normalize(h, dim=1)))
    torch.testing.assert_close(
        sea(h, y), sea_linear_cross_entropy(h, sea.weight, y, linear_bias=sea.bias, alpha=0.05,
                                            eta=0.5, lam=0.3, delta=0.2))
    sea.eta, sea.lam, sea.delta = 0.0, 1.0, 0.0   # plain attributes, changeable between steps
    torch.testing.assert_close(
        sea(h, y), F.linear_cross_entropy(F.normalize(h, dim=1), lin.weight, y,
                                          linear_bias=lin.bias))
    nb = SeALinear(6, 4, bias=False)
    assert nb.bias is None and list(nb.state_dict()) == ["weight"]
    nb(h, y).backward()
    assert nb.weight.grad.shape == (4, 6)


def test_low_precision_inputs_compute_in_float32():
    h, v, y, b = problem(b=12, d=8, c=4, seed=5)
    hb, vb, bb = (t.to(torch.bfloat16).requires_grad_(True) for t in (h, v, b))
    loss = sea_linear_cross_entropy(hb, vb, y, linear_bias=bb, **HYPER)
    assert loss.dtype == torch.float32
    loss.backward()
    assert hb.grad.dtype == vb.grad.dtype == bb.grad.dtype == torch.bfloat16
    want = ref_loss(hb.detach().double(), vb.detach().double(), y, bb.detach().double(), **HYPER)
    close(loss, want, rtol=1e-5, atol=1e-6)


def test_seallinear_attribute_eta_as_a_tensor_under_compile():
    """The module's η attribute set to a 0-dim tensor between compiled steps: one compilation."""
    from torch._dynamo.testing import CompileCounter

    h, v, y, b = problem(b=8, dtype=torch.float32)
    head = SeALinear(6, 4, alpha=0.05, lam=0.3, delta=0.2, eta=torch.tensor(0.1))
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(head, backend=counter, fullgraph=True, dynamic=True)
    for i, eta in enumerate((0.1, 0.4, 0.9)):
        head.eta = torch.tensor(eta)
        with torch.compiler.set_stance("fail_on_recompile" if i else "default"):
            got = compiled(h, y)
        want = sea_linear_cross_entropy(h, head.weight, y, linear_bias=head.bias, alpha=0.05,
                                        eta=eta, lam=0.3, delta=0.2)
        close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1


@pytest.mark.parametrize("kwargs,word", [
    (dict(alpha=-1.0), "alpha"), (dict(eta=float("nan")), "eta"), (dict(lam=0), "lam"),
    (dict(group_size=0), "group_size"), (dict(reduction="avg"), "reduction"),
    (dict(out_features=1), "out_features"),
])
def test_seallinear_checks_its_arguments_at_construction(kwargs, word):
    args = dict(in_features=6, out_features=4)
    args.update((k, kwargs.pop(k)) for k in list(kwargs) if k in args)
    with pytest.raises(ValueError, match=word):
        SeALinear(args["in_features"], args["out_features"], **kwargs)
