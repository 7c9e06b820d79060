"""data.labels: the one label path (reading, the integer rule, encoding, class indices) and its
users: metrics, the estimator, the sweep and the file readers."""
import numpy as np
import pytest
import torch

from sea_kernels.data import files
from sea_kernels.data.labels import (
    check_label_kind,
    class_indices,
    encode_labels,
    integer_labels,
    integer_values,
    label_array,
    label_kind,
    sortable_labels,
)
from sea_kernels.train import metrics


def test_label_array_from_lists_arrays_and_tensors():
    want = np.array([3, 1, 2])
    for y in ([3, 1, 2], (3, 1, 2), want, torch.tensor([3, 1, 2]),
              torch.tensor([3.0, 1.0, 2.0], requires_grad=True)):
        got = label_array(y)
        assert isinstance(got, np.ndarray) and got.ndim == 1
        np.testing.assert_array_equal(got, want)
    assert label_array(["cat", "dog"]).dtype.kind == "U"
    assert label_array([]).shape == (0,)


def test_label_array_refuses_2d_and_counts_rows():
    with pytest.raises(ValueError, match=r"y_val must be 1-D \(one label per example\), got shape "
                                         r"\(3, 1\)"):
        label_array(np.zeros((3, 1)), "y_val")
    with pytest.raises(ValueError, match="must be 1-D"):
        label_array(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="must be 1-D"):
        label_array(5)
    with pytest.raises(ValueError, match="y has 2 labels but X has 3 rows"):
        label_array([1, 2], "y", 3)
    with pytest.raises(ValueError, match="y_val has 2 labels but X_val has 3 rows"):
        label_array([1, 2], "y_val", 3, rows_of="X_val")


def test_integer_values_and_integer_labels():
    i32 = np.array([1, 2], dtype=np.int32)
    assert integer_values(i32) is i32                      # integer dtypes kept as they are
    assert integer_values(np.array([1.0, 2.0])).dtype == np.int64
    assert integer_values(np.array([1.5])) is None
    assert integer_values(np.array([np.nan])) is None
    assert integer_values(np.array(["1"])) is None
    assert integer_values(np.array([True])) is None
    assert integer_values(np.array([True]), allow_bool=True) is not None
    assert integer_labels(i32).dtype == np.int32
    got = integer_labels(torch.tensor([2.0, 0.0]))         # floats with integer values
    assert got.dtype == np.int64 and got.tolist() == [2, 0]
    for bad in (np.array([0.5, 1.0]), ["a", "b"], np.array([np.inf, 1.0]), [True, False]):
        with pytest.raises(TypeError, match="integer class labels"):
            integer_labels(bad)
    with pytest.raises(ValueError, match="1-D"):
        integer_labels(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="3 labels but X has 2"):
        integer_labels([1, 2, 3], n_rows=2)


def test_sortable_labels():
    assert sortable_labels(np.array(["b", "a"])).dtype.kind == "U"
    assert sortable_labels(np.array([True, False])).dtype == bool
    assert sortable_labels(np.array([1.0, 2.0])).dtype == np.int64      # whole floats: integers
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        sortable_labels(np.array([0.5, 1.5]))              # a regression target, not classes
    assert sortable_labels(np.array(["x", "y"], dtype=object)).dtype == object
    assert sortable_labels(np.array([b"x", b"y"])).dtype.kind == "S"
    assert sortable_labels(torch.tensor([2, 0])).tolist() == [2, 0]
    with pytest.raises(ValueError, match="y_val contains 2 NaN/Inf label"):
        sortable_labels([np.nan, 1.0, np.inf], "y_val")
    with pytest.raises(TypeError, match="sort against each other.*int, str"):
        sortable_labels(np.array(["a", 1], dtype=object))
    with pytest.raises(TypeError, match="sortable class labels.*complex"):
        sortable_labels(np.array([1j, 2j]))
    with pytest.raises(ValueError, match="y has 2 labels but X_test has 3 rows"):
        sortable_labels([1, 2], "y", 3, rows_of="X_test")


def test_label_kinds():
    assert [label_kind(a) for a in ([1], [1.5], [True], ["a"], [b"a"])] == [
        "number", "number", "bool", "string", "string"]
    assert label_kind(np.array([1], dtype=object)) == "object"
    check_label_kind([1.0, 2.0], np.array([1, 2]))                    # numbers and numbers
    check_label_kind(np.array(["a"], dtype=object), np.array([1]))   # objects are not checked
    check_label_kind(np.array([], dtype=str), np.array([1]))          # nothing to compare
    with pytest.raises(TypeError, match=r"y_test holds number labels but the classes are strings"):
        check_label_kind([0, 1], np.array(["a", "b"]), "y_test")
    with pytest.raises(TypeError, match="holds bool labels but the classes are numbers"):
        check_label_kind([True], np.array([0, 1]))


