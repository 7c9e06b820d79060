"""Feature preparation shared by the trainer and the sweep engine (paper Eq. 1, Sec. 4).

    x = prepare_features(X)                 # one model's features, n×d
    x = prepare_features([X_sup, X_moco])   # several models' features for the same examples

Convention (the sweep engine relies on it, keep it exact):

1. every block is converted to a torch tensor (numpy arrays, np.memmap and float16 included),
   in float32 — float64 input stays float64;
2. every block is L2-normalised per row ("features from an individual model are normalized to
   the unit length", Sec. 4);
3. the blocks are concatenated in the order given (Eq. 1), and the result is renormalised per row
   ("the combined feature vector is further normalized to the unit length").

A zero row stays a zero row (in its block, and in the result when it is zero in every block), as
`sklearn.preprocessing.normalize` keeps it: the op masks zero rows exactly (Π(0) = 0, a zero row
is nobody's projection partner). A NaN/Inf value is a ValueError that says how many rows are
affected and where the first one is: a NaN poisons every step.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["prepare_features", "as_blocks", "block_dims", "LazyRows"]


def _to_tensor(block, name: str) -> Tensor:
    if isinstance(block, Tensor):
        t = block.detach()
    elif isinstance(block, np.ndarray):  # np.memmap is an ndarray subclass
        if block.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold numbers, got numpy dtype {block.dtype}")
        arr = np.asarray(block)
        if arr.dtype == np.float64:
            t = torch.from_numpy(np.ascontiguousarray(arr))
        else:  # float16 / float32 / ints: read (a memmap is read here) straight into float32
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor (or a list of them), "
                        f"got {type(block).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (examples × features), got shape {tuple(t.shape)}")
    if t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a real-valued array, got {t.dtype}")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return t


def as_blocks(X) -> list:
    """X as a list of blocks: a list/tuple of arrays stays a list; one array becomes [X]."""
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is an empty list; pass one feature matrix or a list of them")
        return list(X)
    return [X]


def block_dims(X) -> list[int]:
    """The per-block feature dimensions of X (without converting anything)."""
    return [int(b.shape[1]) if getattr(b, "ndim", 0) == 2 else -1 for b in as_blocks(X)]


def _unit_rows(t: Tensor, name: str) -> Tensor:
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).any(dim=1).nonzero()[:, 0]
        raise ValueError(f"{name} contains NaN or Inf in {bad.numel()} row(s) (first: row "
                         f"{int(bad[0])}); clean or drop those rows before training")
    norm = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    return _normalise(t, norm, not bool(torch.isfinite(norm).all()))


def _nonzero(norm: Tensor) -> Tensor:
    """`norm` with its zeros replaced by 1: dividing a zero row by it leaves the zero row."""
    return torch.where(norm > 0, norm, torch.ones_like(norm))


def _normalise(t: Tensor, norm: Tensor, rescale: bool) -> Tensor:
    """t / ‖t‖ per row, a zero row kept zero; with `rescale` (a float32 overflow of some squared
    norm) every row is first divided by its max |value| — decided for the whole matrix, so
    LazyRows passes it."""
    if rescale:
        t = t / _nonzero(t.abs().amax(dim=1, keepdim=True))
        norm = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    return t / _nonzero(norm)


def prepare_features(X, *, device: str | torch.device | None = None) -> Tensor:
    """Eq. 1: per-block L2 row normalisation, concatenation, renormalisation → unit-norm rows.

    X: one n×d array/tensor, or a list of them (n×d_k each, the same n examples in the same order).
    Returns a float32 tensor (float64 if every block is float64) of shape n×Σd_k, on `device`
    (default: the device of the first block, CPU for numpy); a zero row stays zero. Raises
    ValueError for NaN/Inf and mismatched row counts, TypeError for non-numeric input.
    """
    blocks = as_blocks(X)
    multi = len(blocks) > 1
    tensors = [_to_tensor(b, f"X[{k}]" if multi else "X") for k, b in enumerate(blocks)]
    n = tensors[0].shape[0]
    for k, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ValueError(f"X[{k}] has {t.shape[0]} rows but X[0] has {n}; every block must "
                             "hold features of the same examples")
        if t.shape[1] == 0:
            raise ValueError(f"{'X[%d]' % k if multi else 'X'} has no feature columns")
    if n == 0:
        raise ValueError("X has no rows")
    from ..op.call import compute_dtype  # each block's compute dtype; mixed blocks: float32
    dtypes = {compute_dtype(t) for t in tensors}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    if device is None:
        device = tensors[0].device
    tensors = [t.to(device=device, dtype=dtype) for t in tensors]
    units = [_unit_rows(t, f"X[{k}]" if multi else "X") for k, t in enumerate(tensors)]
    if not multi:
        return units[0].contiguous()
    cat = torch.cat(units, dim=1)
    # a row has norm √(number of its non-zero blocks): 0 only for a row zero in every block
    return cat / _nonzero(torch.linalg.vector_norm(cat, dim=1, keepdim=True))


def check_block_dims(X, expected: Sequence[int], name: str = "X") -> None:
    """Raise ValueError when X's blocks do not have the dimensions the model was fitted on."""
    got = block_dims(X)
    if list(got) != list(expected):
        raise ValueError(f"{name} has feature blocks of widths {got}, but the model was fitted on "
                         f"blocks of widths {list(expected)}; pass the features in the same "
                         "layout (same models, same order)")


