"""`DistributedDataParallel(SeALinear(...))` on 2 gloo processes (127.0.0.1, a free port, every
rank bounded by a timeout: `test_distributed.launch`) trains as one process on the global batch
(float64): with the per-rank span (process_group=None, which is group_size = the per-rank batch
on the global batch) and with the span across ranks (process_group=WORLD, group_size cut from the
global batch, also when a group straddles the ranks). Ignored rows are in no span on any rank.
Unequal per-rank batches are refused on every rank with one clear error."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from test_distributed import launch

from sea_kernels.op.linear import SeALinear, sea_linear_cross_entropy

D64 = torch.float64
B, D, C, STEPS, LR = 12, 5, 3, 3, 0.5
KW = dict(alpha=0.05, eta=0.6, lam=0.3, delta=0.2)
#: (process_group, group_size) of each run, and the one-process equivalent's group size
CASES = [(None, None, B // 2), ("world", None, None), ("world", 4, 4)]

WORKER = r"""
import datetime, json, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from sea_kernels.op.linear import SeALinear, sea_linear_cross_entropy
cfg = json.loads(sys.argv[1])
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))
rank, n = dist.get_rank(), dist.get_world_size()
g = torch.Generator().manual_seed(0)
B, D, C = cfg["B"], cfg["D"], cfg["C"]
h = torch.randn(B, D, generator=g, dtype=torch.float64)
y = torch.randint(0, C, (B,), generator=g)
b = B // n
mine = slice(rank * b, (rank + 1) * b)
out = {"runs": []}
for pg, group in cfg["cases"]:
    torch.manual_seed(1)
    lin = SeALinear(D, C, dtype=torch.float64, group_size=group,
                    process_group=dist.group.WORLD if pg else None, **cfg["kw"])
    model = DDP(lin)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    losses = []
    for step in range(cfg["steps"]):
        opt.zero_grad()
        loss = model(h[mine] * (1 + step), y[mine])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["runs"].append({"losses": losses, "weight": lin.weight.tolist(),
                        "bias": lin.bias.tolist()})
torch.manual_seed(1)
fresh = SeALinear(D, C, dtype=torch.float64)
y2 = y.clone()
y2[[1, 7]] = -100
out["ignored_sum"] = sea_linear_cross_entropy(
    h[mine], fresh.weight, y2[mine], linear_bias=fresh.bias, process_group=dist.group.WORLD,
    reduction="sum", **cfg["kw"]).item()
try:
    rows = 6 if rank == 0 else 5
    sea_linear_cross_entropy(h[:rows], lin.weight, y[:rows], process_group=dist.group.WORLD)
    out["error"] = None
except ValueError as exc:
    out["error"] = str(exc)
print("RESULT " + json.dumps(out), flush=True)
# every rank done before the group goes (a rank that tears gloo down while another still uses it
# aborts in gloo's shutdown), as train.distributed does at a normal exit
dist.barrier()
dist.destroy_process_group()
"""


def data():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(B, D, generator=g, dtype=torch.float64)
    return h, torch.randint(0, C, (B,), generator=g)


def one_process(group_size):
    h, y = data()
    torch.manual_seed(1)
    lin = SeALinear(D, C, dtype=torch.float64, group_size=group_size, **KW)
    opt = torch.optim.SGD(lin.parameters(), lr=LR)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = lin(h * (1 + step), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, lin.weight.detach(), lin.bias.detach()


@pytest.mark.slow
def test_ddp_seallinear_on_two_ranks_equals_one_process_on_the_global_batch():
    cfg = dict(B=B, D=D, C=C, steps=STEPS, lr=LR, kw=KW,
               cases=[[pg, group] for pg, group, _ in CASES])
    results = launch(lambda r: [sys.executable, "-c", WORKER, json.dumps(cfg)], 2, timeout=60)
    outs = []
    for rc, so, se in results:
        assert rc == 0, se
        outs.append(json.loads(so.split("RESULT ", 1)[1]))
    for k, (_, _, single_group) in enumerate(CASES):
        losses, weight, bias = one_process(single_group)
        r0, r1 = outs[0]["runs"][k], outs[1]["runs"][k]
        # DDP: each rank's loss is its local mean; their average is the global mean
        mean = (torch.tensor(r0["losses"], dtype=D64) + torch.tensor(r1["losses"], dtype=D64)) / 2
        torch.testing.assert_close(mean, torch.tensor(losses, dtype=D64), rtol=1e-12, atol=1e-14)
        for r in (r0, r1):
            torch.testing.assert_close(torch.tensor(r["weight"], dtype=D64), weight,
                                       rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(torch.tensor(r["bias"], dtype=D64), bias,
                                       rtol=1e-12, atol=1e-14)
    # ignored rows are in no span on any rank: the ranks' sums are the global batch's sum
    torch.manual_seed(1)
    fresh = SeALinear(D, C, dtype=D64)
    h, y = data()
    y[[1, 7]] = -100
    want = sea_linear_cross_entropy(h, fresh.weight, y, linear_bias=fresh.bias, reduction="sum",
                                    **KW)
    got = torch.tensor(outs[0]["ignored_sum"] + outs[1]["ignored_sum"], dtype=D64)
    torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-14)
    # the two spans differ (the test would not tell them apart otherwise)
    assert outs[0]["runs"][0]["losses"][0] != outs[0]["runs"][1]["losses"][0]
    for out in outs:
        assert out["error"] and "same batch on every rank" in out["error"]
