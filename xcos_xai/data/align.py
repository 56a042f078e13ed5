"""The one alignment path: a photo in, the aligned face chip the model expects out.

dlib's HOG face detector finds faces, its 5-point shape predictor places landmarks, and
``dlib.get_face_chip`` cuts the chip, exactly as dlib's face-recognition model was trained.
With several faces, the most central large one is taken (and a warning says so); with none,
one :class:`NoFaceError`, unless ``assume_aligned=True`` (the image is the face) or a
``fallback_box`` is set. Chips can be cached on disk, keyed by the image bytes and settings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .images import load_image

LFW_FALLBACK_BOX = (64, 64, 186, 186)  # where deep-funneled LFW puts the face


class NoFaceError(ValueError):
    """No face was found in an image."""


class MultipleFacesWarning(UserWarning):
    """Several faces were found; one was chosen."""


@dataclass
class AlignedFace:
    """An aligned face: ``chip`` is ``(size, size, 3)`` uint8 RGB."""

    chip: np.ndarray
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the photo
    landmarks: np.ndarray | None = None  # (5, 2) x, y in the photo
    n_faces_found: int = 1
    reason: str = "detected"
    source: str = ""


@dataclass(frozen=True)
class AlignerConfig:
    chip_size: int = 150
    padding: float = 0.25
    upsample: int = 1
    fallback_box: tuple[int, int, int, int] | None = None


def _describe(source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    shape = getattr(source, "shape", None)
    return f"{type(source).__name__}{tuple(shape) if shape is not None else ''}"


def choose_face(boxes: list[tuple[int, int, int, int]], width: int, height: int) -> int:
    """Index of the face to use: the largest area weighted by closeness to the centre.

    Each box scores ``area * (1 - d / r) ** 2``, with ``d`` the distance from the box centre
    to the image centre and ``r`` half the image diagonal, so a big face near the centre
    wins over a bigger face at the border and over a small central one.
    """
    cx, cy, r = width / 2, height / 2, 0.5 * (width ** 2 + height ** 2) ** 0.5
    best, best_score = 0, -1.0
    for i, (l, t, rr, b) in enumerate(boxes):
        area = max(rr - l, 0) * max(b - t, 0)
        d = (((l + rr) / 2 - cx) ** 2 + ((t + b) / 2 - cy) ** 2) ** 0.5
        score = area * max(1 - d / r, 0.0) ** 2
        if score > best_score:
            best, best_score = i, score
    return best


class FaceAligner:
    """Photos to aligned face chips (dlib detector + 5 landmarks + ``get_face_chip``).

    Args:
        chip_size: chip side in pixels (150 for dlib's face model).
        padding: margin around the face, as dlib's ``get_face_chip`` (0.25 for dlib's model).
        upsample: detector upsampling (1 finds faces down to about 40 px).
        cache_dir: a folder to cache chips in, or ``None``.
        fallback_box: ``(left, top, right, bottom)`` used when no face is detected (for
            pre-cropped data sets such as LFW); ``None`` raises :class:`NoFaceError`.
    """

    def __init__(self, chip_size: int = 150, padding: float = 0.25, upsample: int = 1,
                 cache_dir: str | Path | None = None,
                 fallback_box: tuple[int, int, int, int] | None = None):
        self.cfg = AlignerConfig(chip_size, padding, upsample,
                                 tuple(fallback_box) if fallback_box else None)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._dlib = None

    @classmethod
    def for_lfw(cls, cache_dir=None, **kwargs) -> FaceAligner:
        """The LFW preset: deep-funneled faces sit in a known box, the fallback."""
        return cls(cache_dir=cache_dir, fallback_box=LFW_FALLBACK_BOX, **kwargs)

    def config(self) -> dict:
        import dlib

        return {**asdict(self.cfg), "dlib": dlib.__version__}

    def __getstate__(self):
        return {**self.__dict__, "_dlib": None}

    def _models(self):
        if self._dlib is None:
            import dlib

            from ..models.dlib_dat import model_file

            landmarks_file = model_file("shape_predictor_5_face_landmarks.dat")
            predictor = dlib.shape_predictor(str(landmarks_file))
            self._dlib = (dlib, dlib.get_frontal_face_detector(), predictor)
        return self._dlib

    def _cache_path(self, image: np.ndarray, assume_aligned: bool) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(image.tobytes())
        digest.update(repr((image.shape, self.config(), assume_aligned)).encode())
        return self.cache_dir / digest.hexdigest()[:2] / f"{digest.hexdigest()}.npz"

    def __call__(self, source, assume_aligned: bool = False) -> AlignedFace:
        what = _describe(source)
        image = load_image(source)
        cache_path = self._cache_path(image, assume_aligned)
        if cache_path is not None and cache_path.exists():
            return self._read_cache(cache_path, what)
        face = self._align(image, what, assume_aligned)
        if cache_path is not None:
            self._write_cache(cache_path, face)
        return face

    def _align(self, image: np.ndarray, what: str, assume_aligned: bool) -> AlignedFace:
        dlib, detector, predictor = self._models()
        size = self.cfg.chip_size
        if assume_aligned:
            from PIL import Image

            chip = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
            return AlignedFace(chip, None, None, 0, "assumed aligned (resized)", what)
        h, w = image.shape[:2]
        dets = detector(image, self.cfg.upsample)
        boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
        if not boxes:
            if self.cfg.fallback_box is None:
                raise NoFaceError(f"no face found in {what}: pass assume_aligned=True if it is "
                                  "already an aligned face crop, or a fallback_box")
            box, reason = self.cfg.fallback_box, "no face detected: fallback box"
        else:
            i = choose_face(boxes, w, h)
            box = boxes[i]
            reason = "detected"
            if len(boxes) > 1:
                reason = f"{len(boxes)} faces found: took the most central large one"
                warnings.warn(f"{what}: {reason} (box {box})", MultipleFacesWarning,
                              stacklevel=3)
        shape = predictor(image, dlib.rectangle(*box))
        chip = dlib.get_face_chip(image, shape, size=size, padding=self.cfg.padding)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return AlignedFace(np.asarray(chip, np.uint8), tuple(int(v) for v in box), landmarks,
                           len(boxes), reason, what)

    @staticmethod
    def _write_cache(path: Path, face: AlignedFace) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        try:
            np.savez(tmp, chip=face.chip,
                     box=np.array(face.box if face.box else (-1, -1, -1, -1)),
                     landmarks=face.landmarks if face.landmarks is not None
                     else np.zeros((0, 2), np.float32),
                     n_faces=np.array(face.n_faces_found), reason=np.array(face.reason))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _read_cache(path: Path, what: str) -> AlignedFace:
        with np.load(path, allow_pickle=False) as z:
            box = tuple(int(v) for v in z["box"])
            landmarks = z["landmarks"] if len(z["landmarks"]) else None
            return AlignedFace(z["chip"], None if box[0] == -1 and box[2] == -1 else box,
                               landmarks, int(z["n_faces"]), str(z["reason"]), what)

    def align_many(self, sources, workers: int = 1, progress: bool = True,
                   assume_aligned: bool = False) -> list[AlignedFace]:
        """Align many photos (in order), optionally in ``workers`` processes."""
        sources = list(sources)
        bar = tqdm(total=len(sources), desc="align", unit="img", disable=not progress)
        if workers <= 1 or len(sources) < 2 * workers:
            out = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MultipleFacesWarning)
                for s in sources:
                    out.append(self(s, assume_aligned))
                    bar.update(1)
            bar.close()
            return out
        out = []
        chunk = max(1, min(64, len(sources) // (4 * workers)))
        with ProcessPoolExecutor(workers) as pool:
            for face in pool.map(_align_one, [(self, s, assume_aligned) for s in sources],
                                 chunksize=chunk):
                out.append(face)
                bar.update(1)
        bar.close()
        return out


def _align_one(args):
    aligner, source, assume_aligned = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MultipleFacesWarning)
        return aligner(source, assume_aligned)


__all__ = ["AlignedFace", "FaceAligner", "MultipleFacesWarning", "NoFaceError", "choose_face"]
