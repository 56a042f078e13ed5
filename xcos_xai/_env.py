"""Where the project finds data and keeps its caches.

Nothing is ever downloaded: data sets are read from the directory named by the
``XCOS_XAI_DATA`` environment variable, caches live under ``XCOS_XAI_CACHE``
(default ``~/.cache/xcos_xai``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "XCOS_XAI_DATA"
CACHE_ENV = "XCOS_XAI_CACHE"


class DataNotFoundError(FileNotFoundError):
    """The data directory, or a data set inside it, is missing."""


def data_dir(required: bool = True) -> Path | None:
    """The data directory (holding e.g. ``lfw/`` and ``att_faces/``).

    Returns ``None`` when the variable is unset and ``required`` is false; otherwise a
    missing or wrong directory raises one clear :class:`DataNotFoundError`.
    """
    value = os.environ.get(DATA_ENV)
    if not value:
        if not required:
            return None
        raise DataNotFoundError(
            f"{DATA_ENV} is not set: point it at the folder that holds your data sets, "
            f"e.g. `export {DATA_ENV}=/path/to/data` with LFW in /path/to/data/lfw."
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        if not required:
            return None
        raise DataNotFoundError(f"{DATA_ENV}={value!r} is not a directory: set it to the folder "
                                "that holds your data sets (e.g. lfw/).")
    return path


def dataset_dir(name: str, required: bool = True) -> Path | None:
    """``<data dir>/<name>``, e.g. ``dataset_dir("lfw")``, with one clear error when absent."""
    root = data_dir(required=required)
    if root is None:
        return None
    path = root / name
    if not path.is_dir():
        if not required:
            return None
        raise DataNotFoundError(f"data set {name!r} not found at {path}: put it there or point "
                                f"{DATA_ENV} at the folder that holds it.")
    return path


def cache_dir() -> Path:
    """The cache root (created on demand)."""
    path = Path(os.environ.get(CACHE_ENV, "~/.cache/xcos_xai")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
