"""The x̃ that the torch backend's forward trains on (an internal check: torch_backend._front and
torch_backend.TAU; the loss and dW themselves are checked on every backend by
tests/test_backends_agree.py, and sea_augment's x̃ there too). diag(c1) X + diag(c2) QX with its
Gram-space row factors, the untrusted rows (docs/design.md §3) taking their direct x̃, must be the
exact x̃ on the table's rows that Gram space cannot resolve."""
import numpy as np
import pytest
import torch
from cases import ROWS

from sea_kernels import reference
from sea_kernels.op import torch_backend

TOL = {"float32": 1e-5, "float64": 1e-12}
NAMES = ("cancelling_w0_sea", "cancelling_w_random", "near_cancelling_pairs_0.01",
         "near_cancelling_pairs_1e-06", "near_cancelling_pairs_1e-08", "zero_row_takes_q_0.06",
         "zero_row_takes_q_0.047", "n2_cancels", "zero_row_tiny_eta_float32",
         "zero_row_tiny_eta_float64", "parallel_columns_d3")
SELECTED = [r for r in ROWS if r.spec.name in NAMES]


def implied_x_aug(x, y, w, alpha, eta, lam, delta):
    yy = reference.one_hot(y, w.shape[1], x.dtype)
    _, q, _, c1, c2, rows, x_aug = torch_backend._front(x, yy, w, alpha, eta, lam, delta, False)
    out = c1[:, None] * x + c2[:, None] * (q @ x)
    return torch.where(rows[:, None], x_aug, out)      # rows: the untrusted rows' mask


def _tensors(row):
    x, y, w = row.arrays()[:3]
    dt = getattr(torch, row.case.dtype)
    return torch.from_numpy(x).to(dt), torch.from_numpy(y), torch.from_numpy(w).to(dt)


@pytest.mark.parametrize("row", SELECTED, ids=lambda r: r.id)
def test_forward_trains_on_the_exact_x_aug(row):
    x, y, w = _tensors(row)
    kw = dict(alpha=row.case.alpha, eta=row.case.eta, lam=row.case.lam, delta=row.case.delta)
    want = reference.augment(x.double(), y, w.double(), **kw)
    own = (reference.augment(x, y, w, **kw).double() - want).norm(dim=1).max().item()
    err = (implied_x_aug(x, y, w, **kw).double() - want).norm(dim=1).max().item()
    assert err <= 2 * own + TOL[row.case.dtype], (err, own)


def test_gram_space_alone_misses_the_cancelling_row(monkeypatch):
    """Without untrusted rows (TAU = −∞) Gram space puts x̃₀ of the cancelling reproducer off by
    more than 1e-3 (float32): the case above does test the direct recomputation."""
    row = next(r for r in ROWS if r.id == "cancelling_w0_sea-float32")
    x, y, w = _tensors(row)
    want = reference.augment(x.double(), y, w.double(), alpha=0.01, eta=0.8, lam=0.1, delta=0.0)
    monkeypatch.setitem(torch_backend.TAU, torch.float32, float("-inf"))
    got = implied_x_aug(x, y, w, 0.01, 0.8, 0.1, 0.0)
    assert (got[0].double() - want[0]).norm() > 1e-3
    assert np.isfinite(got.numpy()).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direct_x_is_the_paper_literal_formula_to_the_bit(dtype):
    """`direct_x` (in place, for every row of the masked repair) is Π(x + ηΠ(ĝ)) with
    reference.unit's Π exactly, tiny ĝ and zero rows included."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 17, generator=g, dtype=dtype)
    gh = torch.randn(40, 17, generator=g, dtype=dtype) * 1e-20
    x[3], gh[4] = 0, 0
    want = reference.unit(x + 0.7 * reference.unit(gh))
    assert torch.equal(torch_backend.direct_x(x, gh.clone(), 0.7), want)


def test_cancelling_rows_are_found_for_many_classes_too():
    """C > 2b takes ‖g_i‖² from A'Wᵀ, but a cancelling row still takes its scores from g_i:
    the mask does not depend on which form gave ‖g_i‖²."""
    g = torch.Generator().manual_seed(6)
    w0 = torch.randn(6, 1, generator=g, dtype=torch.float64)
    w = w0 + 1e-7 * torch.randn(6, 9, generator=g, dtype=torch.float64)   # C = 9 > 2b = 8
    y = torch.arange(4) % 9
    a = torch_backend.row_prep(torch.randn(4, 6, generator=g, dtype=torch.float64) @ w,
                               reference.one_hot(y, 9, torch.float64), 0.1, 0.0, False)
    assert torch_backend.grad_norms_and_rows(a, w)[1].all()
