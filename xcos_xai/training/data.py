"""Training and validation data for the engine: image sources, pair data sets, val sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.align import faces_to_tensor, lfw_aligner
from ..data.folders import IdentityFolders, LFWPeople
from ..data.insightface import RecordFaces, read_bin
from ..data.lfw import LFW

__all__ = ["ArrayImages", "PairDataset", "PairList", "build_source", "build_val_set", "to_chip"]


def to_chip(image: np.ndarray, size: tuple[int, int], flip: bool = False) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB to a ``(3, size)`` uint8 tensor (bilinear resize if needed)."""
    if image.shape[:2] != tuple(size):
        image = np.asarray(Image.fromarray(image).resize((size[1], size[0]),
                                                         Image.Resampling.BILINEAR))
    if flip:
        image = image[:, ::-1]
    return torch.from_numpy(np.array(image, order="C")).permute(2, 0, 1).contiguous()


def build_source(data_cfg):
    """The training images of ``[data]``: identity folders, ``train.rec`` or LFW people."""
    if data_cfg.format == "folders":
        return IdentityFolders(data_cfg.root, min_images=data_cfg.min_images)
    if data_cfg.format == "rec":
        return RecordFaces(data_cfg.root)
    return LFWPeople(LFW(data_cfg.root or None), folds=data_cfg.lfw_folds or None,
                     min_images=data_cfg.min_images)


