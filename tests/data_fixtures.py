"""Real-data slices for tests: the bundled CIFAR-10 EfficientNet-Lite0 features, loaded once.

    from data_fixtures import cifar_slice
    x_train, y_train, x_test, y_test = cifar_slice()             # 2000 / 1000 rows
    x_train, y_train, x_test, y_test = cifar_slice(600, 300, seed=1)

`shared/data/cifar10-efficientnet-lite0/features.npz` (x_train 50000×1280 float16, y_train,
x_test 10000×1280, y_test) stores its rows grouped by class, so each split is shuffled with a
seeded permutation (np.random.default_rng(seed): the train permutation first, then the test one)
before it is sliced; every slice holds all ten classes in roughly equal numbers. Features come
back as stored (float16, not normalised — `sea_kernels.data.features.prepare_features` is what the
trainer applies), labels as int64. Results are cached (lru_cache) and read-only: copy before
modifying.

The file is looked up in $SEA_DATA_DIR, then next to the checkout (`<repo>/../shared/data/...`),
then under /work/shared/data; when it is absent the calling test is skipped with the reason.

`cifar_data` is a session-scoped pytest fixture over `cifar_slice()`: a dict with keys
xtr, ytr, xte, yte (import it into a test module to use it).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

_REL = Path("data") / "cifar10-efficientnet-lite0" / "features.npz"


def cifar_path() -> Path | None:
    """The first existing copy of features.npz, or None."""
    candidates = []
    if os.environ.get("SEA_DATA_DIR"):
        candidates.append(Path(os.environ["SEA_DATA_DIR"]) / _REL.relative_to("data"))
    candidates += [Path(__file__).resolve().parents[2] / "shared" / _REL,
                   Path("/work/shared") / _REL]
    return next((p for p in candidates if p.is_file()), None)


@lru_cache(maxsize=1)
def _load_all():
    path = cifar_path()
    if path is None:
        return None
    with np.load(path) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def cifar_slice(n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """(x_train, y_train, x_test, y_test): n_train / n_test seeded-random rows of each split.

    Float16 features (n×1280), int64 labels in 0..9, read-only numpy arrays, cached per
    (n_train, n_test, seed). Skips the calling test when the data file is missing.
    """
    return _cifar_slice(int(n_train), int(n_test), int(seed))


@lru_cache(maxsize=8)
def _cifar_slice(n_train: int, n_test: int, seed: int):
    data = _load_all()
    if data is None:
        pytest.skip("CIFAR-10 EfficientNet-Lite0 features not found (looked in $SEA_DATA_DIR, "
                    f"../shared/{_REL} next to the checkout and /work/shared/{_REL})")
    rng = np.random.default_rng(seed)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if not 0 < n <= len(y):
            raise ValueError(f"n_{split} must be in [1, {len(y)}], got {n}")
        idx = rng.permutation(len(y))[:n]
        xs = np.ascontiguousarray(x[idx])
        ys = np.ascontiguousarray(y[idx]).astype(np.int64)
        xs.flags.writeable = False
        ys.flags.writeable = False
        out += [xs, ys]
    return tuple(out)


@pytest.fixture(scope="session")
def cifar_data():
    """dict(xtr (2000×1280 float16), ytr, xte (1000×1280), yte) — `cifar_slice()` as a fixture."""
    xtr, ytr, xte, yte = cifar_slice()
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}
