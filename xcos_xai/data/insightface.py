"""InsightFace data files in pure Python: ``train.rec``/``train.idx`` and ``.bin`` pair sets.

**RecordIO** (MXNet's ``MXIndexedRecordIO``, what InsightFace ships MS1M, Glint360K and
``faces_webface_112x112`` in). ``train.idx`` is text, one ``key<TAB>byte offset`` per
line. At each offset of ``train.rec`` a record starts: ``uint32`` magic ``0xced7230a``,
``uint32`` ``lrecord`` (``cflag = lrecord >> 29``, ``length = lrecord & (2**29 - 1)``),
then ``length`` bytes padded to a multiple of 4. ``cflag`` 0 is a whole record; 1, 2, 3 are
the first, middle and last parts of a record that was split where its data held the magic
number, and the parts are joined with the magic in between. The payload starts with an
``IRHeader``: ``struct "<IfQQ"`` = (flag, label, id, id2); when ``flag > 0`` the label is
``flag`` float32 values that follow the header. The image (JPEG) bytes come last.

InsightFace's record 0 is a header with ``flag > 0`` and ``label = (first_identity_record,
end)``: image records are ``1 .. first_identity_record - 1`` and each record
``k`` in ``[first_identity_record, end)`` gives identity ``k - first_identity_record``
the image range ``label = (start, stop)``. JPEGs decode to RGB, as in ``arcface_torch``.

**``.bin``** validation sets (``lfw.bin``, ``agedb_30.bin``, ``cfp_fp.bin``, ...): a pickle
of ``(bins, issame)``: ``2 N`` encoded images (pair ``k`` is images ``2k, 2k+1``) and ``N``
booleans. A pickle can run code, so it is read by :class:`RestrictedUnpickler`, which builds
only bytes, strings, numbers, booleans, lists, tuples and numpy bool/uint8 arrays and
refuses everything else before it is created.

Every malformed file is one :class:`InsightFaceFormatError` (a ``ValueError``) naming the
file, what is wrong and the fix.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import load_image

__all__ = ["IR_FORMAT", "RECORD_MAGIC", "BinPairs", "InsightFaceFormatError", "IRHeader",
           "RecordFile", "RecordFaces", "RecordWriter", "RestrictedUnpickler", "pack_record",
           "read_bin", "unpack_record", "write_bin"]

RECORD_MAGIC = 0xCED7230A
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
_LENGTH_MASK = (1 << 29) - 1
_MAX_IDX_LINES = 100_000_000


class InsightFaceFormatError(ValueError):
    """A ``.rec``/``.idx``/``.bin`` file that is not what InsightFace writes."""


@dataclass(frozen=True)
class IRHeader:
    """The header of one record: ``label`` is a float, or a tuple when ``flag > 0``."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def unpack_record(payload: bytes, source: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record's payload into its :class:`IRHeader` and the remaining (image) bytes."""
    if len(payload) < IR_SIZE:
        raise InsightFaceFormatError(f"{source}: {len(payload)} bytes, shorter than the "
                                     f"{IR_SIZE}-byte IRHeader: the .rec file is damaged")
    flag, label, id1, id2 = struct.unpack_from(IR_FORMAT, payload)
    rest = payload[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise InsightFaceFormatError(f"{source}: the header announces {flag} labels but "
                                         f"only {len(rest)} bytes follow: the file is damaged")
        label = tuple(float(v) for v in np.frombuffer(rest, "<f4", flag))
        rest = rest[4 * flag:]
    return IRHeader(flag, label if flag > 0 else float(label), id1, id2), bytes(rest)


def pack_record(header: IRHeader, data: bytes = b"") -> bytes:
    """The payload of one record (inverse of :func:`unpack_record`)."""
    if isinstance(header.label, tuple):
        labels = np.asarray(header.label, dtype="<f4")
        head = struct.pack(IR_FORMAT, len(labels), 0.0, header.id, header.id2)
        return head + labels.tobytes() + bytes(data)
    return struct.pack(IR_FORMAT, 0, float(header.label), header.id, header.id2) + bytes(data)


def _parse_idx(path: Path) -> dict[int, int]:
    try:
        text = path.read_bytes()
    except OSError as err:
        raise InsightFaceFormatError(f"cannot read {path} ({err.strerror or err}): give the "
                                     ".idx file that came with the .rec file") from None
    try:
        text = text.decode("ascii")
    except UnicodeDecodeError:
        raise InsightFaceFormatError(f"{path} is not a text index (non-ASCII bytes): give "
                                     "the train.idx that came with train.rec") from None
    offsets: dict[int, int] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if (len(fields) != 2 or not fields[0].strip().isdigit()
                or not fields[1].strip().isdigit()):
            raise InsightFaceFormatError(f"{path}, line {line_no}: expected 'key<TAB>offset' "
                                         f"with two non-negative integers, got {line[:60]!r}: "
                                         "regenerate the index (e.g. im2rec) or restore it")
        key, offset = int(fields[0]), int(fields[1])
        if key in offsets:
            raise InsightFaceFormatError(f"{path}, line {line_no}: key {key} appears twice")
        offsets[key] = offset
        if len(offsets) > _MAX_IDX_LINES:
            raise InsightFaceFormatError(f"{path}: more than {_MAX_IDX_LINES} records")
    if not offsets:
        raise InsightFaceFormatError(f"{path} lists no records: give a non-empty train.idx")
    return offsets


class RecordFile:
    """Random access to an indexed RecordIO file (``train.rec`` + ``train.idx``).

    The file handle is opened lazily and reopened after a ``fork``, so one object can be
    shared with DataLoader worker processes.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(
            ".idx")
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"RecordIO file {self.rec_path} not found: give the path "
                                    "of train.rec (with train.idx beside it)")
        if not self.idx_path.is_file():
            raise FileNotFoundError(f"index {self.idx_path} not found: put train.idx beside "
                                    f"{self.rec_path.name} or pass idx_path=")
        offsets = _parse_idx(self.idx_path)
        # Sorted numpy arrays, not a dict: millions of entries stay compact and are shared
        # (not copied) by forked DataLoader workers.
        self._keys = np.fromiter(offsets.keys(), dtype=np.int64, count=len(offsets))
        self._offs = np.fromiter(offsets.values(), dtype=np.int64, count=len(offsets))
        order = np.argsort(self._keys)
        self._keys, self._offs = self._keys[order], self._offs[order]
        self.size = self.rec_path.stat().st_size
        bad = np.flatnonzero(self._offs + 8 > self.size)
        if len(bad):
            raise InsightFaceFormatError(f"{self.idx_path}: record {self._keys[bad[0]]} starts "
                                         f"at byte {self._offs[bad[0]]}, past the end of "
                                         f"{self.rec_path} ({self.size} bytes): the .rec is "
                                         "truncated or the index belongs to another file")
        self._fh = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fh"], state["_pid"] = None, None
        return state

    def keys(self) -> list[int]:
        return self._keys.tolist()

    def __contains__(self, key) -> bool:
        i = np.searchsorted(self._keys, key)
        return bool(i < len(self._keys) and self._keys[i] == key)

    def contains_all(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` the index lists."""
        i = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[i] == keys

    def __len__(self) -> int:
        return len(self._keys)

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec_path, "rb")  # noqa: SIM115 (kept open for speed)
            self._pid = os.getpid()
        return self._fh

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (multi-part records joined as MXNet does)."""
        if key not in self:
            raise KeyError(f"record {key} is not in {self.idx_path}")
        fh = self._file()
        fh.seek(int(self._offs[np.searchsorted(self._keys, key)]))
        where = f"{self.rec_path}, record {key}"
        out = bytearray()
        for _ in range(1 << 20):
            head = fh.read(8)
            if len(head) < 8:
                raise InsightFaceFormatError(f"{where}: the file ends inside a record header "
                                             "(truncated .rec): re-copy the file")
            magic, lrecord = struct.unpack("<II", head)
            if magic != RECORD_MAGIC:
                raise InsightFaceFormatError(f"{where}: magic {magic:#010x} where RecordIO "
                                             f"has {RECORD_MAGIC:#010x}: not a RecordIO file, "
                                             "or the .idx belongs to another .rec")
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            if cflag > 3:
                raise InsightFaceFormatError(f"{where}: invalid continuation flag {cflag}")
            if fh.tell() + length > self.size:
                raise InsightFaceFormatError(f"{where}: a {length}-byte record runs past the "
                                             "end of the file (truncated .rec): re-copy it")
            out += fh.read(length)
            fh.seek((-length) % 4, os.SEEK_CUR)
            if cflag in (0, 3):
                return bytes(out)
            out += struct.pack("<I", RECORD_MAGIC)
        raise InsightFaceFormatError(f"{where}: a record with more than 2**20 parts")

    def header(self, key: int) -> tuple[IRHeader, bytes]:
        return unpack_record(self.read(key), f"{self.rec_path}, record {key}")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RecordWriter:
    """Writes an indexed RecordIO pair (``.rec`` + ``.idx``) readable by MXNet and by
    :class:`RecordFile` (records are written whole, never split)."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115
        self._idx = open(self.idx_path, "w")  # noqa: SIM115

    def write(self, key: int, payload: bytes) -> None:
        if len(payload) > _LENGTH_MASK:
            raise ValueError(f"record {key} is {len(payload)} bytes; RecordIO allows 2**29-1")
        self._idx.write(f"{int(key)}\t{self._rec.tell()}\n")
        self._rec.write(struct.pack("<II", RECORD_MAGIC, len(payload)))
        self._rec.write(payload + b"\0" * ((-len(payload)) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordFaces:
    """A face data set in InsightFace's ``train.rec`` layout, as an image source.

    Args:
        root: a folder holding ``train.rec`` and ``train.idx`` (or the ``.rec`` path).

    Attributes:
        labels: ``(N,)`` int64 identity of every image (0 .. ``num_classes - 1``).
        keys: ``(N,)`` the record key of every image.
    """

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        rec = root / "train.rec" if root.is_dir() else root
        self.records = RecordFile(rec)
        head, _ = self.records.header(0) if 0 in self.records else (None, b"")
        if head is not None and head.flag > 0 and len(head.label) >= 2:
            first_id, end = int(head.label[0]), int(head.label[1])
            if not 1 <= first_id <= end:
                raise InsightFaceFormatError(f"{rec}: header record 0 gives identity records "
                                             f"[{first_id}, {end}), not a valid range")
            keys, labels = [], []
            for cls, k in enumerate(range(first_id, end)):
                ident, _ = self.records.header(k)
                if not isinstance(ident.label, tuple) or len(ident.label) < 2:
                    raise InsightFaceFormatError(f"{rec}: identity record {k} has no "
                                                 "(start, stop) image range")
                start, stop = int(ident.label[0]), int(ident.label[1])
                if not 1 <= start <= stop <= first_id:
                    raise InsightFaceFormatError(f"{rec}: identity record {k} gives images "
                                                 f"[{start}, {stop}) outside [1, {first_id})")
                keys.extend(range(start, stop))
                labels.extend([cls] * (stop - start))
            keys_arr = np.asarray(keys, dtype=np.int64)
            missing = keys_arr[~self.records.contains_all(keys_arr)]
            if len(missing):
                raise InsightFaceFormatError(f"{rec}: image record {missing[0]} is listed by "
                                             "an identity but absent from the index")
        else:  # no header: every record is an image whose label is its class
            keys, raw = [], []
            for k in self.records.keys():
                h, _ = self.records.header(k)
                keys.append(k)
                raw.append(h.label[0] if isinstance(h.label, tuple) else h.label)
            _, labels = np.unique(np.asarray(raw, dtype=np.float64), return_inverse=True)
        if not keys:
            raise InsightFaceFormatError(f"{rec} holds no images")
        self.keys = np.asarray(keys, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1
        self.source = str(rec)

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, i: int) -> str:
        return f"{self.source}, record {int(self.keys[i])}"

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8 RGB."""
        _, data = self.records.header(int(self.keys[i]))
        return load_image(data, name=self.describe(i))


# ------------------------------------------------------------------------------ .bin


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it; nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
    return codecs.encode(text, "latin1")


def _safe_dtype(name, align=False, copy=False):
    dtype = np.dtype(name)
    if dtype not in (np.dtype(bool), np.dtype(np.uint8)):
        raise pickle.UnpicklingError(f"numpy dtype {dtype} is not allowed (bool, uint8 only)")
    return dtype


def _safe_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    if dtype_code not in (b"b", "b") or shape != (0,):
        raise pickle.UnpicklingError("malformed numpy array")
    # numpy pickles an empty int8 placeholder; the real dtype (checked by _safe_dtype)
    # and data arrive through __setstate__.
    return np.ndarray.__new__(np.ndarray, shape, np.int8)


def _safe_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype not in (np.dtype(bool), np.dtype(np.uint8)):
        raise pickle.UnpicklingError("only bool/uint8 numpy scalars are allowed")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar")
    return np.frombuffer(data, dtype)[0]


def _safe_frombuffer(buffer, dtype, shape, order="C"):
    dtype = _safe_dtype(dtype)
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(shape, tuple):
        raise pickle.UnpicklingError("malformed numpy array")
    return np.frombuffer(bytes(buffer), dtype).reshape(shape, order=order)


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain data: no class or function outside a short allow-list is ever
    looked up, so a pickle asking for ``os.system`` (or anything else) fails before
    anything runs. Allowed: bytes (protocol-2 ``_codecs.encode(str, 'latin1')``) and numpy
    bool/uint8 arrays and scalars."""

    _ALLOWED = {
        ("_codecs", "encode"): _latin1_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy.core.multiarray", "scalar"): _safe_scalar,
        ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
        ("numpy._core.multiarray", "scalar"): _safe_scalar,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a .bin file may "
                                         "only hold image bytes and booleans") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a .bin file")


def _to_bool(value, path, k) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise InsightFaceFormatError(f"{path}: label {k} is {type(value).__name__} {value!r:.40}, "
                                 "not a boolean: the file is not an InsightFace .bin")


def _to_bytes(value, path, k) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    raise InsightFaceFormatError(f"{path}: image {k} is {type(value).__name__}, not encoded "
                                 "image bytes: the file is not an InsightFace .bin")


@dataclass
class BinPairs:
    """An InsightFace ``.bin`` pair set: ``images[2k], images[2k + 1]`` is pair ``k``."""

    name: str
    images: list[bytes]
    same: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.same)

    @property
    def folds(self) -> np.ndarray:
        """The standard protocol folds: 10 contiguous blocks of pairs."""
        n = len(self.same)
        return np.arange(n) * 10 // n

    def describe(self, i: int) -> str:
        return f"{self.name}, image {i}"

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8 RGB (JPEG/PNG decoded by Pillow)."""
        return load_image(self.images[i], name=self.describe(i))


def read_bin(path: str | os.PathLike, max_bytes: int = 4 << 30) -> BinPairs:
    """Read an InsightFace ``.bin`` pair set safely (see :class:`RestrictedUnpickler`).

    Raises:
        FileNotFoundError: no such file.
        InsightFaceFormatError: not a valid ``.bin`` (including any pickle that asks for
            code: it is refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".bin pair set {path} not found: give e.g. "
                                "faces_webface_112x112/lfw.bin")
    if path.stat().st_size > max_bytes:
        raise InsightFaceFormatError(f"{path} is {path.stat().st_size} bytes, more than "
                                     f"max_bytes={max_bytes}: pass a larger max_bytes if it "
                                     "is really a pair set")
    data = path.read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise InsightFaceFormatError(f"{path} was refused: {err}. It is not a plain "
                                     "InsightFace .bin; do not use this file") from None
    except RecursionError:
        raise InsightFaceFormatError(f"{path}: the pickle nests too deeply: not a .bin "
                                     "file") from None
    except Exception as err:  # any malformed pickle: truncated, bad opcodes, bad types
        raise InsightFaceFormatError(f"{path} is not a readable .bin pickle "
                                     f"({type(err).__name__}: {err}): re-copy the file") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise InsightFaceFormatError(f"{path} holds a {type(obj).__name__}, not the pair "
                                     "(bins, issame_list) of an InsightFace .bin")
    bins, issame = obj
    if isinstance(issame, np.ndarray):
        issame = issame.tolist() if issame.ndim == 1 else None
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise InsightFaceFormatError(f"{path}: expected (list of image bytes, list of "
                                     "booleans), got other types")
    if len(issame) == 0 or len(bins) != 2 * len(issame):
        raise InsightFaceFormatError(f"{path}: {len(bins)} images for {len(issame)} pairs; "
                                     "a .bin holds exactly two images per pair")
    images = [_to_bytes(b, path, k) for k, b in enumerate(bins)]
    same = np.array([_to_bool(v, path, k) for k, v in enumerate(issame)], dtype=bool)
    return BinPairs(path.stem, images, same)


def write_bin(path: str | os.PathLike, images: list[bytes], same) -> None:
    """Write a ``.bin`` pair set as InsightFace does (protocol 4 pickle of plain data)."""
    same = [bool(v) for v in same]
    if len(images) != 2 * len(same):
        raise ValueError(f"{len(images)} images for {len(same)} pairs: give two per pair")
    with open(path, "wb") as fh:
        pickle.dump((list(map(bytes, images)), same), fh, protocol=4)
