"""dlib's own pipeline (dlib-bin, end to end) as the reference scorer on LFW."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .._env import cache_dir


def reference_descriptors(lfw, keys: list[str], progress: bool = True) -> np.ndarray:
    """``(N, 128)`` descriptors from ``dlib.face_recognition_model_v1`` on dlib-made chips.

    Chips come from the same dlib detector, 5-point predictor and ``get_face_chip`` as our
    own pipeline (its cache), so this isolates the network: dlib's C++ against our port.
    Cached as ``.npy`` under the cache folder.
    """
    import hashlib

    import dlib

    from ..data.align import FaceAligner
    from ..models.dlib_dat import model_file

    digest = hashlib.sha256(("\n".join(keys) + dlib.__version__).encode()).hexdigest()[:24]
    path = cache_dir() / "features" / f"dlib_reference_{digest}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    facerec = dlib.face_recognition_model_v1(str(model_file(
        "dlib_face_recognition_resnet_model_v1.dat")))
    aligner = FaceAligner.for_lfw(cache_dir=cache_dir() / "chips")
    out = np.zeros((len(keys), 128), np.float32)
    batch = 64
    for s in tqdm(range(0, len(keys), batch), desc="dlib reference", disable=not progress):
        chips = [aligner(lfw.image_root / k).chip for k in keys[s:s + batch]]
        out[s:s + batch] = np.array(facerec.compute_face_descriptor(chips))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def reference_distances(lfw, index, keys, workers: int = 1, progress: bool = True):
    """dlib's L2 distance for each View-2 pair (lower means more similar)."""
    desc = reference_descriptors(lfw, keys, progress)
    return np.linalg.norm(desc[index.pair_a] - desc[index.pair_b], axis=1)
