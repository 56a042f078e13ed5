"""Where models and faces run: ``--device`` of ``xcos-xai evaluate``, ``demo``, ``explain``
and ``compare``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["full_float32", "resolve_device"]


def resolve_device(preference: str = "auto") -> str:
    """``"auto"``: CUDA when present, else the CPU; under torchrun (``WORLD_SIZE > 1``) a
    CUDA rank takes GPU ``LOCAL_RANK``. Asking for CUDA without it, or a name torch does not
    know, is one clear error naming ``--device`` and the fix.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    preference = str(preference).strip().lower()
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(preference)
    except RuntimeError:
        raise ValueError(f"--device {preference!r} is not a device: pass auto (CUDA when "
                         "present), cpu, cuda or cuda:N") from None
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {preference} asked but CUDA is not available (this "
                             f"PyTorch {torch.__version__} sees no CUDA GPU): pass --device "
                             "cpu (or auto), or install a CUDA build of PyTorch and its driver")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return preference if ":" in preference else "cuda:0"
    return preference


@contextmanager
def full_float32() -> Iterator[None]:
    """Plain float32 arithmetic inside the block: TF32 off for CUDA matmuls and cuDNN
    convolutions (Ampere and later GPUs use TF32 for convolutions by default), restored on
    exit. The evaluation numbers are float32 on every device; no-op on the CPU.

    Example:
        >>> with full_float32():
        ...     torch.backends.cudnn.allow_tf32
        False
    """
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
