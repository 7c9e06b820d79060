"""A lazy, memory-mapped, verified reader of .safetensors files (dict-like: keys(), [name]),
without the safetensors package except for dtypes numpy lacks (bf16, fp8)."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .errors import BadFileError

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
              "U16": np.uint16, "U32": np.uint32, "U64": np.uint64}


class SafetensorsFile:
    """Lazy, memory-mapped view of a .safetensors file (dict-like: keys(), [name]). The header is
    checked against the file's size when opened: a truncated file is a BadFileError."""

    def __init__(self, path: Path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise BadFileError(f"{path}: not a safetensors file (too short: {size} bytes)",
                                   path)
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise BadFileError(f"{path}: truncated or not a safetensors file (its header "
                                   f"claims {n} bytes, the file has {size})", path)
            try:
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError) as e:
                raise BadFileError(f"{path}: not a safetensors file ({e})", path) from None
        if not isinstance(header, dict):
            raise BadFileError(f"{path}: not a safetensors file (the header is no JSON object)",
                               path)
        header.pop("__metadata__", None)
        self.header, self.data_start = header, 8 + n
        self._check(size - self.data_start)

    def _check(self, data_size: int) -> None:
        """Every tensor's offsets inside the data block, its byte count its shape's."""
        for key, info in self.header.items():
            try:
                start, end = (int(v) for v in info["data_offsets"])
                shape = [int(v) for v in info["shape"]]
                dtype = info["dtype"]
            except (KeyError, TypeError, ValueError):
                raise BadFileError(f"{self.path}: corrupt safetensors header (entry {key!r}: "
                                   f"{info!r})", self.path) from None
            if not 0 <= start <= end or min(shape, default=0) < 0:
                raise BadFileError(f"{self.path}: corrupt safetensors header (tensor {key!r}: "
                                   f"offsets {start}..{end}, shape {shape})", self.path)
            if end > data_size:
                raise BadFileError(f"{self.path}: truncated safetensors file (tensor {key!r} "
                                   f"ends at byte {end} of the data, the file holds "
                                   f"{max(data_size, 0)})", self.path)
            np_dtype = _ST_DTYPES.get(dtype)
            if np_dtype is not None:
                want = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
                if end - start != want:
                    raise BadFileError(f"{self.path}: corrupt safetensors header (tensor {key!r} "
                                       f"of shape {shape} {dtype} needs {want} bytes, its "
                                       f"offsets span {end - start})", self.path)

    def keys(self):
        return list(self.header)

    def __contains__(self, key):
        return key in self.header

    def __getitem__(self, key):
        info = self.header[key]
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:   # bf16, fp8, …: no numpy dtype, read through the package
            try:
                from safetensors import safe_open
            except ImportError:
                raise ValueError(f"{self.path}: tensor {key!r} has dtype {info['dtype']}, "
                                 "which needs "
                                 "the safetensors package: pip install safetensors") from None
            with safe_open(str(self.path), framework="pt") as f:
                return f.get_tensor(key).float().numpy()
        if end == start:
            return np.zeros(shape, dtype)
        return np.memmap(self.path, dtype=dtype, mode="r", offset=self.data_start + start,
                         shape=shape)
