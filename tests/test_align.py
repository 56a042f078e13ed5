"""The alignment path on real photos: dlib's own chips, face choice, cache."""

from __future__ import annotations

import multiprocessing as mp
import warnings

import numpy as np
import pytest

from xcos_xai.data.align import FaceAligner, MultipleFacesWarning, NoFaceError, choose_face
from xcos_xai.data.images import load_image
from xcos_xai.models.dlib_dat import model_file

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def photo(lfw_root):
    return lfw_root / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


def test_chip_equals_dlibs_own_pipeline(photo):
    face = FaceAligner()(photo)
    img = load_image(photo)  # the same decoded pixels (JPEG decoders differ by a few levels)
    det = dlib.get_frontal_face_detector()(img, 1)
    sp = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    expected = dlib.get_face_chip(img, sp(img, det[0]), size=150, padding=0.25)
    assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
    np.testing.assert_array_equal(face.chip, expected)
    assert face.n_faces_found == 1 and face.landmarks.shape == (5, 2)


def test_no_face_raises_and_assume_aligned_works():
    flat = np.full((120, 100, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="assume_aligned=True"):
        FaceAligner()(flat)
    face = FaceAligner()(flat, assume_aligned=True)
    assert face.chip.shape == (150, 150, 3) and face.reason.startswith("assumed")
    fallback = FaceAligner(fallback_box=(10, 10, 90, 110))(flat)
    assert fallback.reason.startswith("no face detected")


def test_two_faces_take_the_central_large_one_and_warn(photo):
    face = load_image(photo)
    canvas = np.full((250, 700, 3), 255, np.uint8)
    small = face[::2, ::2]  # 125x125: a smaller face at the left border
    canvas[60:185, 0:125] = small
    canvas[:, 225:475] = face  # the full-size face in the middle
    with pytest.warns(MultipleFacesWarning, match="2 faces"):
        out = FaceAligner()(canvas)
    left, _, right, _ = out.box
    assert 225 < (left + right) / 2 < 475


def test_choose_face_rule_by_hand():
    # image 200x100; a 40x40 box at the centre beats a 60x60 box in the corner
    boxes = [(0, 0, 60, 60), (80, 30, 120, 70)]
    assert choose_face(boxes, 200, 100) == 1
    # of two equally central boxes, the larger wins
    assert choose_face([(90, 40, 110, 60), (70, 20, 130, 80)], 200, 100) == 1


def test_cache_returns_identical_chips_without_detecting_again(photo, tmp_path, monkeypatch):
    aligner = FaceAligner(cache_dir=tmp_path)
    first = aligner(photo)
    calls = []
    monkeypatch.setattr(FaceAligner, "_align", lambda *a, **k: calls.append(1))
    second = FaceAligner(cache_dir=tmp_path)(photo)
    assert not calls
    np.testing.assert_array_equal(first.chip, second.chip)
    assert second.box == first.box
    # other settings never reuse the entry
    other = FaceAligner(cache_dir=tmp_path, chip_size=112)
    monkeypatch.undo()
    assert other(photo).chip.shape == (112, 112, 3)


def _fill(args):
    cache, paths = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [FaceAligner.for_lfw(cache_dir=cache)(p).chip.sum() for p in paths]


def test_two_processes_filling_the_cache_leave_valid_entries(lfw_root, tmp_path):
    paths = sorted((lfw_root / "lfw-deepfunneled").glob("B*/*.jpg"))[:12]
    with mp.get_context("fork").Pool(2) as pool:
        sums = pool.map(_fill, [(tmp_path, paths), (tmp_path, paths)])
    assert sums[0] == sums[1]
    entries = list(tmp_path.rglob("*.npz"))
    assert len(entries) == len(paths) and not list(tmp_path.rglob("*.tmp*"))
    again = [FaceAligner.for_lfw(cache_dir=tmp_path)(p).chip.sum() for p in paths]
    assert again == sums[0]
