"""Is this device usable here? The one check of a `device=` argument: `SeAClassifier.fit`,
`sweep`, `train_many`, `SeAClassifier.load(device=...)` and the command line's ``--device`` all
call `check_device`, before any work.

    check_device("cuda")      # ValueError on a machine without CUDA, naming what is available
    available_devices()       # ["cpu", "cuda:0", ...]
"""
from __future__ import annotations

import torch

__all__ = ["available_devices", "device_problem", "check_device"]


def available_devices() -> list[str]:
    """The devices tensors can be put on here: cpu, then every visible CUDA device (and mps)."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def device_problem(dev: torch.device) -> str | None:
    """Why `dev` cannot be used here (one phrase), or None when it can."""
    if dev.type == "cpu":
        return None
    if dev.type == "meta":
        return "meta tensors hold no data to train on"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.version.cuda else "without"
            return f"CUDA is not available (this torch {torch.__version__} is built {built} CUDA)"
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"there {'is' if count == 1 else 'are'} only {count} CUDA device(s)"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else "MPS is not available"
    module = getattr(torch, dev.type, None)
    is_available = getattr(module, "is_available", None)
    if callable(is_available) and is_available():
        return None
    return f"no {dev.type} device is available"


def check_device(device, name: str = "device") -> torch.device:
    """`device` as a torch.device after checking it names a device usable here.

    ValueError naming `name`, the device and the available ones when it is no torch device
    ("gpu0"), or when it is one this machine does not have ("cuda" without CUDA, "cuda:3" with
    two GPUs).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{name} {device!r} is not a torch device ({exc}); available here: "
                         f"{', '.join(available_devices())}") from None
    why = device_problem(dev)
    if why is not None:
        raise ValueError(f"{name} {str(device)!r} is not usable here: {why}; available here: "
                         f"{', '.join(available_devices())}")
    return dev
