"""dlib's own pipeline end to end (dlib-bin) as the reference scorer on LFW.

Everything here is dlib's: JPEG decoding (``dlib.load_rgb_image``), the HOG detector, the
5-point predictor, ``get_face_chip`` and ``compute_face_descriptor``. Only the choice among
several detections and the no-detection fallback box follow the project's documented rule,
so that both pipelines see the same face. Descriptors are cached as ``.npy``.
"""

from __future__ import annotations

import hashlib

import dlib
import numpy as np

from .._io import file_sha256
from ..data.align import LFW_FALLBACK_BOX, choose_face
from ..models.dlib_dat import model_file
from .reference_cache import cached_descriptions

_STATE = {}
_MODEL_FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")


def _init():
    _STATE["det"] = dlib.get_frontal_face_detector()
    _STATE["sp"] = dlib.shape_predictor(str(model_file(_MODEL_FILES[0])))
    _STATE["rec"] = dlib.face_recognition_model_v1(str(model_file(_MODEL_FILES[1])))


def _describe(path: str) -> np.ndarray:
    if not _STATE:
        _init()
    img = dlib.load_rgb_image(path)
    dets = _STATE["det"](img, 1)
    boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
    box = boxes[choose_face(boxes, img.shape[1], img.shape[0])] if boxes else LFW_FALLBACK_BOX
    shape = _STATE["sp"](img, dlib.rectangle(*box))
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    return np.array(_STATE["rec"].compute_face_descriptor(chip), np.float32)


def cache_key(paths: list[str]) -> str:
    """The descriptors' cache key: the image list, dlib's version and the two networks by
    their bytes (never their paths: a moved model file is the same model, a changed one not)."""
    models = [file_sha256(model_file(name)) for name in _MODEL_FILES]
    return hashlib.sha256("\n".join([*map(str, paths), dlib.__version__, *models]).encode()
                          ).hexdigest()[:24]


def reference_descriptors(paths: list, workers: int = 2, progress: bool = True,
                          checkpoint_every: int = 256) -> np.ndarray:
    """``(N, 128)`` descriptors of dlib's own end-to-end pipeline (cached, resumable).

    dlib-bin's CPU network is slow (about 0.1-0.6 s per image on these machines), so
    progress is saved every ``checkpoint_every`` images: an interrupted run continues where
    it stopped instead of starting again.
    """
    paths = [str(p) for p in paths]
    return cached_descriptions("dlib_reference", cache_key(paths), paths, _describe, _init,
                               workers=workers, progress=progress,
                               checkpoint_every=checkpoint_every, desc="dlib reference")


def reference_distances(paths: list, index, workers: int = 2,
                        progress: bool = True) -> np.ndarray:
    """dlib's L2 distance for each View-2 pair (lower means more similar).

    Only the images that the pairs use are described (about 7,700 of LFW's 13,233).
    """
    rows = np.unique(np.concatenate([index.pair_a, index.pair_b]))
    desc = reference_descriptors([paths[i] for i in rows], workers, progress)
    where = np.full(len(paths), -1)
    where[rows] = np.arange(len(rows))
    return np.linalg.norm(desc[where[index.pair_a]] - desc[where[index.pair_b]], axis=1)
