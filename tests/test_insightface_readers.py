"""InsightFace readers: .rec/.idx (pure-Python RecordIO) and .bin pair sets (restricted
unpickling), on files these tests write themselves."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xcos_xai.data.insightface import (
    RECORD_MAGIC,
    InsightFaceFormatError,
    IRHeader,
    RecordFaces,
    RecordFile,
    RecordWriter,
    pack_record,
    read_bin,
    unpack_record,
    write_bin,
)


def _jpeg(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _write_insightface_rec(folder, counts):
    """InsightFace layout: record 0 header, image records, one record per identity."""
    n_images = sum(counts)
    first_id = n_images + 1
    images = {}
    with RecordWriter(folder / "train.rec") as w:
        w.write(0, pack_record(IRHeader(2, (float(first_id), float(first_id + len(counts))),
                                        0, 0)))
        key = 1
        for cls, c in enumerate(counts):
            for _ in range(c):
                images[key] = _jpeg(key)
                w.write(key, pack_record(IRHeader(0, float(cls), key, 0), images[key]))
                key += 1
        start = 1
        for cls, c in enumerate(counts):
            w.write(first_id + cls, pack_record(IRHeader(2, (float(start), float(start + c)),
                                                         0, 0)))
            start += c
    return images


def test_rec_roundtrip_insightface_layout(tmp_path):
    images = _write_insightface_rec(tmp_path, [3, 1, 2])
    faces = RecordFaces(tmp_path)
    assert faces.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert faces.keys.tolist() == [1, 2, 3, 4, 5, 6]
    assert faces.num_classes == 3
    expected = np.asarray(Image.open(io.BytesIO(images[5])).convert("RGB"))
    assert np.array_equal(faces.load(4), expected)


def test_rec_without_header_uses_each_records_label(tmp_path):
    with RecordWriter(tmp_path / "x.rec") as w:
        for k, lab in enumerate([7.0, 3.0, 7.0]):
            w.write(k + 10, pack_record(IRHeader(0, lab, k, 0), _jpeg(k)))
    faces = RecordFaces(tmp_path / "x.rec")
    assert faces.labels.tolist() == [1, 0, 1]  # classes 3 -> 0, 7 -> 1


def test_multipart_record_is_joined_with_the_magic(tmp_path):
    # A payload split by the writer where it held the magic: parts (cflag 1, 2, 3).
    parts = [b"abcd", b"ef", b"ghij"]
    raw = b""
    for flag, part in zip((1, 2, 3), parts):
        raw += struct.pack("<II", RECORD_MAGIC, (flag << 29) | len(part))
        raw += part + b"\0" * ((-len(part)) % 4)
    (tmp_path / "m.rec").write_bytes(raw)
    (tmp_path / "m.idx").write_text("0\t0\n")
    magic = struct.pack("<I", RECORD_MAGIC)
    assert RecordFile(tmp_path / "m.rec").read(0) == b"abcd" + magic + b"ef" + magic + b"ghij"


def test_irheader_with_label_array_roundtrip():
    payload = pack_record(IRHeader(3, (1.0, 2.5, -4.0), 9, 11), b"IMG")
    head, rest = unpack_record(payload)
    assert head == IRHeader(3, (1.0, 2.5, -4.0), 9, 11) and rest == b"IMG"
    assert len(payload) == 24 + 12 + 3


@pytest.mark.parametrize("damage, message", [
    (lambda rec, idx: rec.write_bytes(rec.read_bytes()[:-5]), "truncated"),
    (lambda rec, idx: rec.write_bytes(b"\x00" * 4 + rec.read_bytes()[4:]), "magic"),
    (lambda rec, idx: idx.write_text("0\tzero\n"), "key<TAB>offset"),
    (lambda rec, idx: idx.write_text("0\t999999\n"), "past the end"),
])
def test_damaged_rec_files_give_one_clear_error(tmp_path, damage, message):
    _write_insightface_rec(tmp_path, [2, 2])
    damage(tmp_path / "train.rec", tmp_path / "train.idx")
    with pytest.raises(InsightFaceFormatError, match=message):
        RecordFaces(tmp_path)
        faces = RecordFaces(tmp_path)
        for i in range(len(faces)):
            faces.load(i)


def test_bin_roundtrip(tmp_path):
    imgs = [_jpeg(i) for i in range(6)]
    write_bin(tmp_path / "lfw.bin", imgs, [True, False, True])
    pairs = read_bin(tmp_path / "lfw.bin")
    assert pairs.name == "lfw" and pairs.same.tolist() == [True, False, True]
    assert pairs.images == imgs
    assert np.array_equal(pairs.load(3), np.asarray(Image.open(io.BytesIO(imgs[3]))))


def test_bin_as_python2_style_pickle_with_numpy_bools(tmp_path):
    # Protocol 2 stores bytes through _codecs.encode; labels as a numpy bool array.
    data = pickle.dumps(([b"a", b"b"], np.array([True])), protocol=2)
    (tmp_path / "p2.bin").write_bytes(data)
    pairs = read_bin(tmp_path / "p2.bin")
    assert pairs.images == [b"a", b"b"] and pairs.same.tolist() == [True]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_code_executing_bin_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Evil(str(marker))], [True])))
    with pytest.raises(InsightFaceFormatError, match="refused.*mkdir"):
        read_bin(tmp_path / "evil.bin")
    assert not marker.exists()


def test_bin_with_wrong_structure(tmp_path):
    (tmp_path / "a.bin").write_bytes(pickle.dumps(([b"x"], [True])))
    with pytest.raises(InsightFaceFormatError, match="1 images for 1 pairs"):
        read_bin(tmp_path / "a.bin")
    (tmp_path / "b.bin").write_bytes(pickle.dumps(([b"x", b"y"], ["yes"])))
    with pytest.raises(InsightFaceFormatError, match="not a boolean"):
        read_bin(tmp_path / "b.bin")
    (tmp_path / "c.bin").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(InsightFaceFormatError, match="dict"):
        read_bin(tmp_path / "c.bin")


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(st.binary(max_size=300))
def test_bin_fuzz_random_bytes(tmp_path, data):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    try:
        read_bin(path)
    except InsightFaceFormatError:
        pass


@_FUZZ
@given(st.integers(0, 200), st.binary(max_size=8))
def test_bin_fuzz_truncated_and_corrupted(tmp_path, cut, junk):
    good = pickle.dumps(([b"\xff\xd8img1", b"img2", b"img3", b"img4"], [True, False]),
                        protocol=4)
    path = tmp_path / "cut.bin"
    path.write_bytes(good[:cut] + junk)
    try:
        pairs = read_bin(path)
        assert len(pairs.images) == 2 * len(pairs.same)
    except InsightFaceFormatError:
        pass


@_FUZZ
@given(st.binary(max_size=200), st.text(max_size=60))
def test_rec_fuzz_random_files(tmp_path, rec, idx):
    (tmp_path / "train.rec").write_bytes(rec)
    (tmp_path / "train.idx").write_text(idx, encoding="utf-8", errors="replace")
    try:
        faces = RecordFaces(tmp_path)
        for i in range(len(faces)):
            faces.records.read(int(faces.keys[i]))
    except InsightFaceFormatError:
        pass


@_FUZZ
@given(st.integers(0, 400), st.binary(max_size=12))
def test_rec_fuzz_truncated_real_file(tmp_path, cut, junk):
    folder = tmp_path / f"r{cut}"
    folder.mkdir(exist_ok=True)
    _write_insightface_rec(folder, [2, 1])
    rec = folder / "train.rec"
    data = rec.read_bytes()
    rec.write_bytes(data[:cut] + junk)
    try:
        faces = RecordFaces(folder)
        for i in range(len(faces)):
            faces.records.read(int(faces.keys[i]))
    except InsightFaceFormatError:
        pass
