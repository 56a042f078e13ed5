"""Synthetic identity data for smoke runs and tests: no real faces needed.

Each identity is a random low-frequency colour pattern; its images are that pattern with
a small random shift and pixel noise, so identities are learnable but not trivial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .data import ArrayImages

__all__ = ["synthetic_images", "synthetic_source", "write_identity_folders"]


def synthetic_images(n_identities: int, n_images: int, size: int = 32,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n_identities * n_images, size, size, 3)`` uint8 images and their labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for ident in range(n_identities):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        pattern = np.asarray(Image.fromarray(base).resize((size + 8, size + 8),
                                                          Image.Resampling.BILINEAR),
                             dtype=np.float32)
        for _ in range(n_images):
            dy, dx = rng.integers(0, 9, 2)
            crop = pattern[dy:dy + size, dx:dx + size]
            noisy = crop + rng.normal(0, 12, crop.shape)
            images.append(np.clip(noisy, 0, 255).astype(np.uint8))
            labels.append(ident)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_identity_folders(root: str | Path, n_identities: int = 8, n_images: int = 6,
                           size: int = 32, seed: int = 0) -> Path:
    """Write ``root/id_XXX/img_YY.png`` and return ``root``."""
    root = Path(root)
    images, labels = synthetic_images(n_identities, n_images, size, seed)
    counts: dict[int, int] = {}
    for img, lab in zip(images, labels):
        k = counts.get(int(lab), 0)
        counts[int(lab)] = k + 1
        folder = root / f"id_{int(lab):03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img_{k:02d}.png")
    return root


def synthetic_source(n_identities: int = 8, n_images: int = 6, size: int = 32,
                     seed: int = 0):
    """The images of :func:`synthetic_images` as an in-memory image source
    (:class:`~xcos_xai.training.data.ArrayImages`): the same pixels and labels, in the same
    order, as :class:`~xcos_xai.data.folders.IdentityFolders` reads back from
    :func:`write_identity_folders` with the same arguments, without files or decoding."""
    return ArrayImages(*synthetic_images(n_identities, n_images, size, seed))
