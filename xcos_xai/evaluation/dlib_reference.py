"""dlib's own pipeline end to end (dlib-bin) as the reference scorer on LFW.

Everything here is dlib's: JPEG decoding (``dlib.load_rgb_image``), the HOG detector, the
5-point predictor, ``get_face_chip`` and ``compute_face_descriptor``. Only the choice among
several detections and the no-detection fallback box follow the project's documented rule,
so that both pipelines see the same face. Descriptors are cached as ``.npy``.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .._env import cache_dir

_STATE = {}


def _init():
    import dlib

    from ..models.dlib_dat import model_file

    _STATE["det"] = dlib.get_frontal_face_detector()
    _STATE["sp"] = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    _STATE["rec"] = dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat")))


def _describe(path: str) -> np.ndarray:
    import dlib

    from ..data.align import LFW_FALLBACK_BOX, choose_face

    if not _STATE:
        _init()
    img = dlib.load_rgb_image(path)
    dets = _STATE["det"](img, 1)
    boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
    box = boxes[choose_face(boxes, img.shape[1], img.shape[0])] if boxes else LFW_FALLBACK_BOX
    shape = _STATE["sp"](img, dlib.rectangle(*box))
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    return np.array(_STATE["rec"].compute_face_descriptor(chip), np.float32)


def reference_descriptors(paths: list, workers: int = 2, progress: bool = True) -> np.ndarray:
    """``(N, 128)`` descriptors of dlib's own end-to-end pipeline (cached)."""
    import dlib

    paths = [str(p) for p in paths]
    digest = hashlib.sha256(("\n".join(paths) + dlib.__version__).encode()).hexdigest()[:24]
    path = cache_dir() / "features" / f"dlib_reference_{digest}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    out = np.zeros((len(paths), 128), np.float32)
    bar = tqdm(total=len(paths), desc="dlib reference", disable=not progress)
    with ProcessPoolExecutor(max(1, workers), initializer=_init) as pool:
        for i, desc in enumerate(pool.map(_describe, paths, chunksize=32)):
            out[i] = desc
            bar.update(1)
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def reference_distances(paths: list, index, workers: int = 2,
                        progress: bool = True) -> np.ndarray:
    """dlib's L2 distance for each View-2 pair (lower means more similar)."""
    desc = reference_descriptors(paths, workers, progress)
    return np.linalg.norm(desc[index.pair_a] - desc[index.pair_b], axis=1)