class ArrayImages:
    """An image source held in memory: ``(N, H, W, 3)`` uint8 RGB images and their labels.

    For synthetic data (:func:`~xcos_xai.training.synthetic.synthetic_source`) and small
    sets that fit in memory: no files and no decoding. Besides the image-source interface
    (``labels``, ``num_classes``, ``len``, ``load(i)``, ``describe(i)``) it has
    :meth:`chips`, all images as one chip tensor, which :class:`PairDataset` indexes a
    whole batch at a time.

    Args:
        images: ``(N, H, W, 3)`` uint8 array (kept, not copied).
        labels: ``(N,)`` integer labels ``0 .. num_classes - 1``.

    Raises:
        ValueError: wrong shapes or dtype, or fewer than 2 classes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images of shape {images.shape} and dtype {images.dtype}: give "
                             "an (N, H, W, 3) uint8 RGB array")
        if labels.shape != (len(images),) or (len(labels) and labels.min() < 0):
            raise ValueError(f"labels of shape {labels.shape}: give {len(images)} integer "
                             "labels >= 0, one per image")
        self.images, self.labels = images, labels
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0
        if self.num_classes < 2:
            raise ValueError(f"{self.num_classes} class(es): training pairs need at least 2")
        self._chips: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"ArrayImages({len(self)} images {self.images.shape[1]}x"
                f"{self.images.shape[2]} of {self.num_classes} identities)")

    def describe(self, i: int) -> str:
        return f"in-memory image {i} (label {int(self.labels[i])})"

    def load(self, i: int) -> np.ndarray:
        return self.images[i]

    def chips(self, size: tuple[int, int]) -> torch.Tensor:
        """All images as one ``(N, 3, *size)`` uint8 tensor (made once per size, then cached);
        the same pixels as :func:`to_chip` gives image by image."""
        size = tuple(int(v) for v in size)
        if size not in self._chips:
            if self.images.shape[1:3] == size:
                chips = faces_to_tensor(self.images)
                self._chips[size] = chips.contiguous()
            else:
                self._chips[size] = torch.stack([to_chip(im, size) for im in self.images])
        return self._chips[size]


class PairDataset(torch.utils.data.Dataset):
    """Items ``(a, b, flip_a, flip_b)`` from :class:`AnchorPairSampler` to
    ``(chip_a, chip_b, label_a, label_b)``: uint8 ``(3, H, W)`` chips, int64 labels.

    A source with ``chips(size)`` (all chips in memory, e.g. :class:`ArrayImages`) is read a
    whole batch at a time (``__getitems__``, which the DataLoader calls with a batch's
    items): one gather instead of a Python call per image.
    """

    def __init__(self, source, size: tuple[int, int]):
        self.source, self.size = source, tuple(size)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item):
        a, b, fa, fb = item
        return (to_chip(self.source.load(a), self.size, bool(fa)),
                to_chip(self.source.load(b), self.size, bool(fb)),
                int(self.source.labels[a]), int(self.source.labels[b]))

    def __getitems__(self, items) -> list:
        chips = getattr(self.source, "chips", None)
        if chips is None or not len(items):
            return [self[item] for item in items]
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64).reshape(-1, 4))
        every = chips(self.size)
        out = []
        for col, flip in ((0, 2), (1, 3)):
            x = every[idx[:, col]]
            flipped = idx[:, flip] != 0
            if bool(flipped.any()):
                x[flipped] = x[flipped].flip(-1)  # x is a fresh copy: ``every`` is untouched
            out.append(x.unbind(0))
        labels = self.source.labels
        la = labels[idx[:, 0].numpy()].tolist()
        lb = labels[idx[:, 1].numpy()].tolist()
        return list(zip(out[0], out[1], la, lb))


@dataclass
class PairList:
    """A validation pair set: ``load(i)`` images, pairs ``(pair_a[k], pair_b[k])``, labels
    ``same`` and protocol ``folds``."""

    name: str
    source: object
    pair_a: np.ndarray
    pair_b: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    people: set | None = None  # LFW: the people its pairs show (to check disjointness)

    def __len__(self) -> int:
        return len(self.same)


class PairImages(torch.utils.data.Dataset):
    """Pair ``k`` of a :class:`PairList` as ``(chip_a, chip_b)``."""

    def __init__(self, pairs: PairList, indices: np.ndarray, size):
        self.pairs, self.indices, self.size = pairs, indices, tuple(size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        k = int(self.indices[i])
        src = self.pairs.source
        return (to_chip(src.load(int(self.pairs.pair_a[k])), self.size),
                to_chip(src.load(int(self.pairs.pair_b[k])), self.size))


def _balanced_folds(same: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Fold ids giving each of ``n_folds`` folds an equal share of genuine and impostor
    pairs, in order (used when only some LFW folds are held out)."""
    folds = np.empty(len(same), dtype=np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(same == cls)
        folds[idx] = np.arange(len(idx)) * n_folds // max(len(idx), 1)
    return folds


class _LFWChips:
    def __init__(self, paths):
        self.paths = paths
        self.aligner = lfw_aligner()

    def describe(self, i):
        return str(self.paths[i])

    def load(self, i):
        return self.aligner(self.paths[i]).chip


def build_val_set(spec) -> PairList:
    """A :class:`~xcos_xai.training.config.ValSet` as a :class:`PairList`."""
    if spec.format == "bin":
        pairs = read_bin(spec.path)
        n = len(pairs.same)
        pl = PairList(spec.name, pairs, np.arange(n) * 2, np.arange(n) * 2 + 1, pairs.same,
                      pairs.folds)
    else:
        lfw = LFW(spec.path or None)
        frame = lfw.pairs_frame()
        if spec.folds:
            frame = frame[frame["fold"].isin([int(f) for f in spec.folds])].reset_index(
                drop=True)
        rels = sorted(set(frame["path_a"]) | set(frame["path_b"]))
        pos = {r: i for i, r in enumerate(rels)}
        same = frame["same"].to_numpy(bool)
        folds = (frame["fold"].to_numpy(np.int64) if not spec.folds or len(spec.folds) == 10
                 else _balanced_folds(same))
        pl = PairList(spec.name, _LFWChips([Path(lfw.image_root) / r for r in rels]),
                      np.array([pos[r] for r in frame["path_a"]]),
                      np.array([pos[r] for r in frame["path_b"]]), same, folds,
                      set(frame["name_a"]) | set(frame["name_b"]))
    if spec.max_pairs and spec.max_pairs < len(pl):
        keep = np.sort(np.random.default_rng(0).permutation(len(pl))[:spec.max_pairs])
        pl = PairList(pl.name, pl.source, pl.pair_a[keep], pl.pair_b[keep], pl.same[keep],
                      _balanced_folds(pl.same[keep]), pl.people)
    return pl
