"""sea_kernels.data.files and .writers: feature-file formats, key conventions, validation errors,
atomic writes."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sea_kernels.data import files as io
from sea_kernels.data import writers


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int64)
    y[:3] = [0, 1, 2]
    return x, y


def _no_temp_files(directory):
    return [p.name for p in directory.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------------------ formats

def test_npy_is_memory_mapped_with_separate_labels(tmp_path, data):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    X, Y = io.load_dataset(tmp_path / "x.npy", tmp_path / "y.npy")
    assert isinstance(X, np.memmap)
    np.testing.assert_array_equal(X, x)
    np.testing.assert_array_equal(Y, y)
    assert Y.dtype == np.int64


@pytest.mark.parametrize("layout", ["xy", "split", "features_labels"])
def test_npz_key_conventions(tmp_path, data, layout):
    x, y = data
    p = tmp_path / "f.npz"
    if layout == "xy":
        np.savez(p, x=x, y=y)
        X, Y = io.load_dataset(p)
    elif layout == "split":
        np.savez(p, x_train=x, y_train=y, x_test=x[:10] * 2, y_test=y[:10])
        X, Y = io.load_dataset(p, split="train")
        Xt, Yt = io.load_dataset(p, split="test")
        np.testing.assert_array_equal(Xt, x[:10] * 2)
        np.testing.assert_array_equal(Yt, y[:10])
        # explicit key (option and inline), labels derived x_test → y_test
        Xk, Yk = io.load_dataset(p, key="x_test")
        Xi, Yi = io.load_dataset(f"{p}:x_test")
        np.testing.assert_array_equal(Xk, Xi)
        np.testing.assert_array_equal(Yk, y[:10])
        np.testing.assert_array_equal(Yi, y[:10])
    else:
        np.savez(p, features=x, labels=y)
        X, Y = io.load_dataset(p)
    np.testing.assert_array_equal(X, x)
    np.testing.assert_array_equal(Y, y)


def test_pt_dict_and_bare_tensor(tmp_path, data):
    x, y = data
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "d.pt")
    X, Y = io.load_dataset(tmp_path / "d.pt")
    np.testing.assert_array_equal(X, x)
    np.testing.assert_array_equal(Y, y)
    torch.save(torch.from_numpy(x), tmp_path / "t.pt")
    np.save(tmp_path / "y.npy", y)
    X, Y = io.load_dataset(tmp_path / "t.pt", labels=tmp_path / "y.npy")
    np.testing.assert_array_equal(X, x)


def test_pt_refuses_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ValueError, match="evil.pt"):
        io.load_dataset(tmp_path / "evil.pt")


def test_safetensors_memory_mapped(tmp_path, data):
    st = pytest.importorskip("safetensors.numpy")
    x, y = data
    st.save_file({"x_train": x.astype(np.float16), "y_train": y}, str(tmp_path / "f.safetensors"))
    X, Y = io.load_dataset(tmp_path / "f.safetensors", split="train")
    assert isinstance(X, np.memmap) and X.dtype == np.float16
    np.testing.assert_array_equal(X, x.astype(np.float16))
    np.testing.assert_array_equal(Y, y)


def test_several_files_give_a_list_of_blocks(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.save(tmp_path / "b.npy", x[:, :2] + 1)
    X, Y = io.load_dataset([tmp_path / "a.npz", tmp_path / "b.npy"])
    assert isinstance(X, list) and [b.shape for b in X] == [(40, 6), (40, 2)]
    np.testing.assert_array_equal(Y, y)
    from sea_kernels.data.features import prepare_features
    assert prepare_features(X).shape == (40, 8)


def test_text_labels_file_names_and_header(tmp_path, data):
    x, _ = data
    np.save(tmp_path / "x.npy", x[:4])
    (tmp_path / "y.txt").write_text("cat\ndog\ncat\nbird\n")
    _, y = io.load_dataset(tmp_path / "x.npy", tmp_path / "y.txt")
    np.testing.assert_array_equal(y, [1, 2, 1, 0])          # sorted names
    _, y = io.load_dataset(tmp_path / "x.npy", tmp_path / "y.txt", classes=["dog", "cat", "bird"])
    np.testing.assert_array_equal(y, [1, 0, 1, 2])
    (tmp_path / "y.csv").write_text("label\n3\n1\n3\n0\n")
    _, y = io.load_dataset(tmp_path / "x.npy", tmp_path / "y.csv")
    np.testing.assert_array_equal(y, [3, 1, 3, 0])


# ------------------------------------------------------------------------------ errors

def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"features file not found: .*nope\.npz"):
        io.load_dataset(tmp_path / "nope.npz")
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"labels file not found: .*y\.npy"):
        io.load_dataset(tmp_path / "x.npy", tmp_path / "y.npy")


def test_unknown_extension(tmp_path):
    (tmp_path / "f.h5").write_text("x")
    with pytest.raises(ValueError, match=r"unknown features file extension '\.h5'"):
        io.load_dataset(tmp_path / "f.h5")


def test_count_mismatch(tmp_path, data):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:-1])
    with pytest.raises(ValueError, match="39 labels for 40 feature rows"):
        io.load_dataset(tmp_path / "x.npy", tmp_path / "y.npy")
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.save(tmp_path / "b.npy", x[:-2])
    with pytest.raises(ValueError, match="disagree on the number of examples"):
        io.load_dataset([tmp_path / "a.npz", tmp_path / "b.npy"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_features(tmp_path, data, bad):
    x, y = data
    x = x.copy()
    x[7, 2] = bad
    np.savez(tmp_path / "f.npz", x=x, y=y)
    with pytest.raises(ValueError, match=f"{'NaN' if np.isnan(bad) else 'Inf'}.*row 7"):
        io.load_dataset(tmp_path / "f.npz")


def test_one_class_and_bad_labels(tmp_path, data):
    x, _ = data
    np.savez(tmp_path / "one.npz", x=x, y=np.full(40, 4))
    with pytest.raises(ValueError, match="only one class"):
        io.load_dataset(tmp_path / "one.npz")
    np.savez(tmp_path / "neg.npz", x=x, y=np.arange(40) - 1)
    with pytest.raises(ValueError, match="≥ 0"):
        io.load_dataset(tmp_path / "neg.npz")
    np.savez(tmp_path / "frac.npz", x=x, y=np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match="integer"):
        io.load_dataset(tmp_path / "frac.npz")


def test_ambiguous_or_missing_keys(tmp_path, data):
    x, y = data
    np.savez(tmp_path / "f.npz", a=x, b=x)
    with pytest.raises(ValueError, match="cannot tell which array holds the features.*a, b"):
        io.load_dataset(tmp_path / "f.npz")
    with pytest.raises(ValueError, match="no array named 'zz'"):
        io.load_dataset(tmp_path / "f.npz", key="zz")
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(ValueError, match="no labels found"):
        io.load_dataset(tmp_path / "nolabels.npz")


# ------------------------------------------------------------------------------ atomic writes

def test_atomic_write_success_and_failure(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with writers.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json"
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)       # not mkstemp's private mode
    with pytest.raises(RuntimeError, match="boom"):
        with writers.atomic_write(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("boom")
    assert target.read_text() == "{}"                                 # previous content kept
    assert _no_temp_files(target.parent) == []
    with pytest.raises(RuntimeError):
        with writers.atomic_write(tmp_path / "never.csv") as tmp:
            raise RuntimeError
    assert not (tmp_path / "never.csv").exists() and _no_temp_files(tmp_path) == []


def test_json_csv_npz_writers(tmp_path):
    writers.write_json(tmp_path / "m.json",
                       {"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "b": None, "c": [0, 1]}
    writers.write_csv(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.25}, {"epoch": 2, "acc": 0.5}])
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,loss,acc", "1,0.25,", "2,,0.5"]
    writers.save_npz(tmp_path / "c.npz", x=np.ones((2, 2)), y=np.arange(2))
    X, y = io.load_dataset(tmp_path / "c.npz")
    assert X.shape == (2, 2)
    assert _no_temp_files(tmp_path) == []
