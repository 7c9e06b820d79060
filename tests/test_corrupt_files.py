"""Corrupt files: every load verifies what it reads and raises a ValueError
(data.errors.BadFileError) naming the file and what is wrong — truncated model/checkpoint files at
several lengths, 64 bytes overwritten in the middle, a payload that no longer matches its
SHA-256, NaN weights, a wrong tag, missing keys and shapes that disagree, old-format files with
bad content; truncated and damaged feature files of every format. A sound file still
round-trips and resumes exactly."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from test_checkpoint import KW, _toy

from sea_kernels.data import files, writers
from sea_kernels.data.errors import BadFileError
from sea_kernels.train import checkpoint as ck
from sea_kernels.train.estimator import SeAClassifier


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    """A model file and a checkpoint after 1 of 3 epochs, their bytes, and the data."""
    d = tmp_path_factory.mktemp("sound")
    X, y = _toy()
    clf = SeAClassifier(epochs=1, **KW).fit(X, y, checkpoint=d / "ckpt.pt")
    clf.save(d / "model.pt")
    return {"X": X, "y": y, "clf": clf, "model": (d / "model.pt").read_bytes(),
            "ckpt": (d / "ckpt.pt").read_bytes()}


def _load_model(path):
    return SeAClassifier.load(path)


def _resume(path, sound):
    return SeAClassifier(epochs=3, **KW).fit(sound["X"], sound["y"], checkpoint=path)


def _named(exc_info, path):
    msg = str(exc_info.value)
    assert str(path) in msg, msg
    assert isinstance(exc_info.value, ValueError)
    return msg


def _rewrap(blob: bytes, edit) -> dict:
    """The outer dict of a verified file, after `edit(outer)`."""
    outer = torch.load(io.BytesIO(blob), weights_only=True)
    edit(outer)
    return outer


def _content(blob: bytes) -> dict:
    outer = torch.load(io.BytesIO(blob), weights_only=True)
    return torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)


# ---------------------------------------------------------------- truncation and overwriting
@pytest.mark.parametrize("kind", ["model", "ckpt"])
@pytest.mark.parametrize("keep", [0, 1, 8, 100, 0.25, 0.5, 0.9, -1])
def test_truncated_file_is_named(tmp_path, sound, kind, keep):
    blob = sound[kind]
    n = keep if isinstance(keep, int) and keep >= 0 else (
        len(blob) - 1 if keep == -1 else int(len(blob) * keep))
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(blob[:n])
    load = _load_model if kind == "model" else (lambda p: _resume(p, sound))
    with pytest.raises(BadFileError) as e:
        load(path)
    msg = _named(e, path)
    assert "truncated" in msg or "corrupt" in msg
    assert path.read_bytes() == blob[:n]                  # a failed resume leaves it alone


@pytest.mark.parametrize("kind", ["model", "ckpt"])
@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_64_bytes_overwritten_are_caught(tmp_path, sound, kind, where):
    blob = sound[kind]
    at = int(len(blob) * where)
    bad = blob[:at] + bytes(b ^ 0x5A for b in blob[at:at + 64]) + blob[at + 64:]
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(bad)
    with pytest.raises(BadFileError) as e:
        _load_model(path) if kind == "model" else _resume(path, sound)
    assert "corrupt" in _named(e, path)
    if kind == "ckpt":
        with pytest.raises(BadFileError):
            ck.read_checkpoint(path)


@pytest.mark.parametrize("kind", ["model", "ckpt"])
def test_payload_changed_under_an_intact_zip_fails_the_checksum(tmp_path, sound, kind):
    """The zip CRCs are recomputed (the file re-saved), so only the SHA-256 catches the change."""
    def flip(outer):
        p = outer["payload"].clone()
        p[len(p) // 2] ^= 1
        outer["payload"] = p

    path = tmp_path / f"{kind}.pt"
    torch.save(_rewrap(sound[kind], flip), path)
    with pytest.raises(BadFileError, match="SHA-256 checksum of its content does not match") as e:
        _load_model(path) if kind == "model" else _resume(path, sound)
    _named(e, path)

    def shorten(outer):
        outer["payload"] = outer["payload"][:-10]

    torch.save(_rewrap(sound[kind], shorten), path)
    with pytest.raises(BadFileError, match="the payload holds .* bytes, the header says"):
        _load_model(path) if kind == "model" else _resume(path, sound)


# ---------------------------------------------------------------- content checks
def _save_content(path, content, tag):
    writers.save_verified(content, path, tag=tag)          # a valid checksum over bad content


def test_nan_weights_are_refused(tmp_path, sound):
    clf = sound["clf"]
    bad = SeAClassifier(epochs=1, **KW).fit(sound["X"], sound["y"])
    bad.W_ = clf.W_.clone()
    bad.W_[2, 1] = float("nan")
    bad.save(tmp_path / "m.pt")                            # written fine, checksum and all
    with pytest.raises(BadFileError, match=r"holds non-finite weights \(1 NaN/Inf values") as e:
        SeAClassifier.load(tmp_path / "m.pt")
    _named(e, tmp_path / "m.pt")
    content = _content(sound["ckpt"])
    content["W"][0, 0] = float("inf")
    _save_content(tmp_path / "c.pt", content, ck.FORMAT_CKPT)
    with pytest.raises(BadFileError, match="non-finite weights") as e:
        _resume(tmp_path / "c.pt", sound)
    _named(e, tmp_path / "c.pt")
    content = _content(sound["ckpt"])
    for entry in content["optimizer"]["state"].values():
        entry["momentum_buffer"][0, 0] = float("nan")
    _save_content(tmp_path / "c2.pt", content, ck.FORMAT_CKPT)
    with pytest.raises(BadFileError, match="non-finite values in the optimizer"):
        _resume(tmp_path / "c2.pt", sound)


@pytest.mark.parametrize("kind", ["model", "ckpt"])
def test_wrong_tag_or_version_is_refused(tmp_path, sound, kind):
    path = tmp_path / f"{kind}.pt"
    want = ("is not a saved SeAClassifier" if kind == "model"
            else "is not a SeAClassifier training checkpoint")
    tag = ck.FORMAT_MODEL if kind == "model" else ck.FORMAT_CKPT
    newer = tag.rsplit("/", 1)[0] + "/99"
    torch.save(_rewrap(sound[kind], lambda o: o.update(format=newer)), path)
    with pytest.raises(BadFileError, match=f"{want}.*another version of sea_kernels") as e:
        _load_model(path) if kind == "model" else _resume(path, sound)
    _named(e, path)
    torch.save(_rewrap(sound[kind], lambda o: o.update(format="something.else/1")), path)
    with pytest.raises(BadFileError, match=want):
        _load_model(path) if kind == "model" else _resume(path, sound)
    torch.save(_rewrap(sound[kind], lambda o: o.update(container="zip/0")), path)
    with pytest.raises(BadFileError, match=want):
        _load_model(path) if kind == "model" else _resume(path, sound)
    # the other kind of file
    other = sound["ckpt" if kind == "model" else "model"]
    path.write_bytes(other)
    with pytest.raises(BadFileError, match=want):
        _load_model(path) if kind == "model" else _resume(path, sound)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("classes"), "lacks the entry 'classes'"),
    (lambda c: c.update(W=c["W"][:, :2]), "records 3 classes .* for the 2 columns"),
    (lambda c: c.update(feature_dims=[5]), r"feature_dims \[5\] do not add up to the 8 rows"),
    (lambda c: c.update(n_features_in=9), "n_features_in=9"),
    (lambda c: c.update(W=c["W"].long()), "expected a non-empty 2-D float tensor"),
    (lambda c: c.update(seed=-1), r"seed -1 is outside \[0, 2\*\*64\)"),
    (lambda c: c.update(classes=[0, 0, 1]), "2 distinct"),
    (lambda c: c["params"].update(lr=-1.0), r"holds invalid parameters \(lr must be > 0"),
    (lambda c: c["params"].update(bogus=1), "holds invalid parameters"),
])
def test_model_content_is_checked(tmp_path, sound, edit, match):
    content = _content(sound["model"])
    edit(content)
    path = tmp_path / "m.pt"
    _save_content(path, content, ck.FORMAT_MODEL)
    with pytest.raises(BadFileError, match=match) as e:
        SeAClassifier.load(path)
    _named(e, path)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("optimizer"), "lacks the entry 'optimizer'"),
    (lambda c: c.update(history=[]), "says 1 epochs done but holds 0 history records"),
    (lambda c: c.update(generator=c["generator"][:10]), "the generator state"),
    (lambda c: c.update(feature_dims=[4, 5]), "do not add up"),
    (lambda c: c.update(classes=[0, 1]), "records 2 classes"),
    (lambda c: [e.update(momentum_buffer=torch.zeros(2, 2))
                for e in c["optimizer"]["state"].values()], "momentum buffer does not have"),
    (lambda c: c.update(epoch="1"), "entry 'epoch' is str, expected an int"),
])
def test_checkpoint_content_is_checked(tmp_path, sound, edit, match):
    content = _content(sound["ckpt"])
    edit(content)
    path = tmp_path / "c.pt"
    _save_content(path, content, ck.FORMAT_CKPT)
    with pytest.raises(BadFileError, match=match) as e:
        _resume(path, sound)
    _named(e, path)


def test_me_ada_rows_that_do_not_fit_are_refused(tmp_path):
    X, y = _toy()
    kw = dict(KW, augment="me_ada", epochs=3, me_ada_rounds=2)
    SeAClassifier(**kw).fit(X, y, checkpoint=tmp_path / "c.pt")
    content = ck.read_checkpoint(tmp_path / "c.pt")
    content["augmentation"]["x"] = content["augmentation"]["x"][:, :5]
    _save_content(tmp_path / "c.pt", content, ck.FORMAT_CKPT)
    with pytest.raises(BadFileError, match="appended training rows do not fit"):
        SeAClassifier(**{**kw, "epochs": 4}).fit(X, y, checkpoint=tmp_path / "c.pt")


def test_old_format_files_are_verified_too(tmp_path, sound):
    content = _content(sound["model"])
    content["format"] = ck.FORMAT_MODEL_V1
    content["W"][0, 0] = float("nan")
    torch.save(content, tmp_path / "m1.pt")
    with pytest.raises(BadFileError, match="non-finite weights"):
        SeAClassifier.load(tmp_path / "m1.pt")
    content = _content(sound["ckpt"])
    content["format"] = ck.FORMAT_CKPT_V2
    content.pop("fingerprint")
    torch.save(content, tmp_path / "c2.pt")
    with pytest.raises(BadFileError, match="lacks the entry 'fingerprint'"):
        _resume(tmp_path / "c2.pt", sound)
    content = _content(sound["ckpt"])
    content["format"] = ck.FORMAT_CKPT_V2
    torch.save(content, tmp_path / "c2.pt")
    assert len(_resume(tmp_path / "c2.pt", sound).history_) == 3   # sound old files resume


def test_sound_files_round_trip_and_resume_exactly(tmp_path, sound):
    path = tmp_path / "model.pt"
    path.write_bytes(sound["model"])
    back = SeAClassifier.load(path)
    assert torch.equal(back.W_, sound["clf"].W_)
    np.testing.assert_array_equal(back.predict(sound["X"]), sound["clf"].predict(sound["X"]))
    cpath = tmp_path / "ckpt.pt"
    cpath.write_bytes(sound["ckpt"])
    resumed = _resume(cpath, sound)
    full = SeAClassifier(epochs=3, **KW).fit(sound["X"], sound["y"])
    assert torch.equal(resumed.W_, full.W_) and resumed.history_ == full.history_


def test_missing_or_folder_model_is_named(tmp_path):
    with pytest.raises(BadFileError, match="not found"):
        SeAClassifier.load(tmp_path / "nope.pt")
    with pytest.raises(BadFileError, match="is a directory"):
        SeAClassifier.load(tmp_path)


# ---------------------------------------------------------------- feature files
@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16)).astype(np.float32)
    y = np.arange(40) % 4
    np.save(d / "f.npy", x)
    np.savez(d / "f.npz", x=x, y=y)
    np.savez_compressed(d / "fc.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, d / "f.pt")
    out = {"f.npy": (d / "f.npy").read_bytes(), "f.npz": (d / "f.npz").read_bytes(),
           "fc.npz": (d / "fc.npz").read_bytes(), "f.pt": (d / "f.pt").read_bytes()}
    try:
        from safetensors.numpy import save_file
        save_file({"x": x, "y": y}, str(d / "f.safetensors"))
        out["f.safetensors"] = (d / "f.safetensors").read_bytes()
    except ImportError:
        pass
    np.save(d / "y.npy", y)
    out["labels"] = d / "y.npy"
    return out


def _read(path, feature_files):
    labels = feature_files["labels"] if path.suffix == ".npy" else None
    return files.load_dataset(path, labels)


@pytest.mark.parametrize("name", ["f.npy", "f.npz", "fc.npz", "f.pt", "f.safetensors"])
@pytest.mark.parametrize("keep", [0, 4, 9, 0.3, 0.6, -1])
def test_truncated_feature_file_is_named(tmp_path, feature_files, name, keep):
    if name not in feature_files:
        pytest.skip("safetensors is not installed")
    blob = feature_files[name]
    n = keep if isinstance(keep, int) and keep >= 0 else (
        len(blob) - 1 if keep == -1 else int(len(blob) * keep))
    path = tmp_path / name
    path.write_bytes(blob[:n])
    with pytest.raises(BadFileError) as e:
        _read(path, feature_files)
    _named(e, path)


@pytest.mark.parametrize("name", ["f.npz", "fc.npz", "f.pt"])
def test_zip_crc_errors_are_named(tmp_path, feature_files, name):
    """Bytes overwritten inside the stored arrays: the zip CRC-32 of .npz (when the array is
    read) and of .pt (checked before torch.load, which does not) catch them."""
    blob = feature_files[name]
    at = len(blob) // 2
    path = tmp_path / name
    path.write_bytes(blob[:at] + bytes(b ^ 0x33 for b in blob[at:at + 64]) + blob[at + 64:])
    with pytest.raises(BadFileError) as e:
        _read(path, feature_files)
    msg = _named(e, path)
    assert "CRC" in msg or "corrupt" in msg or "cannot read" in msg


def test_safetensors_header_that_does_not_fit_is_named(tmp_path, feature_files):
    if "f.safetensors" not in feature_files:
        pytest.skip("safetensors is not installed")
    import json
    import struct
    blob = feature_files["f.safetensors"]
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["x"]["shape"] = [40, 17]                        # more bytes than its offsets span
    text = json.dumps(header).encode()
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob[8 + n:])
    with pytest.raises(BadFileError, match=r"corrupt safetensors header \(tensor 'x'") as e:
        _read(path, feature_files)
    _named(e, path)
    path.write_bytes(struct.pack("<Q", 10 ** 9) + blob[8:])
    with pytest.raises(BadFileError, match="its header claims"):
        _read(path, feature_files)


def test_unreadable_feature_file_is_named(tmp_path, feature_files, monkeypatch):
    path = tmp_path / "f.npz"
    path.write_bytes(feature_files["f.npz"])
    monkeypatch.setattr(files.os, "access", lambda p, mode: False)
    with pytest.raises(BadFileError, match="cannot be read \\(permission denied\\)") as e:
        _read(path, feature_files)
    _named(e, path)
