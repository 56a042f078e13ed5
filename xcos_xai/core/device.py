"""Where models and faces run: ``--device`` of ``xcos-xai explain`` and ``compare``."""

from __future__ import annotations

import os

import torch

__all__ = ["resolve_device"]


def resolve_device(preference: str = "auto") -> str:
    """``"auto"``: CUDA when present, else the CPU; under torchrun (``WORLD_SIZE > 1``) a
    CUDA rank takes GPU ``LOCAL_RANK``. Asking for CUDA without it is one clear error.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} asked but CUDA is not available: install "
                             "a CUDA build of PyTorch or pass --device cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return preference if ":" in preference else "cuda:0"
    return preference
