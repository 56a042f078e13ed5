"""A cache of backbone features (grids and embeddings) for a set of images.

Computing a backbone over a data set is the slow part of every evaluation; training an
xCos head on a frozen backbone needs only the grids and embeddings. They are computed once,
batched and with a progress bar, and stored as one safetensors file whose name is a hash of
everything that determines them: the backbone's weights, the alignment settings, the image
list and the images' bytes (not their paths or time stamps: a moved or re-extracted data set
keeps its features). A different model, preprocessing or picture never
reuses stale entries. The device the backbone ran on is not part of the name: the file holds
CPU tensors, so a GPU run and a CPU run share it. Files are written atomically (temporary
file + ``os.replace``), so two processes filling the cache at once leave one complete file,
never a torn or mixed one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .._env import cache_dir
from .._io import atomic_save_safetensors, cached_file_sha256
from ..core.device import full_float32, resolve_device
from ..data.align import faces_to_tensor

FORMAT_VERSION = 2  # 2: dlib's forward_all adds the "4x4-local" grid


@dataclass
class FeatureSet:
    """Features of ``N`` images: named ``(N, C, H, W)`` grids (float16), ``(N, D)`` embeddings."""

    keys: list[str]
    grids: dict[str, torch.Tensor]
    embeddings: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self._index = {k: i for i, k in enumerate(self.keys)}

    def index_of(self, keys: Sequence[str]) -> torch.Tensor:
        """Row indices of the given image keys; one clear error for an unknown key."""
        try:
            return torch.tensor([self._index[k] for k in keys], dtype=torch.long)
        except KeyError as err:
            raise KeyError(f"image {err.args[0]!r} is not in this feature set "
                           f"({len(self.keys)} images)") from None


def model_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over a module's class name and every tensor of its state dict."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _files_fingerprint(paths: Sequence[Path]) -> str:
    """A digest of the images' bytes, in order: the cache follows the pictures, not where
    they are or when they were copied (a re-extracted or moved LFW keeps its features).
    About 1 s for LFW's 117 MB when the files are in the page cache; each file is hashed once
    per process (:func:`~xcos_xai._io.cached_file_sha256`)."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(bytes.fromhex(cached_file_sha256(p)))
    return digest.hexdigest()


def _backbone_outputs(backbone, x: torch.Tensor) -> dict[str, torch.Tensor]:
    if hasattr(backbone, "forward_all"):
        return backbone.forward_all(x)
    grid = backbone.forward_features(x)
    return {"grid": grid, "embedding": backbone.forward_head(grid)}


def compute_features(backbone: torch.nn.Module, image_paths: Sequence[str | Path], aligner,
                     keys: Sequence[str] | None = None, batch_size: int = 64,
                     cache: bool | Path = True, progress: bool = True,
                     device: str | torch.device = "cpu", workers: int = 1) -> FeatureSet:
    """Grids and embeddings of ``backbone`` for every image, cached on disk.

    Args:
        backbone: a registry backbone in eval mode (``forward_all`` is used when present).
        image_paths: the photos, in the order the result keeps.
        aligner: a :class:`~xcos_xai.data.align.FaceAligner` (or any callable with a
            ``cache_key()``-able configuration) that turns a photo into an aligned chip.
        keys: names of the images in the result (default: the paths as strings).
        batch_size: images per backbone forward.
        cache: ``True`` for the default cache folder, a folder, or ``False`` for none.
        device: where the backbone runs (``"auto"``: CUDA when present); the backbone is
            moved there. In float32 (no autocast, no TF32); the results come back to the CPU
            and the cache entry does not depend on the device.
        workers: processes for face alignment.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    paths = [Path(p) for p in image_paths]
    keys = list(keys) if keys is not None else [str(p) for p in paths]
    if len(keys) != len(paths):
        raise ValueError(f"{len(keys)} keys for {len(paths)} images: give one key per image")
    spec = backbone.input_spec
    descriptor = {
        "version": FORMAT_VERSION,
        "backbone": model_fingerprint(backbone),
        "aligner": repr(aligner.config()) if hasattr(aligner, "config") else repr(aligner),
        "input_spec": repr(spec),
        "keys": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "files": _files_fingerprint(paths),
    }
    key = hashlib.sha256(json.dumps(descriptor, sort_keys=True).encode()).hexdigest()[:32]
    cache_file = None
    if cache:
        folder = Path(cache) if not isinstance(cache, bool) else cache_dir() / "features"
        cache_file = folder / f"{key}.safetensors"
        if cache_file.exists():
            return _load(cache_file, keys, descriptor)

    device = resolve_device("auto") if str(device) == "auto" else device
    backbone = backbone.eval().to(device)
    outputs: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(total=len(paths), desc="features", unit="img", disable=not progress)
    with torch.inference_mode(), full_float32():
        for start in range(0, len(paths), batch_size * 8):
            chunk = paths[start:start + batch_size * 8]
            faces = aligner.align_many(chunk, workers=workers, progress=False)
            chips = faces_to_tensor(faces)
            for s in range(0, len(chunk), batch_size):
                # uint8 pixels to the device (4x less to copy), normalised there
                x = spec.normalize(chips[s:s + batch_size].to(device))
                for name, value in _backbone_outputs(backbone, x).items():
                    value = value.float().cpu()
                    outputs.setdefault(name, []).append(
                        value if name == "embedding" else value.half())
                bar.update(len(x))
    bar.close()
    tensors = {name: torch.cat(parts) for name, parts in outputs.items()}
    if cache_file is not None:
        atomic_save_safetensors(tensors, cache_file,
                                metadata={"descriptor": json.dumps(descriptor),
                                          "keys": json.dumps(keys)})
    embeddings = tensors.pop("embedding")
    return FeatureSet(keys, tensors, embeddings, {"descriptor": descriptor, "cache": cache_file})


def _load(path: Path, keys: list[str], descriptor: dict) -> FeatureSet:
    tensors = load_file(str(path))
    embeddings = tensors.pop("embedding")
    if embeddings.shape[0] != len(keys):
        raise ValueError(f"feature cache {path} holds {embeddings.shape[0]} images, expected "
                         f"{len(keys)}: delete the file and run again")
    return FeatureSet(keys, tensors, embeddings, {"descriptor": descriptor, "cache": path})
