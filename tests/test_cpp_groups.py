"""Groups (group_size) and the bias of the C++ op, through cpp_backend.sea_forward.

With group_size G each row is projected only onto the other rows of its group of G consecutive
rows (Q block-diagonal, the shorter last group its own; a group of one row has q_i = 0), and the
result must equal the op run on each group's rows alone (row_scale sliced alike). With a bias b
the logits are XW + 1bᵀ in the direction and the loss (never in the attention scores), and the
op also returns db = Σ_i D_i. Checked against the float64 reference (sea_kernels.op.reference,
autograd of Σ_i s_i ℓ_i for dW and db) with per-dtype tolerances, on odd sizes (b not a multiple
of G, G = 1, G = b − 1, G ≥ b), zero rows inside a group and a cancelling group (untrusted rows);
and the new schema's fake kernel (opcheck).
"""
import pytest
import torch

try:
    import sea_kernels._C  # noqa: F401  (registers the op)
    import sea_kernels.op.cpp_backend  # noqa: F401  (registers its fake kernel)
except Exception as exc:  # not built, or built against another torch
    pytest.skip(f"C++ extension sea_kernels._C not importable ({type(exc).__name__}: {exc})",
                allow_module_level=True)

from helpers import TOLERANCE, cancelling_problem, make_problem, rel_err

from sea_kernels import reference
from sea_kernels.op import cpp_backend
from sea_kernels.op.call import Hyper

OP = torch.ops.sea_kernels.sea_fwd_cpu
PAPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)
#: Same op, same dtype, each group alone vs all groups at once: only the rounding of GEMMs of
#: other shapes (and of the ‖g‖ route, C ≤ 2b, chosen from the batch size) differs.
SELF_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def sea(x, y, w, s, group_size=0, bias=None, negative_only=False, compute_grad=True, **hyper):
    h = Hyper(**{**PAPER, **hyper}, negative_only=negative_only, group_size=group_size or None)
    out = cpp_backend.sea_forward(x, y, w, s, h, compute_grad, bias)
    return out if bias is not None else out[:2]


def reference_grads(x, y, w, s, group_size, bias, negative_only=False, **hyper):
    """(losses, dW, db) of the paper-literal reference in x's dtype: autograd of Σ_i s_i ℓ_i."""
    h = {**PAPER, **hyper}
    ww = w.detach().clone().requires_grad_(True)
    bb = None if bias is None else bias.detach().clone().requires_grad_(True)
    losses = reference.sea_loss(x, y, ww, direction="sea_neg" if negative_only else "sea",
                                reduction="none", group_size=group_size or None, bias=bb, **h)
    wrt = (ww,) if bb is None else (ww, bb)
    grads = torch.autograd.grad((losses * s.to(losses.dtype)).sum(), wrt)
    return (losses.detach(), *grads) + ((None,) if bb is None else ())


def assert_matches_reference(got, x, y, w, s, group_size, bias, dtype, **kw):
    """Each of (losses, dW, db) vs the float64 reference: ≤ 2 × the reference's own error in
    `dtype` + TOLERANCE[dtype] (float64: TOLERANCE alone)."""
    b64 = None if bias is None else bias.to(dtype).double()
    ref = reference_grads(x.to(dtype).double(), y, w.to(dtype).double(), s.double(), group_size,
                          b64, **kw)
    low = ref if dtype == torch.float64 else reference_grads(
        x.to(dtype), y, w.to(dtype), s.to(dtype), group_size,
        None if bias is None else bias.to(dtype), **kw)
    for name, g, r, lo in zip(("losses", "dW", "db"), got, ref, low):
        if r is None:
            continue
        assert g.dtype == dtype and g.shape == r.shape, (name, g.dtype, g.shape)
        assert torch.isfinite(g).all(), f"{name} is not finite"
        err, own = rel_err(g, r), rel_err(lo, r)
        bound = 2 * own + TOLERANCE[dtype]
        assert err <= bound, f"{name}: rel err {err:.3g} > {bound:.3g} (reference's own {own:.3g})"


def each_group_alone(x, y, w, s, group_size, bias, **kw):
    """The op on every group's rows alone: losses concatenated, dW and db summed."""
    b = x.shape[0]
    step = group_size if 0 < group_size < b else b
    parts = [sea(x[lo:lo + step], y[lo:lo + step], w, s[lo:lo + step], 0, bias, **kw)
             for lo in range(0, b, step)]
    out = [torch.cat([p[0] for p in parts]), sum(p[1] for p in parts)]
    return out + ([] if bias is None else [sum(p[2] for p in parts)])