#: Bytes of one float64 chunk of the LazyRows verification scan (the peak is a few chunks).
SCAN_BYTES = 1 << 24


class LazyRows:
    """Prepared rows of ONE n×d numpy array (np.memmap included) on demand, never the n×d copy.

    `lazy[idx]` (idx: an index tensor/array) reads only those rows of the source and returns
    exactly `prepare_features(X, device=device)[idx]`: the same conversion (float64 stays
    float64, anything else float32), per-row L2 normalisation and, when some float32 squared
    norm overflows anywhere in X, the same rescaling of every row. Construction verifies the
    whole source in chunks of ≤ SCAN_BYTES (2-D, ≥ 1 row and column, numbers, no NaN/Inf:
    prepare_features' errors, whole-matrix row numbers; a zero row stays zero) and keeps the n
    float64 row sums of the prepared rows (`row_sums`, for `train.checkpoint.fingerprint`) —
    O(n) memory.
    """

    def __init__(self, X: np.ndarray, *, device: str | torch.device | None = None,
                 chunk_rows: int | None = None, name: str = "X"):
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy array (np.memmap included) for LazyRows, "
                            f"got {type(X).__name__}")
        if X.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold numbers, got numpy dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (examples × features), got shape "
                             f"{tuple(X.shape)}")
        n, d = (int(v) for v in X.shape)
        if d == 0:
            raise ValueError(f"{name} has no feature columns")
        if n == 0:
            raise ValueError("X has no rows")
        self.source, self.shape = X, torch.Size((n, d))
        self.dtype = torch.float64 if X.dtype == np.float64 else torch.float32
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.chunk_rows = chunk_rows or max(1, SCAN_BYTES // (8 * d))
        self._rescale, self._sums = self._scan(name)

    def __len__(self) -> int:
        return self.shape[0]

    def _load(self, rows) -> Tensor:
        """Rows of the source (a slice or an index array) as a fresh tensor on the device."""
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        arr = np.array(self.source[rows], dtype=np_dtype)   # a copy: reads only these rows
        return torch.from_numpy(arr).to(device=self.device, dtype=self.dtype)

    def _scan(self, name: str) -> tuple[bool, Tensor]:
        n, step = self.shape[0], self.chunk_rows
        bad = 0
        first_bad = None
        overflow = False
        sums = []
        for s in range(0, n, step):
            t = self._load(slice(s, s + step))
            rows = (~torch.isfinite(t)).any(dim=1).nonzero()[:, 0]
            if rows.numel():
                bad += rows.numel()
                first_bad = s + int(rows[0]) if first_bad is None else first_bad
                continue
            norm = torch.linalg.vector_norm(t, dim=1, keepdim=True)
            overflow = overflow or not bool(torch.isfinite(norm).all())
            if not (bad or overflow):
                sums.append(_normalise(t, norm, False).double().sum(1))
        if bad:
            raise ValueError(f"{name} contains NaN or Inf in {bad} row(s) (first: row "
                             f"{first_bad}); clean or drop those rows before training")
        if overflow:   # rare: every row is rescaled, so the row sums are read again
            self._rescale = True
            sums = [self[torch.arange(s, min(s + step, n))].double().sum(1)
                    for s in range(0, n, step)]
        return overflow, torch.cat(sums)

    def __getitem__(self, index) -> Tensor:
        """prepare_features(X)[index] for an index tensor/array, reading only those rows."""
        idx = torch.as_tensor(index).reshape(-1).cpu().numpy()
        t = self._load(idx)
        norm = torch.linalg.vector_norm(t, dim=1, keepdim=True)
        return _normalise(t, norm, self._rescale).contiguous()

    def row_sums(self) -> Tensor:
        """Σ_j x_ij of every prepared row, float64 (n,), on the device (from the scan)."""
        return self._sums
