"""train.checkpoint: the training checkpoint and the saved model — their errors (not a checkpoint,
a corrupt file, other parameters, other data, too many epochs), the earlier formats (checkpoint
/1 and /2, model /1: plain dicts), and that every file goes through data.writers.save_verified
(tag, version, SHA-256). The corruption cases are in test_corrupt_files.py."""
import numpy as np
import pytest
import torch

from sea_kernels.data.errors import BadFileError
from sea_kernels.train import checkpoint as ck
from sea_kernels.train.estimator import SeAClassifier


def _toy(n=60, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = (rng.standard_normal((c, d))[y] * 2 + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


KW = dict(lr=0.4, eta=0.4, random_state=0, backend="torch", batch_size=16)


@pytest.fixture()
def saved(tmp_path):
    X, y = _toy()
    path = tmp_path / "run.pt"
    SeAClassifier(epochs=1, **KW).fit(X, y, checkpoint=path)
    return X, y, path


def test_checkpoint_content(saved):
    _, _, path = saved
    outer = torch.load(path, weights_only=True)            # loadable with weights_only=True
    assert outer["format"] == ck.FORMAT_CKPT == "sea_kernels.SeAClassifier.checkpoint/3"
    assert outer["container"] == "sea_kernels.sha256/1" and len(outer["sha256"]) == 64
    assert outer["size"] == outer["payload"].numel() and outer["payload"].dtype == torch.uint8
    raw = ck.read_checkpoint(path)
    assert raw["format"] == ck.FORMAT_CKPT and raw["epoch"] == 1 and raw["seed"] == 0
    assert set(raw) >= {"params", "W", "optimizer", "generator", "augmentation", "history",
                        "fingerprint", "classes", "feature_dims"}
    assert raw["classes"] == [0, 1, 2] and raw["feature_dims"] == [8]


def test_files_that_are_no_checkpoint_are_refused(saved, tmp_path):
    X, y, path = saved
    torch.save({"W": torch.zeros(2)}, tmp_path / "dict.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    model = tmp_path / "model.pt"
    SeAClassifier(epochs=1, **KW).fit(X, y).save(model)
    for bad in (tmp_path / "dict.pt", tmp_path / "tensor.pt", model):
        with pytest.raises(ValueError, match="is not a SeAClassifier training checkpoint"):
            SeAClassifier(epochs=2, **KW).fit(X, y, checkpoint=bad)
    with pytest.raises(ValueError, match="is not a saved SeAClassifier"):
        SeAClassifier.load(path)                           # a checkpoint is no model
    with pytest.raises(ValueError, match="is not a saved SeAClassifier"):
        SeAClassifier.load(tmp_path / "dict.pt")


def test_corrupt_checkpoint_raises_and_is_left_alone(saved):
    X, y, path = saved
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BadFileError, match=f"checkpoint '{path}' cannot be read: it is truncated"):
        SeAClassifier(epochs=2, **KW).fit(X, y, checkpoint=path)
    assert path.read_bytes() == blob[: len(blob) // 2]     # not overwritten by the failed run


@pytest.mark.parametrize("change, match", [
    ({"lr": 0.2}, "written with lr=0.4, this run has lr=0.2"),
    ({"eta": 0.0}, "written with eta=0.4, this run has eta=0.0"),
    ({"augment": "none"}, "written with augment='sea', this run has augment='none'"),
    ({"random_state": 1}, "written with random_state=0, this run has random_state=1"),
    ({"batch_size": 8}, "batch_size=16, this run has batch_size=8"),
])
def test_other_training_parameters_are_refused(saved, change, match):
    X, y, path = saved
    with pytest.raises(ValueError, match=match):
        SeAClassifier(epochs=2, **{**KW, **change}).fit(X, y, checkpoint=path)


def test_resume_free_parameters_may_change(saved):
    X, y, path = saved
    assert set(ck.RESUME_FREE) == {"epochs", "backend", "device", "verbose", "compile"}
    clf = SeAClassifier(epochs=2, **{**KW, "backend": "auto", "random_state": None}).fit(
        X, y, checkpoint=path)
    assert clf.seed_ == 0 and len(clf.history_) == 2


@pytest.mark.parametrize("how", ["fewer rows", "other order", "other labels", "other classes"])
def test_other_data_is_refused(saved, how):
    X, y, path = saved
    if how == "fewer rows":
        X, y = X[:50], y[:50]
    elif how == "other order":
        X, y = X[::-1].copy(), y[::-1].copy()
    elif how == "other labels":
        y = y.copy()
        y[[0, 1]] = y[[1, 0]] if y[0] != y[1] else (y[[0, 1]] + 1) % 3
    else:
        y = y + 10
    with pytest.raises(ValueError, match="different training data"):
        SeAClassifier(epochs=2, **KW).fit(X, y, checkpoint=path)


def test_more_epochs_than_asked_is_refused(saved):
    X, y, path = saved
    SeAClassifier(epochs=3, **KW).fit(X, y, checkpoint=path)
    with pytest.raises(ValueError, match="already holds 3 epochs, more than epochs=2"):
        SeAClassifier(epochs=2, **KW).fit(X, y, checkpoint=path)


def test_fingerprint():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(20, 4, generator=g), dim=1)
    labels = torch.arange(20) % 3
    fp = ck.fingerprint(x, labels, np.array([0, 1, 2]))
    assert fp[:3] == [20, 4, 3] and fp[7] == [0, 1, 2]
    assert ck.same_fingerprint(fp, ck.fingerprint(x * (1 + 1e-9), labels, np.array([0, 1, 2])))
    assert not ck.same_fingerprint(fp, ck.fingerprint(x.flip(0), labels, np.array([0, 1, 2])))
    assert not ck.same_fingerprint(fp, ck.fingerprint(x, labels.flip(0), np.array([0, 1, 2])))
    assert not ck.same_fingerprint(fp, ck.fingerprint(x, labels, np.array([0, 1, 5])))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("augment", ["isda", "rand", "me_ada"])
@pytest.mark.parametrize("old", [ck.FORMAT_CKPT_V1, ck.FORMAT_CKPT_V2])
def test_earlier_format_checkpoints_still_resume(tmp_path, monkeypatch, augment, old):
    """A checkpoint of format /1 (augmentation state in top-level keys) or /2 (a plain dict, no
    checksum) resumes exactly, and is rewritten in the current format."""
    X, y = _toy()
    kw = dict(KW, augment=augment, epochs=4, me_ada_rounds=2)
    full = SeAClassifier(**kw).fit(X, y)
    path = tmp_path / "v1.pt"
    run_epoch = SeAClassifier._run_epoch

    def stop_at_2(self, epoch, *a, **k):
        if epoch == 2:
            raise _Stop
        return run_epoch(self, epoch, *a, **k)

    monkeypatch.setattr(SeAClassifier, "_run_epoch", stop_at_2)
    with pytest.raises(_Stop):
        SeAClassifier(**kw).fit(X, y, checkpoint=path)
    monkeypatch.setattr(SeAClassifier, "_run_epoch", run_epoch)
    raw = ck.read_checkpoint(path)
    assert raw["epoch"] == 2
    if old == ck.FORMAT_CKPT_V1:
        aug = raw.pop("augmentation")
        raw.update(aug_gen=aug.get("generator"), isda=aug.get("estimator"),
                   extra_x=aug.get("x"), extra_y=aug.get("y"))
    raw["format"] = old
    torch.save(raw, path)                                   # the plain dict of the old format
    assert ck.read_checkpoint(path)["epoch"] == 2
    resumed = SeAClassifier(**kw).fit(X, y, checkpoint=path)
    assert torch.equal(resumed.W_, full.W_) and resumed.history_ == full.history_
    assert torch.load(path, weights_only=True)["format"] == ck.FORMAT_CKPT


def test_first_format_model_still_loads(tmp_path):
    X, y = _toy()
    clf = SeAClassifier(epochs=1, **KW).fit(X, y)
    clf.save(tmp_path / "m.pt")
    raw = ck.read_model(tmp_path / "m.pt")
    raw.update(format=ck.FORMAT_MODEL_V1, classes=raw["classes"].tolist())
    torch.save(raw, tmp_path / "v1.pt")                     # the plain dict of format /1
    back = SeAClassifier.load(tmp_path / "v1.pt")
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    assert torch.equal(back.W_, clf.W_) and back.classes_.dtype == clf.classes_.dtype


def test_every_file_is_written_by_save_verified(tmp_path, monkeypatch):
    X, y = _toy()
    written = []
    real = ck.save_verified

    def spy(obj, path, *, tag):
        assert obj["format"] == tag
        written.append((obj["format"], path))
        return real(obj, path, tag=tag)

    monkeypatch.setattr(ck, "save_verified", spy)
    clf = SeAClassifier(epochs=3, **KW).fit(X, y, checkpoint=tmp_path / "c.pt",
                                            checkpoint_every=2)
    clf.save(tmp_path / "m.pt")
    assert [f for f, _ in written] == [ck.FORMAT_CKPT, ck.FORMAT_CKPT, ck.FORMAT_MODEL]
    back = SeAClassifier.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "m.pt"]   # no temp files


def test_model_saved_on_cuda_loads_on_cpu_with_a_warning(tmp_path, monkeypatch):
    X, y = _toy()
    clf = SeAClassifier(epochs=1, **KW).fit(X, y)
    clf.device = "cuda:0"                                 # as if saved from a GPU run
    clf.save(tmp_path / "m.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="no CUDA here, loading on CPU") as rec:
        back = SeAClassifier.load(tmp_path / "m.pt")
    assert back.device == "cpu" and rec[0].filename == __file__
    assert SeAClassifier.load(tmp_path / "m.pt", device="cpu").device == "cpu"
