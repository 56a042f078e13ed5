"""Training checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint is one ``torch.save`` file of plain data (tensors, numbers, strings, lists and
dicts: model, optimisers, gradient scaler, schedule, sampler position, RNG states, the
configuration). It is written to a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the old one with ``os.replace`` (and the folder is synced), so
a crash or ``SIGKILL`` at any moment leaves either the previous complete checkpoint or the
new complete one, never a torn file. Reading uses ``torch.load(weights_only=True)``: a
checkpoint that asks for code is refused. The writing is :mod:`xcos_xai._io`'s, the error
class :class:`~xcos_xai.models.checkpoints.CheckpointError` (one for every checkpoint).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .._io import atomic_torch_save, remove_stale_tmp
from ..models.checkpoints import CheckpointError

__all__ = ["CheckpointError", "atomic_torch_save", "load_checkpoint", "remove_stale_tmp"]

FORMAT = "xcos_xai.train/1"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint written by :func:`atomic_torch_save` (weights-only load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: give the run's "
                                "checkpoints/last.pt, or start without --resume")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile,
            OSError, ValueError, AttributeError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(err).__name__}"
                              f": {str(err)[:200]}): it is damaged or not a weights-only "
                              "xcos_xai training checkpoint") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xcos_xai training checkpoint (format "
                              f"{FORMAT!r}); for backbone weights use model.pretrained")
    return obj
