"""The sweep engine's GPU path, checked on the CPU: 16-bit features keep their dtype in the stacked
GEMMs, and `memory_plan` states the bytes the engine really allocates."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sea_kernels.sweeps import engine as sw
from sea_kernels.sweeps.grid import expand_grid


class _MatmulDtypes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in ("aten::mm", "aten::mm.out"):
            self.seen.append((args[0].dtype, args[1].dtype, tuple(args[0].shape),
                              tuple(args[1].shape)))
        return func(*args, **(kwargs or {}))


def _data(n=64, d=24, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    return x, torch.arange(n) % c


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_features_keep_their_dtype_in_the_stacked_gemms(dtype):
    x, y = _data()
    configs = [dict(lr=0.1, eta=eta, alpha=0.5) for eta in (0.0, 0.4, 0.8)]
    k, c, d, b = len(configs), 4, x.shape[1], 16
    with _MatmulDtypes() as mode:
        res = sw.train_many(x.to(dtype), y, configs, epochs=2, batch_size=b)
    logits = [s for s in mode.seen if s[2] == (k * c, d) and s[3] == (d, b)]
    grads = [s for s in mode.seen if s[2] == (k * c, b) and s[3] == (b, d)]
    steps = 2 * (x.shape[0] // b)
    assert len(logits) == steps and len(grads) == steps
    assert all(a == bb == dtype for a, bb, *_ in logits + grads)
    # the rest (and the state) in float32: the result is float32 training up to 16-bit rounding
    ref = sw.train_many(x.to(dtype).float(), y, configs, epochs=2, batch_size=b)
    assert res.weights.dtype == torch.float32 and not res.diverged.any()
    np.testing.assert_allclose(res.train_loss, ref.train_loss, rtol=2e-2)
    torch.testing.assert_close(res.weights, ref.weights, rtol=5e-2, atol=5e-3)


def test_float32_features_use_float32_gemms():
    x, y = _data()
    with _MatmulDtypes() as mode:
        sw.train_many(x, y, [dict(lr=0.1, eta=0.4)], epochs=1, batch_size=16)
    assert mode.seen and all(a == bb == torch.float32 for a, bb, *_ in mode.seen)


def test_memory_plan_is_what_the_engine_allocates():
    """weights, momentum, gradient, logits and rows: the engine's own tensors after a step."""
    k, d, c, b = 6, 40, 5, 16
    configs = [{**cfg, "eta": eta} for cfg, eta in zip(expand_grid(None)[:k],
                                                         (0, 0.2, 0.4, 0.4, 0.8, 0.8))]
    eng = sw._Engine(configs, d, c, torch.float32, torch.device("cpu"), None, None)
    x, y = _data(n=b, d=d, c=c)
    eng.step(x, y)
    plan = sw.memory_plan(k, d, c, b, torch.float32, "cpu")
    ws = eng.workspace._buffers
    assert eng.weight_t.nbytes == plan["weights"] == plan["result"] == 4 * k * c * d
    assert eng.buf.nbytes == plan["momentum"] and ws["grad"].nbytes == plan["gradient"]
    assert ws["logits"].nbytes + ws["rows"].nbytes == plan["logits_rows"]
    chunk = sum(t.nbytes for name, t in ws.items() if name in ("bb0", "bb1"))
    assert 0 < chunk <= plan["chunk"]


def test_memory_plan_of_the_paper_grid_at_cifar100_scale():
    """The number docs/design.md §4 states: 5.66 GB a stacked 1,728 × 8192 × 100 float32 matrix."""
    plan = sw.memory_plan(1728, 8192, 100, 256)
    assert plan["weights"] == 1728 * 8192 * 100 * 4 == 5_662_310_400
    assert plan["total"] == 4 * plan["weights"] + plan["logits_rows"] + plan["chunk"]


def _cancelling_case():
    """Configuration 0's columns share one large component (their differences are 1e-5 of it),
    so a'ᵀMa' = ‖W a'_i‖² cancels for every row (Σ_c a'_ic = 0): all 12 rows take the direct
    repair, where W a'_i (the differences) is well defined."""
    from sea_kernels.op.batched import Hyper
    g = torch.Generator().manual_seed(0)
    b, d, c, k = 12, 16, 4, 3
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.arange(b) % c
    w = torch.randn(k * c, d, generator=g, dtype=torch.float64)
    w[:c] = w[:c].mean(0) + 1e-5 * torch.randn(c, d, generator=g, dtype=torch.float64)
    cfg = ([1.0, 0.05, 0.1], [0.8, 1.0, 0.4], [0.1, 0.5, 1.0], [0.0, 0.5, 1.0])
    return x, y, w, Hyper(*(torch.tensor(v, dtype=torch.float64) for v in cfg)), cfg, c, k


def test_rare_rows_repaired_within_the_budget_and_counted_beyond_it():
    from sea_kernels.op import call, torch_backend
    from sea_kernels.op.batched import Workspace, batched_sea_grad
    x, y, w, hyper, cfg, c, k = _cancelling_case()
    ws = Workspace()
    grad, losses = batched_sea_grad(x, y, w, hyper, c, workspace=ws)
    assert ws.overflow("cpu", k).tolist() == [0, 0, 0]
    scale = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    for j in range(k):      # every configuration = the torch backend alone (its own rare rows)
        h = call.Hyper(*(v[j] for v in cfg), False, None)
        row_losses, dw, _ = torch_backend.sea_forward(x, y, w[j * c:(j + 1) * c].T, scale, h,
                                                      True)
        torch.testing.assert_close(grad[j * c:(j + 1) * c].T, dw, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(losses[j], row_losses.mean(), rtol=1e-9, atol=1e-12)
    tight = Workspace()            # max_chunk_bytes=1: one configuration a chunk, 4 rows repaired
    loose, _ = batched_sea_grad(x, y, w, hyper, c, workspace=tight, max_chunk_bytes=1)
    assert tight.overflow("cpu", k).tolist() == [12 - 4, 0, 0]   # configuration 0's
    # the 8 rows left to the Gram-space value are off by far more than the tolerance above
    assert (loose[:c] - grad[:c]).norm() > 1e-8 * grad[:c].norm()


def test_engine_warns_when_rows_exceed_the_budget():
    with pytest.warns(RuntimeWarning, match=r"epoch 2: 8 rows .* raise max_chunk_bytes"):
        sw._warn_overflow(8, 1)