def test_encode_labels():
    classes, idx = encode_labels([30, 10, 20, 10])
    assert classes.tolist() == [10, 20, 30] and idx.tolist() == [2, 0, 1, 0]
    assert idx.dtype == np.int64
    classes, idx = encode_labels(np.array(["dog", "cat", "dog"]))
    assert classes.tolist() == ["cat", "dog"] and idx.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(classes[idx], ["dog", "cat", "dog"])
    # a given class list, in its own (unsorted) order
    classes, idx = encode_labels(["b", "c", "a"], ["c", "a", "b"])
    assert classes.tolist() == ["c", "a", "b"] and idx.tolist() == [2, 0, 1]
    _, idx = encode_labels(torch.tensor([5, 7]), np.array([5, 6, 7]))
    assert idx.tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"y_test: labels not in the class list: 9"):
        encode_labels([5, 9], [5, 6], "y_test")
    with pytest.raises(ValueError, match=r"y contains a single class \(4\); a classifier needs "
                                         r"at least 2 classes"):
        encode_labels([4, 4], min_classes=2)
    with pytest.raises(ValueError, match="no labels"):
        encode_labels([], min_classes=1)
    assert encode_labels([], [1, 2])[1].shape == (0,)


def test_class_indices():
    got = class_indices(torch.tensor([0, 2, 1], dtype=torch.uint8), num_classes=3)
    assert got.dtype == np.int64 and got.tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="integer class indices, got dtype float"):
        class_indices([0.0, 1.0])
    with pytest.raises(ValueError, match="integer class indices, got dtype bool"):
        class_indices([True, False])
    with pytest.raises(ValueError, match="≥ 0, found -1"):
        class_indices([0, -1])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\), found 2"):
        class_indices([0, 2], num_classes=2)
    with pytest.raises(ValueError, match="y has 2 labels but X has 5 rows"):
        class_indices([0, 1], n_rows=5)


def test_metrics_read_labels_through_label_array():
    assert metrics.top1([1, 2, 3], torch.tensor([1, 2, 0])) == pytest.approx(2 / 3)
    assert metrics.top1(["a", "b"], np.array(["a", "a"])) == 0.5
    with pytest.raises(ValueError, match=r"pred must be 1-D"):
        metrics.top1(np.zeros((2, 2)), [0, 1])


def test_file_label_functions_use_the_same_rules():
    np.testing.assert_array_equal(files.labels_to_indices(["3", 1, "2"]), [3, 1, 2])
    np.testing.assert_array_equal(files.labels_to_indices(["cat", "dog", "cat", "bird"]),
                                  [1, 2, 1, 0])
    np.testing.assert_array_equal(
        files.labels_to_indices(["cat", "dog"], classes=["dog", "cat"]), [1, 0])
    with pytest.raises(ValueError, match=r"y\.txt: labels not in the class list: eel, fox"):
        files.labels_to_indices(["cat", "fox", "eel"], classes=["cat"], source="y.txt")
    assert files.labels_to_indices([], classes=["a"]).shape == (0,)
    assert files.check_labels(np.array([1.0, 0.0]), 2).dtype == np.int64
    assert files.check_labels(np.array([True, False])).tolist() == [1, 0]
    np.testing.assert_array_equal(files.check_labels(np.array([[1], [0]])), [1, 0])
    with pytest.raises(ValueError, match="integer class indices, got non-integer values"):
        files.check_labels(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="integer class indices, got dtype <U1"):
        files.check_labels(np.array(["a", "b"]))


def test_estimator_and_sweep_take_their_labels_from_the_same_path():
    from sea_kernels.train.estimator import SeAClassifier
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = (rng.standard_normal((3, 6))[y] * 2 + rng.standard_normal((60, 6))).astype(np.float32)
    clf = SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(x, torch.from_numpy(y * 2 + 1))
    assert clf.classes_.tolist() == [1, 3, 5]
    assert clf.score(x, list(y * 2 + 1)) == clf.score(x, y * 2 + 1)
    with pytest.raises(TypeError, match="y holds string labels but the classes are numbers"):
        clf.score(x, np.array(["a"] * 60))
    # labels of any sortable type: the estimator and the sweep share sortable_labels
    names = np.array(["cat", "dog", "eel"])[y]
    clf = SeAClassifier(epochs=1, lr=0.4, random_state=0).fit(x, names)
    assert clf.classes_.tolist() == ["cat", "dog", "eel"] and clf.classes_.dtype.kind == "U"
    assert clf.predict(x).dtype.kind == "U" and clf.score(x, names) > 0
