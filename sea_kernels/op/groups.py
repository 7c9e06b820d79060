"""Groups of rows: the batch cut into consecutive groups that are projected alone.

With group_size G the rows [kG, min((k+1)G, b)) form group k (the last one shorter when G does
not divide b); row i projects only onto the other rows of its group, so Q is block-diagonal and
every b×b quantity (K = XXᵀ, S, Q) is needed only on the diagonal blocks. G = None (or G ≥ b)
is the whole batch, the paper (op/call.py: the one convention). The blocks are stored stacked:
the n full groups as one (n, G, G) tensor and the shorter last group as a (1, r, r) tensor, so
that every product is one batched GEMM per stack and nothing outside the blocks is formed
(`BlockDiag`).
"""
from __future__ import annotations

import torch


def group_blocks(b: int, group_size: int | None = None) -> list[tuple[int, int, int]]:
    """[(lo, n, g)]: rows lo : lo + n·g are n consecutive groups of g rows — the full groups,
    then the shorter last group (if any) as its own entry. group_size None or ≥ b: one group."""
    g = b if group_size is None or group_size >= b else int(group_size)
    n, rest = divmod(b, g)
    return [(0, n, g)] + ([(n * g, 1, rest)] if rest else [])


def group_ranges(b: int, group_size: int | None = None) -> list[tuple[int, int]]:
    """The row range [lo, hi) of every group, in order."""
    return [(lo + k * g, lo + (k + 1) * g) for lo, n, g in group_blocks(b, group_size)
            for k in range(n)]


def split_rows(t: torch.Tensor, blocks) -> list[torch.Tensor]:
    """t (b, …) as the (n, g, …) views of its rows, one per block of `group_blocks`."""
    return [t[lo:lo + n * g].view(n, g, *t.shape[1:]) for lo, n, g in blocks]


def join_rows(parts) -> torch.Tensor:
    """The inverse of `split_rows`: (n, g, …) parts back to (b, …)."""
    return torch.cat([p.reshape(-1, *p.shape[2:]) for p in parts])


class BlockDiag:
    """A b×b block-diagonal matrix (Q or K) kept as its stacked diagonal blocks `parts`
    ((n, g, g) per entry of `blocks`)."""

    def __init__(self, parts, blocks, b: int):
        self.parts, self.blocks, self.b = list(parts), blocks, b

    def matmul(self, v: torch.Tensor) -> torch.Tensor:
        """Q v for v (b, k): one bmm per stack of blocks."""
        return join_rows([torch.bmm(q, vp)
                          for q, vp in zip(self.parts, split_rows(v, self.blocks))])

    __matmul__ = matmul

    def t_matmul(self, v: torch.Tensor) -> torch.Tensor:
        """Qᵀ v for v (b, k)."""
        return join_rows([torch.bmm(q.mT, vp)
                          for q, vp in zip(self.parts, split_rows(v, self.blocks))])

    def row_sums(self, other: "BlockDiag | None" = None) -> torch.Tensor:
        """Σ_j Q_ij O_ij (b,) for a BlockDiag O of the same blocks (O = Q when None)."""
        other = self if other is None else other
        return join_rows([(q * o).sum(dim=2) for q, o in zip(self.parts, other.parts)])

    def diagonal(self) -> torch.Tensor:
        """Q_ii (b,)."""
        return join_rows([q.diagonal(dim1=1, dim2=2) for q in self.parts])

    def dense_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The given rows of Q as dense (m, b) rows (zeros outside their group's block)."""
        ref = self.parts[0]
        out = ref.new_zeros(rows.numel(), self.b)
        for (lo, n, g), q in zip(self.blocks, self.parts):
            sel = torch.nonzero((rows >= lo) & (rows < lo + n * g)).flatten()
            if not sel.numel():
                continue
            k, i = torch.div(rows[sel] - lo, g, rounding_mode="floor"), (rows[sel] - lo) % g
            cols = (lo + k * g)[:, None] + torch.arange(g, device=rows.device)
            out[sel[:, None], cols] = q[k, i]
        return out

    def dense(self) -> torch.Tensor:
        """The whole b×b matrix (tests and small inputs only)."""
        return self.dense_rows(torch.arange(self.b, device=self.parts[0].device))
