"""prepare_features (paper Eq. 1 and Sec. 4's normalisation) and the metrics."""
import numpy as np
import pytest
import torch

from sea_kernels.data.features import prepare_features
from sea_kernels.train.metrics import mean_per_class, top1


def _rand(n, d, seed, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal((n, d)) * 3 + 1).astype(dtype)


def test_single_block_is_unit_rows_in_the_same_direction():
    x = _rand(7, 5, 0)
    out = prepare_features(x)
    assert out.dtype == torch.float32 and out.shape == (7, 5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(7))
    want = x / np.linalg.norm(x, axis=1, keepdims=True)
    torch.testing.assert_close(out, torch.from_numpy(want))


def test_two_blocks_eq1_normalise_concatenate_renormalise():
    a, b = _rand(6, 3, 1, np.float64), _rand(6, 4, 2, np.float64) * 100  # very different scales
    out = prepare_features([a, b])
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    want = np.concatenate([ua, ub], axis=1) / np.sqrt(2)   # each block contributes norm 1
    assert out.dtype == torch.float64                       # float64 in, float64 out
    torch.testing.assert_close(out, torch.from_numpy(want), rtol=1e-14, atol=1e-15)
    # both blocks carry equal weight whatever their raw scale
    torch.testing.assert_close(out[:, :3].norm(dim=1), out[:, 3:].norm(dim=1))


def test_input_types_float16_memmap_tensor(tmp_path):
    x = _rand(5, 4, 3, np.float16)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap)
    ref = prepare_features(x.astype(np.float32))
    for inp in (x, mm, torch.from_numpy(x), torch.from_numpy(x.astype(np.float32))):
        out = prepare_features(inp)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref)
    assert prepare_features(torch.from_numpy(x).double()).dtype == torch.float64
    # float64 mixed with float32 blocks → float32
    assert prepare_features([x.astype(np.float64), x]).dtype == torch.float32


def test_zero_rows_stay_zero_rows():
    """As sklearn.preprocessing.normalize: a zero row is kept (the op masks it), in one block and
    in the result; a row zero in one block only is the unit row of its other blocks."""
    x = _rand(6, 3, 4)
    x[[1, 4]] = 0
    out = prepare_features(x)
    assert torch.all(out[[1, 4]] == 0)
    torch.testing.assert_close(out[[0, 2, 3, 5]], prepare_features(x[[0, 2, 3, 5]]))
    other = _rand(6, 2, 5)
    both = prepare_features([other, x])
    torch.testing.assert_close(both[[1, 4]], torch.cat([prepare_features(other)[[1, 4]],
                                                        torch.zeros(2, 3)], dim=1))
    assert torch.all(prepare_features([x, x])[[1, 4]] == 0)
    assert torch.all(prepare_features(x.astype(np.int64))[[1, 4]] == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_values_are_rejected(bad):
    x = _rand(4, 3, 6)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf in 1 row\(s\) \(first: row 2\)"):
        prepare_features(x)


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match="X\\[1\\] has 3 rows but X\\[0\\] has 4"):
        prepare_features([_rand(4, 2, 0), _rand(3, 2, 1)])
    with pytest.raises(ValueError, match="2-D"):
        prepare_features(np.ones(5, dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array or a torch.Tensor"):
        prepare_features([[1.0, 2.0]])
    with pytest.raises(TypeError, match="numbers"):
        prepare_features(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="empty list"):
        prepare_features([])
    with pytest.raises(ValueError, match="no rows"):
        prepare_features(np.zeros((0, 3), dtype=np.float32))


def test_large_float32_values_do_not_overflow():
    x = np.full((2, 4), 3e38, dtype=np.float32)
    x[1, 0] = -3e38
    out = prepare_features(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_metrics():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 5])   # class 5 predicted but never true
    assert top1(pred, y) == pytest.approx(5 / 8)
    assert mean_per_class(pred, y) == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert top1(torch.tensor(pred), torch.tensor(y)) == pytest.approx(5 / 8)
    assert mean_per_class(list(y), list(y)) == 1.0
    with pytest.raises(ValueError, match="pred has 2 entries but y has 8"):
        top1(pred[:2], y)
    with pytest.raises(ValueError, match="empty"):
        mean_per_class([], [])


def test_cifar_slice_loader():
    from data_fixtures import cifar_slice
    xtr, ytr, xte, yte = cifar_slice()
    assert xtr.shape == (2000, 1280) and xte.shape == (1000, 1280) and xtr.dtype == np.float16
    assert ytr.dtype == np.int64 and set(np.unique(ytr)) == set(range(10))
    assert np.bincount(ytr).min() > 150                      # shuffled before slicing
    assert cifar_slice() is cifar_slice(2000, 1000, 0)        # cached
    assert not xtr.flags.writeable
    small = cifar_slice(100, 50, seed=1)
    assert small[0].shape == (100, 1280) and not np.array_equal(small[1], ytr[:100])
