"""Face data sets as identity folders (the CASIA-WebFace / ImageFolder layout).

``root/<identity>/<image>``: one sub-folder per person, holding that person's aligned face
images (JPEG, PNG, BMP, WebP). Identities are the sub-folder names, sorted; labels are
0 .. ``num_classes - 1`` in that order. Also: LFW people as an image source (photos that are
aligned on the fly by :class:`~xcos_xai.data.align.FaceAligner`, with its chip cache).

An image source has ``labels`` (``(N,)`` int64), ``num_classes``, ``__len__``,
``load(i) -> (H, W, 3) uint8 RGB`` and ``describe(i)``; the training engine takes any.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .align import lfw_aligner
from .images import load_image

__all__ = ["IMAGE_EXTENSIONS", "IdentityFolders", "LFWPeople"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class IdentityFolders:
    """Aligned faces in identity folders.

    Args:
        root: the folder holding one sub-folder per identity.
        min_images: skip identities with fewer images (e.g. 2 to allow genuine pairs
            for every anchor).
        extensions: image file suffixes accepted (case-insensitive).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: fewer than 2 identities (or no images) after filtering.
    """

    def __init__(self, root: str | os.PathLike, min_images: int = 1,
                 extensions: Iterable[str] = IMAGE_EXTENSIONS):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"identity-folder data set {self.root} is not a folder: "
                                    "give the folder holding one sub-folder per person")
        if int(min_images) != min_images or min_images < 1:
            raise ValueError(f"min_images={min_images!r}: give an integer >= 1")
        ext = tuple(e.lower() for e in extensions)
        paths, labels, names = [], [], []
        for person in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(f for f in person.iterdir()
                           if f.is_file() and f.suffix.lower() in ext)
            if len(files) < min_images:
                continue
            labels.extend([len(names)] * len(files))
            names.append(person.name)
            paths.extend(files)
        if len(names) < 2:
            raise ValueError(f"{self.root} has {len(names)} identity folder(s) with at least "
                             f"{min_images} image(s) ({', '.join(ext)}): training pairs need "
                             "at least 2 identities in root/<identity>/<image> layout")
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.identities = names
        self.num_classes = len(names)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"IdentityFolders({str(self.root)!r}: {len(self)} images of "
                f"{self.num_classes} identities)")

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def load(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])


class LFWPeople:
    """LFW people as a training source: photos aligned by a :class:`FaceAligner` (cached).

    Args:
        lfw: an :class:`~xcos_xai.data.lfw.LFW`.
        folds: ``people.txt`` folds (0-9) whose people are used; ``None`` for all.
        min_images: keep people with at least this many images.
        aligner: a ``FaceAligner``; default :func:`~xcos_xai.data.align.lfw_aligner` (the shared
            chip cache).
    """

    def __init__(self, lfw, folds: Iterable[int] | None = None, min_images: int = 1,
                 aligner=None):
        wanted = None if folds is None else {int(f) for f in folds}
        people = sorted((name, count) for fold, name, count in lfw.people()
                        if (wanted is None or fold in wanted) and count >= min_images)
        if len(people) < 2:
            raise ValueError(f"LFW folds {sorted(wanted) if wanted else 'all'} have "
                             f"{len(people)} people with >= {min_images} images: need 2")
        self.identities = [name for name, _ in people]
        self.paths = [lfw.image_path(name, i) for name, count in people
                      for i in range(1, count + 1)]
        self.labels = np.asarray([k for k, (_, count) in enumerate(people)
                                  for _ in range(count)], dtype=np.int64)
        self.num_classes = len(people)
        self.aligner = aligner or lfw_aligner()

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def load(self, i: int) -> np.ndarray:
        return self.aligner(self.paths[i]).chip
