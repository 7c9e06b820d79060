"""The Triton kernels themselves: what the per-backend table (tests/test_backends_agree.py, at
16-wide blocks) cannot see — the shipped 64-wide blocks, blocks of different sizes per dimension
with groups that start and end inside tiles, the key-tile arithmetic of groups, triton_backend's
own refusals and outputs, and the lowering of every kernel to sm_90 (no GPU needed).

Every block size here is ≥ 16, as tl.dot needs on a GPU. Without a GPU the kernels run in
Triton's interpreter (TRITON_INTERPRET=1, set by conftest.py before the kernels are defined).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fuzz_oracle as fo  # noqa: E402
import pytest  # noqa: E402
from backends import TRITON_OK, device  # noqa: E402
from cases import ROWS  # noqa: E402
from helpers import make_problem  # noqa: E402

from sea_kernels import fused_sea  # noqa: E402
from sea_kernels.op import triton_backend  # noqa: E402
from sea_kernels.op.call import Hyper  # noqa: E402
from sea_kernels.params import ParameterError  # noqa: E402

pytestmark = pytest.mark.skipif(not TRITON_OK, reason="triton unavailable, or not under "
                                "TRITON_INTERPRET=1 without a GPU")

DEVICE = device("triton")
#: Different block sizes per dimension (all ≥ 16): row tiles of 32, key tiles of 16, value tiles
#: of 32, so that group ranges are aligned to neither.
MIXED = triton_backend.Config(row_m=16, row_c=32, block_m=32, block_n=16, block_c=16, block_v=32,
                              block_d=16)
GROUP_ROWS = [r for r in ROWS if r.case.group_size and r.case.dtype == "float32"
              and r.case.b >= 10 and max(r.case.b, r.case.d, r.case.c) <= 64]


@pytest.mark.parametrize("row", GROUP_ROWS, ids=lambda r: r.id)
def test_mixed_blocks(monkeypatch, row):
    """The table's group cases with blocks of different sizes per dimension."""
    monkeypatch.setattr(triton_backend, "CONFIG", MIXED)
    fo.assert_close(row.case, "triton", row.arrays(), k_own=row.spec.k_own)


def test_default_blocks():
    """The shipped block sizes (64-wide) on odd b and C spanning several blocks and tiles."""
    case = fo.Case(b=130, d=20, c=150, delta=0.3, reduction="none", seed=2)
    fo.assert_close(case, "triton")
    fo.assert_close(fo.replace(case, group_size=50, bias=0.5, b=100, c=70), "triton")


def test_block_diagonal_storage():
    """K and Q kept as b×G diagonal blocks (the last group shorter): gram_blocks and
    block_diag_matmul (Q v, Qᵀ v, + add) equal the dense block-diagonal products."""
    gen = torch.Generator().manual_seed(0)
    for b, g in ((1, 1), (5, 5), (7, 3), (9, 4), (8, 8), (13, 13), (12, 1)):
        x = torch.randn(b, 6, generator=gen)
        mask = torch.zeros(b, b, dtype=torch.bool)
        for lo in range(0, b, g):
            mask[lo:lo + g, lo:lo + g] = True
        k = triton_backend.gram_blocks(x, g)
        dense = torch.where(mask, x @ x.T, 0)
        q = torch.randn(b, g, generator=gen)
        qd = torch.zeros(b, b)
        for i in range(b):
            lo = i // g * g
            n = min(g, b - lo)
            assert torch.allclose(k[i, :n], dense[i, lo:lo + n], atol=1e-5)
            qd[i, lo:lo + n] = q[i, :n]
        v, add = (torch.randn(b, 3, generator=gen) for _ in range(2))
        assert torch.allclose(triton_backend.block_diag_matmul(q, v, g), qd @ v, atol=1e-5)
        got = triton_backend.block_diag_matmul(q, v, g, add=add, transpose=True)
        assert torch.allclose(got, add + qd.T @ v, atol=1e-5)


def _args(b=4, d=3, c=2, dtype=torch.float32, dev=DEVICE):
    """(x, labels, weight, row_scale, hyper): the backend contract's positional arguments."""
    x, y, w = make_problem(b, d, c)
    return (x.to(dev, dtype), y.to(dev), w.to(dev, dtype), torch.ones(b, device=dev),
            Hyper(0.01, 0.8, 0.1, 0.0))


def test_refusals():
    """backend="triton" refuses float64 (inputs or bias) and a bad group_size, naming them, before
    any kernel runs."""
    x, y, w, _, _ = _args()
    x64, _, w64, _, _ = _args(dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        fused_sea(x64, y, w64, backend="triton")
    with pytest.raises(TypeError, match="float64"):
        fused_sea(x, y, w, bias=torch.zeros(2, dtype=torch.float64, device=DEVICE),
                  backend="triton")
    with pytest.raises(ParameterError, match="group_size"):
        fused_sea(x, y, w, group_size=True, backend="triton")
    with pytest.raises(ValueError, match="group_size"):
        fused_sea(x, y, w, group_size=-1, backend="triton")


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        triton_backend.sea_forward(*_args(dev="cpu"))


def test_outputs_without_grad():
    """compute_grad=False: the same losses, empty dW and db; always three outputs."""
    args = _args(7, 5, 3)
    bias = torch.tensor([1.0, -2.0, 0.5], device=DEVICE)
    full = triton_backend.sea_forward(*args, bias=bias)
    out = triton_backend.sea_forward(*args, False, bias)
    assert len(full) == len(out) == 3 and full[2].shape == (3,)
    assert out[1].numel() == out[2].numel() == 0 and torch.equal(out[0], full[0])
    plain = triton_backend.sea_forward(*args)
    out = triton_backend.sea_forward(*args, False)
    assert len(plain) == len(out) == 3 and plain[2].numel() == 0
    assert out[1].numel() == 0 and torch.equal(out[0], plain[0])


@pytest.mark.build
def test_kernels_compile_for_sm90(tmp_path):
    """Lower every kernel to an sm_90 cubin (no GPU needed) through benches/gpu_audit.py --edge:
    the host's launches at b = 1, G = 1, NKT = 1 (Triton turns ints equal to 1 into constants),
    groups inside tiles and C over several tiles, with the shipped and with 16-wide blocks.
    Catches what the interpreter accepts but the compiler does not (tl.dot shapes,
    branch-dependent types, ...)."""
    from test_gpu_audit import run_audit
    recs, proc = run_audit(tmp_path, "--edge")
    failed = [(r["kernel"], r["shape"]) for r in recs if not r["compiled"]]
    assert recs and not failed, (failed, proc.stderr[-3000:])
