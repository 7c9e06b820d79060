"""The Triton path's launches and host syncs, counted on the CPU under Triton's interpreter, and
its input gradient (input_grad=True) against float64 autograd.

A launch is a Triton kernel launch (counted by wrapping the kernels' `kernel[grid](...)`) or an
aten op that runs a kernel (counted by a TorchDispatchMode; allocation and views launch nothing;
the interpreter's own tensor copies inside a kernel launch are not counted). A host sync is an
aten op that reads a value back to the host (`nonzero`, `unique`, `.item()`, `bool(tensor)`, …).
"""
import os
from types import SimpleNamespace

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from backends import TRITON_OK, device  # noqa: E402
from helpers import make_problem  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from sea_kernels.op import reference, torch_backend, triton_backend  # noqa: E402
from sea_kernels.op.call import Hyper  # noqa: E402

pytestmark = pytest.mark.skipif(not TRITON_OK, reason="triton unavailable, or not under "
                                "TRITON_INTERPRET=1 without a GPU")

DEVICE = device("triton")
#: aten ops that launch no kernel: allocations, views and metadata.
NO_LAUNCH = {"empty", "empty_like", "empty_strided", "new_empty", "view", "_unsafe_view", "t",
             "transpose", "permute", "expand", "slice", "select", "detach", "alias",
             "as_strided", "unsqueeze", "squeeze", "_reshape_alias", "reshape", "diagonal",
             "lift_fresh", "split", "unbind"}
#: aten ops that wait for the device and read a value back to the host.
SYNCS = {"nonzero", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive",
         "_local_scalar_dense", "is_nonzero", "masked_select", "item", "tolist",
         "nonzero_static"}
MAX_LAUNCHES = 8


class _Count(TorchDispatchMode):
    """Records the aten ops outside Triton launches (`paused` while a kernel runs)."""

    def __init__(self):
        super().__init__()
        self.ops, self.paused = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class _Kernel:
    """kernel[grid](...) counted as one launch, the interpreter's work inside it not counted."""

    def __init__(self, fn, mode, launches):
        self.fn, self.mode, self.launches = fn, mode, launches

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(self.fn.__name__ if hasattr(self.fn, "__name__") else "kernel")
            self.mode.paused = True
            try:
                return self.fn[grid](*args, **kwargs)
            finally:
                self.mode.paused = False
        return launch


def count(monkeypatch, fn):
    """(result, Triton launches, aten ops that launch, aten ops that sync) of fn()."""
    mode, launches = _Count(), []
    names = [n for n in dir(triton_backend.kernels) if n.startswith("_") and not n.startswith("__")]
    fake = SimpleNamespace(**{n: _Kernel(getattr(triton_backend.kernels, n), mode, launches)
                              for n in names})
    monkeypatch.setattr(triton_backend, "kernels", fake)
    with mode:
        out = fn()
    aten = [op for op in mode.ops if op not in NO_LAUNCH]
    return out, launches, aten, [op for op in mode.ops if op in SYNCS]


@pytest.mark.parametrize("d,group", [(32, None), (32, 64), (300, None), (80, 64)])
def test_step_launches_and_syncs(monkeypatch, d, group):
    """A forward + backward (compute_grad=True) at b = 256, float32: ≤ 8 launches (GEMMs and
    kernels) and no host sync, by ĝ = QX (d < G) and by QK (d ≥ G, K = XXᵀ one more GEMM);
    the same numbers as the torch backend."""
    x, y, w = make_problem(256, d, 10, seed=3)
    hyper = Hyper(0.1, 0.8, 0.5, 0.1, False, group)
    scale = torch.full((256,), 1 / 256, dtype=torch.float32)
    args = (x.float().to(DEVICE), y.to(DEVICE), w.float().to(DEVICE), scale.to(DEVICE), hyper)
    out, launches, aten, syncs = count(monkeypatch,
                                       lambda: triton_backend.sea_forward(*args, True))
    assert not syncs, syncs
    assert len(launches) + len(aten) <= MAX_LAUNCHES, (launches, aten)
    assert len(launches) == 3, launches
    assert aten.count("bmm") == (d >= (group or 256)), aten      # K only on the QK path
    want = torch_backend.sea_forward(x, y, w, scale.double(), hyper, True)
    for got, ref in zip(out, want):
        assert torch.allclose(got.double().cpu(), ref, rtol=1e-4, atol=1e-6)


def _loss_of_x(x, y, w, bias, hyper, scale):
    """Σ_i s_i ℓ(x̃_i), x̃ = Π(x + η u) with u = sea_direction (detached): float64 autograd."""
    u = torch_backend.sea_direction(x.detach(), y, w, hyper, torch.float64, bias).detach()
    x_aug = reference.unit(x + hyper.eta * u)
    rows = reference.smoothed_hinge_loss(reference.logits_of(x_aug, w, bias), y, hyper.lam,
                                         hyper.delta, "none")
    return (rows * scale).sum()


@pytest.mark.parametrize("b,d,c,group,bias", [(40, 24, 19, None, True), (37, 20, 5, 16, False),
                                              (33, 16, 3, 7, True)])
def test_input_grad(b, d, c, group, bias):
    """input_grad=True: the fourth value is ∂(Σ_i s_i ℓ(x̃_i))/∂X with the direction fixed, as
    float64 autograd gives it; the first three are those of input_grad=False."""
    x, y, w = make_problem(b, d, c, seed=b)
    bvec = torch.linspace(-1, 1, c, dtype=torch.float64) if bias else None
    hyper = Hyper(0.3, 0.8, 0.5, 0.1, False, group)
    scale = torch.rand(b, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(_loss_of_x(xr, y, w, bvec, hyper, scale), xr)
    dev = lambda t: None if t is None else t.float().to(DEVICE)  # noqa: E731
    out = triton_backend.sea_forward(dev(x), y.to(DEVICE), dev(w), dev(scale), hyper, True,
                                     dev(bvec), input_grad=True)
    plain = triton_backend.sea_forward(dev(x), y.to(DEVICE), dev(w), dev(scale), hyper, True,
                                       dev(bvec))
    assert len(out) == 4 and out[3].shape == (b, d) and out[3].dtype == torch.float32
    for got, ref in zip(out[:3], plain):
        assert torch.equal(got, ref)
    err = (out[3].double().cpu() - want).norm() / want.norm()
    assert err < 1e-5, float(err)