def problem(b, d, c, dtype, seed, with_bias=True, zero_rows=()):
    x, y, w = make_problem(b, d, c, seed=seed)
    x[list(zero_rows)] = 0
    g = torch.Generator().manual_seed(seed + 1)
    s = torch.rand(b, generator=g, dtype=torch.float64)
    bias = 0.5 * torch.randn(c, generator=g, dtype=torch.float64) if with_bias else None
    return (x.to(dtype), y, w.to(dtype), s.to(dtype),
            None if bias is None else bias.to(dtype))


# b not a multiple of G, G = 1, G = b − 1, G = b, G > b, C > 2G (‖g‖ from rows of A'Wᵀ), C ≥ 64
# (the untransposed GEMMs), enough groups to run in parallel on two threads.
CASES = [(10, 13, 5, 4), (7, 13, 5, 1), (9, 30, 5, 8), (9, 30, 5, 9), (9, 30, 5, 50),
         (23, 40, 70, 5), (37, 20, 100, 16), (130, 33, 7, 16), (256, 64, 10, 128)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("b,d,c,group", CASES)
def test_groups_match_reference_and_each_group_alone(b, d, c, group, with_bias, dtype):
    x, y, w, s, bias = problem(b, d, c, dtype, seed=b * 31 + d + c + group, with_bias=with_bias)
    got = sea(x, y, w, s, group, bias)
    assert len(got) == (3 if with_bias else 2)
    assert_matches_reference(got, x, y, w, s, group, bias, dtype)
    alone = each_group_alone(x, y, w, s, group, bias)
    for name, g, a in zip(("losses", "dW", "db"), got, alone):
        assert rel_err(g, a) <= SELF_TOL[dtype], (name, rel_err(g, a))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("group", [2, 3, 4])
def test_zero_rows_inside_groups(group, dtype):
    """Zero rows are masked out of their group's softmax; a row whose group has no other non-zero
    row (and a zero row alone) gets q_i = 0: x̃_i = Π(x_i)."""
    x, y, w, s, bias = problem(13, 20, 6, dtype, seed=group, zero_rows=(1, 4, 5, 9, 10, 11))
    got = sea(x, y, w, s, group, bias)
    assert_matches_reference(got, x, y, w, s, group, bias, dtype)
    for name, g, a in zip(("losses", "dW", "db"), got, each_group_alone(x, y, w, s, group, bias)):
        assert rel_err(g, a) <= SELF_TOL[dtype], name


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_groups_of_one_row_are_unmoved(with_bias):
    """G = 1: no row has a partner, so x̃ = Π(x) and ℓ_i is the plain loss of Π(x_i)."""
    x, y, w, s, bias = problem(9, 13, 4, torch.float64, seed=3, with_bias=with_bias)
    x = 3 * x                                      # not unit length
    losses = sea(x, y, w, s, 1, bias)[0]
    logits = reference.unit(x) @ w + (0 if bias is None else bias)
    plain = reference.smoothed_hinge_loss(logits, y, PAPER["lam"], 0.0, reduction="none")
    assert rel_err(losses, plain) < 1e-13


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cancelling_group_is_recomputed_directly(dtype):
    """The cancelling reproducer (ĝ nearly cancels: untrusted rows, docs/design.md §3) as the
    middle group of three, between random groups: as accurate as the float64 reference allows."""
    xc, yc, wc = cancelling_problem()
    g = torch.Generator().manual_seed(5)
    x = torch.nn.functional.normalize(torch.randn(8, 2, generator=g, dtype=torch.float64), dim=1)
    x[3:6] = xc.double()
    y = torch.cat([torch.randint(0, 3, (3,), generator=g), yc, torch.randint(0, 3, (2,),
                                                                             generator=g)])
    w = wc.double() + 0.01 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    s = torch.rand(8, generator=g, dtype=torch.float64)
    bias = torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    x, w, s, bias = x.to(dtype), w.to(dtype), s.to(dtype), bias.to(dtype)
    got = sea(x, y, w, s, 3, bias)
    assert_matches_reference(got, x, y, w, s, 3, bias, dtype)


@pytest.mark.parametrize("negative_only", [False, True], ids=["sea", "sea_neg"])
def test_hyperparameters_with_groups_and_bias(negative_only):
    x, y, w, s, bias = problem(21, 17, 6, torch.float64, seed=8)
    hyper = dict(alpha=0.05, eta=0.4, lam=0.5, delta=1.0)
    got = sea(x, y, w, s, 5, bias, negative_only=negative_only, **hyper)
    assert_matches_reference(got, x, y, w, s, 5, bias, torch.float64,
                             negative_only=negative_only, **hyper)


def test_bias_only_shifts_logits_not_scores():
    """A bias equal for every class changes nothing (softmax is shift-invariant, and the scores
    x_jᵀg_i never see the bias); db of the mean-free step is then Σ_i D_i with Σ_c D_ic = 0."""
    x, y, w, s, _ = problem(12, 9, 5, torch.float64, seed=9, with_bias=False)
    plain = sea(x, y, w, s, 4)
    shifted = sea(x, y, w, s, 4, torch.full((5,), 3.0, dtype=torch.float64))
    assert rel_err(shifted[0], plain[0]) < 1e-13 and rel_err(shifted[1], plain[1]) < 1e-13
    assert shifted[2].sum().abs() < 1e-13


def test_whole_batch_group_sizes_agree():
    """group_size 0, b and > b are the same call."""
    x, y, w, s, bias = problem(11, 13, 5, torch.float32, seed=10)
    runs = [sea(x, y, w, s, g, bias) for g in (0, 11, 12, 1000)]
    for other in runs[1:]:
        assert all(torch.equal(a, o) for a, o in zip(runs[0], other))


def test_groups_in_parallel_match_groups_in_turn():
    """The groups run in parallel (enough of them for every thread) or in turn (one thread)."""
    x, y, w, s, bias = problem(200, 24, 7, torch.float64, seed=11)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = sea(x, y, w, s, 8, bias)
    finally:
        torch.set_num_threads(threads)
    parallel = sea(x, y, w, s, 8, bias)
    for a, p in zip(serial, parallel):
        assert rel_err(p, a) < 1e-13


# ---- outputs, dtypes, errors, fake kernel ------------------------------------------------------

def test_outputs_without_grad_and_dtype_promotion():
    x, y, w, s, bias = problem(7, 10, 4, torch.float32, seed=12)
    losses, dw, db = sea(x, y, w, s, 3, bias, compute_grad=False)
    assert dw.shape == (0,) and db.shape == (0,) and losses.dtype == torch.float32
    assert torch.equal(losses, sea(x, y, w, s, 3, bias)[0])
    out = sea(x, y, w, s.double(), 3, bias.double())   # float64 (the host's compute dtype)
    assert [t.dtype for t in out] == [torch.float64] * 3 and out[2].shape == (4,)
    raw = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, True, 3, None)
    assert len(raw) == 3 and raw[2].shape == (0,)


