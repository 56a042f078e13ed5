"""The one way files are written: atomically and durably.

:func:`atomic_path` gives a temporary file beside the target; on success the file is
``fsync``-ed, moved over the target with ``os.replace`` and the folder is ``fsync``-ed (so the
rename itself survives a power cut). Readers, and processes filling the same cache at
once, only ever see the previous complete file or the new complete one, never a torn file;
a crash leaves at most a ``*.tmp`` file (see :func:`remove_stale_tmp`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = ["atomic_path", "atomic_save_safetensors", "atomic_torch_save", "cached_file_sha256",
           "file_sha256",
           "remove_stale_tmp"]

TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders: the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; it replaces ``path`` on a clean
    exit (file and folder ``fsync``-ed) and is removed on an error.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("complete")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('complete', ['note.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; caches are shared
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                            metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` through :func:`atomic_path` (tensors made contiguous)."""
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex): what caches key a model file by, never its path.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"
        >>> _ = p.write_bytes(b"")
        >>> file_sha256(p)[:16]
        'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_file_sha256(path: str | os.PathLike) -> str:
    """:func:`file_sha256`, hashed once per process for a path, size and modification time
    (a file rewritten in place is hashed again)."""
    st = os.stat(path)
    return _file_sha256_at(str(path), st.st_size, st.st_mtime_ns)


@functools.cache
def _file_sha256_at(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def remove_stale_tmp(folder: str | os.PathLike) -> int:
    """Delete the temporary files a process killed mid-write left in ``folder``; how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = list(folder.glob("*" + TMP_SUFFIX))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
