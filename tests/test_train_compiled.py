"""SeAClassifier(compile=True): the whole step (fused op + SGD update) as one graph, with no graph
break, and the weights of the eager step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sea_kernels.op.call import configure
from sea_kernels.train.compiled import compile_mode, make_step, step_function
from sea_kernels.train.estimator import SeAClassifier


def _batch(b=24, d=10, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    return x, torch.randint(0, c, (b,), generator=g), torch.zeros(d, c)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("group_size", [None, 8])
def test_step_is_one_graph_without_breaks(backend, group_size):
    if backend == "cpp":
        pytest.importorskip("sea_kernels._C")
    x, y, w = _batch()
    cfg = configure(alpha=0.5, eta=0.4, lam=0.1, delta=0.0, group_size=group_size,
                    backend=backend, dtype=x.dtype)
    fn = step_function(cfg, lr=0.4, momentum=0.9, weight_decay=1e-3)
    explained = torch._dynamo.explain(fn)(x, y, w.clone(), torch.zeros_like(w))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.parametrize("momentum,wd", [(0.9, 1e-3), (0.0, 0.0)])
def test_compiled_step_gives_the_eager_sgd_weights(momentum, wd):
    """Five steps through the graph (aot_eager: the traced graph, run eagerly) against
    fused_sea + loss.backward() + torch.optim.SGD."""
    from sea_kernels import fused_sea
    x, y, _ = _batch(b=40)
    cfg = configure(alpha=0.5, eta=0.4, lam=0.1, delta=0.1, backend="torch", dtype=x.dtype)
    w_ref = torch.zeros(10, 4, requires_grad=True)
    opt_ref = torch.optim.SGD([w_ref], lr=0.4, momentum=momentum, weight_decay=wd)
    w = torch.zeros(10, 4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.4, momentum=momentum, weight_decay=wd)
    step = make_step(cfg, w, opt, lr=0.4, momentum=momentum, weight_decay=wd,
                     backend="aot_eager")
    for k in range(5):
        rows = slice(8 * k, 8 * k + 8)
        loss_ref = fused_sea(x[rows], y[rows], w_ref, alpha=0.5, eta=0.4, lam=0.1, delta=0.1,
                             backend="torch")
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        loss = step(x[rows], y[rows])
        torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(w.detach(), w_ref.detach(), rtol=1e-5, atol=1e-7)
    if momentum:   # the optimizer's own buffer, as a checkpoint saves it
        torch.testing.assert_close(opt.state[w]["momentum_buffer"],
                                   opt_ref.state[w_ref]["momentum_buffer"], rtol=1e-5, atol=1e-7)


def test_compile_mode_is_cuda_graphs_on_cuda_only():
    assert compile_mode(torch.device("cuda")) == "reduce-overhead"
    assert compile_mode(torch.device("cpu")) is None


@pytest.mark.parametrize("value,exc,match", [
    ("yes", TypeError, "compile must be True or False"),
    (True, ValueError, "augment must be 'sea' or 'sea_neg'"),
])
def test_compile_parameter_is_checked(value, exc, match):
    with pytest.raises(exc, match=match):
        SeAClassifier(compile=value, augment="none").checked_params()


@pytest.mark.slow
def test_fit_with_compile_matches_eager_fit():
    """The trainer's compiled path (inductor on the CPU) over two epochs, last batch partial."""
    g = np.random.default_rng(0)
    X, y = g.standard_normal((100, 12)).astype(np.float32), g.integers(0, 3, 100)
    kw = dict(epochs=2, batch_size=32, lr=0.4, random_state=0, backend="torch")
    eager = SeAClassifier(**kw).fit(X, y)
    compiled = SeAClassifier(compile=True, **kw).fit(X, y)
    torch.testing.assert_close(compiled.W_, eager.W_, rtol=1e-5, atol=1e-6)
    assert [h["train_loss"] for h in compiled.history_] == pytest.approx(
        [h["train_loss"] for h in eager.history_], rel=1e-6)