@pytest.mark.parametrize("case,error,match", [
    ("group", ValueError, "group_size must be"), ("bias_len", RuntimeError, "bias must have shape"),
    ("bias_2d", RuntimeError, "bias must have shape"),
    ("bias_int", RuntimeError, "floating point")])
def test_argument_errors(case, error, match):
    x, y, w, s, bias = problem(5, 6, 3, torch.float64, seed=13)
    group, bias = {"group": (-1, bias), "bias_len": (0, bias[:2]), "bias_2d": (0, bias[None]),
                   "bias_int": (2, bias.long())}[case]
    with pytest.raises(error, match=match):
        sea(x, y, w, s, group, bias)


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("compute_grad", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_opcheck(dtype, compute_grad, with_bias):
    x, y, w, s, bias = problem(7, 13, 5, dtype, seed=14, with_bias=with_bias)
    torch.library.opcheck(OP, (x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, compute_grad, 3, bias))


def test_fake_kernel_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x, w = torch.empty(6, 11), torch.empty(11, 4)
        y, s = torch.zeros(6, dtype=torch.long), torch.ones(6)
        losses, dw, db = OP(x, y, w, s.double(), 0.01, 0.8, 0.1, 0.0, False, True, 2,
                            torch.empty(4, dtype=torch.float64))   # float64: row_scale's dtype
        assert losses.shape == (6,) and dw.shape == (11, 4) and db.shape == (4,)
        assert losses.dtype == dw.dtype == db.dtype == torch.float64
        _, dw, db = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, False, 2, torch.empty(4))
        assert dw.shape == db.shape == (0,) and db.dtype == torch.float32
        _, _, db = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, True)
        assert db.shape == (0,)
