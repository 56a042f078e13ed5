"""The one resumable, cached loop behind the reference pipelines (dlib-bin, OpenCV Zoo SFace).

A reference pipeline describes each image in a worker process; the ``(N, dim)`` result is
cached under ``XCOS_XAI_CACHE/features/<name>_<digest>.npy`` and, while running, saved every
``checkpoint_every`` images to a ``.partial.npz``, so an interrupted run continues where it
stopped. Every file is written atomically (``_io.atomic_path``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .._env import cache_dir
from .._io import atomic_path


def cached_descriptions(name: str, digest: str, paths: list[str],
                        describe: Callable[[str], np.ndarray], init: Callable[[], None],
                        dim: int = 128, workers: int = 2, progress: bool = True,
                        checkpoint_every: int = 256, desc: str | None = None) -> np.ndarray:
    """``(len(paths), dim)`` float32: ``describe(path)`` for every path, cached and resumable.

    ``describe`` and ``init`` (the worker initialiser) must be picklable module-level
    functions; ``digest`` must change whenever the result would (image list, versions, model
    files).
    """
    folder = cache_dir() / "features"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{digest}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    partial = folder / f"{name}_{digest}.partial.npz"
    out = np.zeros((len(paths), dim), np.float32)
    done = np.zeros(len(paths), bool)
    if partial.exists():
        with np.load(partial, allow_pickle=False) as saved:
            if saved["out"].shape == out.shape:
                out, done = saved["out"].copy(), saved["done"].copy()
    todo = np.flatnonzero(~done)
    bar = tqdm(total=len(paths), initial=int(done.sum()), desc=desc or name,
               disable=not progress)
    if len(todo):
        with ProcessPoolExecutor(max(1, workers), initializer=init) as pool:
            for n, (i, row) in enumerate(zip(todo, pool.map(
                    describe, [paths[i] for i in todo], chunksize=8)), 1):
                out[i], done[i] = row, True
                bar.update(1)
                if n % checkpoint_every == 0:
                    with atomic_path(partial) as tmp, open(tmp, "wb") as fh:
                        np.savez(fh, out=out, done=done)
    bar.close()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # unique name: safe if two finish
        np.save(fh, out)
    partial.unlink(missing_ok=True)
    return out
