"""The alignment path on real photos: dlib's own chips, face choice, no-face handling, cache."""

from __future__ import annotations

import os
import pickle
import sys
import warnings

import numpy as np
import pytest
from _processes import run_in_two_processes

from xcos_xai.data import align
from xcos_xai.data.align import (
    LFW_FALLBACK_BOX,
    AlignedFace,
    FaceAligner,
    MultipleFacesWarning,
    NoFaceError,
    choose_face,
)
from xcos_xai.data.images import ImageError, load_image

dlib = pytest.importorskip("dlib")

# LFW photos (deep-funneled) with known detections (HOG detector, upsample 1)
ONE_FACE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Adam_Sandler/Adam_Sandler_0001.jpg",
            "Angelina_Jolie/Angelina_Jolie_0001.jpg"]
SEVERAL_FACES = ["Alberta_Lee/Alberta_Lee_0001.jpg",  # a larger face off-centre
                 "Alejandro_Avila/Alejandro_Avila_0003.jpg",  # an equally large one
                 "Charles_Schumer/Charles_Schumer_0002.jpg",  # 129 px vs 89 px, 63 px off
                 "Abdulaziz_Kamilov/Abdulaziz_Kamilov_0001.jpg"]  # three faces
NO_FACE = "Abdoulaye_Wade/Abdoulaye_Wade_0003.jpg"


@pytest.fixture(scope="module")
def lfw(lfw_root):
    return lfw_root / "lfw-deepfunneled"


@pytest.fixture(scope="module")
def photo(lfw):
    return lfw / ONE_FACE[0]


def _dlib_chip(img, box, size=150, padding=0.25):
    """dlib's own pipeline for one box: the reference the aligner must equal."""
    sp = dlib.shape_predictor(str(align._model_path("shape_predictor_5_face_landmarks.dat")))
    return dlib.get_face_chip(img, sp(img, dlib.rectangle(*box)), size=size, padding=padding)


def _centre_distance(box, w, h):
    return np.hypot((box[0] + box[2]) / 2 - w / 2, (box[1] + box[3]) / 2 - h / 2)


# ------------------------------------------------------------------------- dlib's chips


def test_chip_equals_dlibs_own_pipeline(photo):
    face = FaceAligner()(photo)
    img = load_image(photo)  # the same decoded pixels (JPEG decoders differ by a level)
    det = dlib.get_frontal_face_detector()(img, 1)
    assert len(det) == 1
    d = det[0]
    expected = _dlib_chip(img, (d.left(), d.top(), d.right(), d.bottom()))
    assert isinstance(face, AlignedFace)
    assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
    np.testing.assert_array_equal(face.chip, expected)
    assert face.n_faces_found == 1 and face.box == (d.left(), d.top(), d.right(), d.bottom())
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    left, top, right, bottom = face.box
    assert ((face.landmarks >= (left - 10, top - 10)) & (face.landmarks <= (right + 10,
                                                                           bottom + 10))).all()
    assert face.source.endswith("Aaron_Eckhart_0001.jpg'") and face.reason == "one face detected"


def test_other_chip_sizes_and_padding(photo):
    img = load_image(photo)
    face = FaceAligner(chip_size=112, padding=0.1)(img)
    assert face.chip.shape == (112, 112, 3)
    np.testing.assert_array_equal(face.chip, _dlib_chip(img, face.box, 112, 0.1))


def test_the_model_file_is_found_without_importing_its_package():
    path = align._model_path("shape_predictor_5_face_landmarks.dat")
    assert path.is_file() and path.stat().st_size > 5_000_000
    with pytest.raises(FileNotFoundError, match="reinstall face-recognition-models"):
        align._model_path("no_such_model.dat")
    assert "face_recognition_models" not in sys.modules


def test_dlib_objects_are_built_once_per_process():
    first = align._dlib_models()
    assert align._dlib_models()[1] is first[1] and align._dlib_models()[2] is first[2]
    aligner = FaceAligner(cache_dir="/nonexistent")
    blob = pickle.dumps(aligner)
    assert len(blob) < 1000  # settings only: no dlib objects travel to worker processes
    assert pickle.loads(blob).config() == aligner.config()


# ----------------------------------------------------------------------- several faces


def test_choose_face_rule_by_hand():
    # a 200 x 100 image: a 40x40 box at the centre beats a 60x60 box in the corner
    assert choose_face([(0, 0, 60, 60), (80, 30, 120, 70)], 200, 100) == 1
    # of two equally central boxes, the larger wins; ties go to the first
    assert choose_face([(90, 40, 110, 60), (70, 20, 130, 80)], 200, 100) == 1
    assert choose_face([(10, 10, 50, 50), (150, 50, 190, 90)], 200, 100) == 0
    # the documented score: area * (1 - d / r) ** 4, r = half the diagonal
    w, h = 400, 300
    central = (180, 130, 220, 170)  # 40x40 at the centre: score 1600
    off = (300, 125, 350, 175)  # 50x50, d = 125 = 0.5 r: score 2500 / 16 = 156
    assert choose_face([off, central], w, h) == 1
    big_off = (250, 50, 450, 250)  # 200x200, d = 200 = 0.8 r: 40000 * 0.0016 = 64
    assert choose_face([big_off, central], w, h) == 1
    near_big = (155, 70, 285, 200)  # 130x130 at d ~ 20.6: 16900 * 0.84 = 14200 > 1600
    assert choose_face([central, near_big], w, h) == 1
    assert choose_face([], w, h) == 0


@pytest.mark.parametrize("name", SEVERAL_FACES)
def test_on_lfw_the_centred_face_wins_and_a_warning_says_so(lfw, name):
    img = load_image(lfw / name)
    aligner = FaceAligner()
    boxes = aligner.detect(img)
    assert len(boxes) >= 2
    nearest = min(boxes, key=lambda b: _centre_distance(b, 250, 250))
    with pytest.warns(MultipleFacesWarning, match=f"{len(boxes)} faces detected"):
        face = aligner(lfw / name)
    assert face.box == nearest and face.n_faces_found == len(boxes)
    np.testing.assert_array_equal(face.chip, _dlib_chip(img, nearest))


def test_on_lfw_a_small_false_detection_nearer_the_centre_loses(lfw):
    # Pervez_Musharraf_0005: the face (89 px) is 36 px off-centre; the detector also fires
    # on his ear (43 px), 30 px off-centre. The rule takes the face, not the ear. This is
    # the one LFW photo of 683 with several detections where "nearest the centre" is wrong.
    img = load_image(lfw / "Pervez_Musharraf/Pervez_Musharraf_0005.jpg")
    boxes = FaceAligner().detect(img)
    assert len(boxes) == 2
    nearest = min(boxes, key=lambda b: _centre_distance(b, 250, 250))
    chosen = boxes[choose_face(boxes, 250, 250)]
    assert chosen != nearest and (chosen[2] - chosen[0]) > 2 * (nearest[2] - nearest[0])


def test_two_faces_side_by_side_take_the_central_one(lfw):
    a, b = load_image(lfw / ONE_FACE[1]), load_image(lfw / ONE_FACE[2])
    canvas = np.full((250, 600, 3), 255, np.uint8)
    canvas[:, 100:350] = a  # face centre at x ~ 225: 75 px from the centre (300)
    canvas[:, 350:600] = b  # face centre at x ~ 475: 175 px from the centre
    with pytest.warns(MultipleFacesWarning, match="2 faces detected.*largest-and-most-central"):
        face = FaceAligner()(canvas)
    assert face.n_faces_found == 2
    left, _, right, _ = face.box
    assert 100 < (left + right) / 2 < 350
    np.testing.assert_array_equal(face.chip, FaceAligner()(a).chip)  # a's chip, same pixels


# -------------------------------------------------------------------------- no face


def test_no_face_raises_and_the_ways_out_work():
    flat = np.full((120, 100, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match=r"numpy array of shape \(120, 100, 3\).*"
                       r"assume_aligned=True.*fallback_box"):
        FaceAligner()(flat)
    assert issubclass(NoFaceError, ValueError)
    face = FaceAligner()(flat, assume_aligned=True)
    assert face.chip.shape == (150, 150, 3) and (face.chip == 128).all()
    assert face.reason.startswith("assume_aligned") and face.landmarks is None
    assert face.box == (0, 0, 100, 120) and face.n_faces_found == 0
    fallback = FaceAligner(fallback_box=(10, 10, 90, 110))(flat)
    assert fallback.reason.startswith("no face detected: fallback box")
    assert fallback.box == (10, 10, 90, 110) and fallback.chip.shape == (150, 150, 3)
    with pytest.raises(NoFaceError, match="lies outside"):
        FaceAligner(fallback_box=(200, 200, 300, 300))(flat)


def test_assume_aligned_keeps_a_chip_of_the_right_size_exactly(photo):
    chip = FaceAligner()(photo).chip
    again = FaceAligner()(chip, assume_aligned=True)
    np.testing.assert_array_equal(again.chip, chip)
    assert FaceAligner(chip_size=112)(chip, assume_aligned=True).chip.shape == (112, 112, 3)


def test_lfw_preset_uses_the_known_box_when_nothing_is_detected(lfw):
    path = lfw / NO_FACE
    with pytest.raises(NoFaceError, match="Abdoulaye_Wade_0003.jpg"):
        FaceAligner()(path)
    aligner = FaceAligner.for_lfw()
    assert aligner.fallback_box == LFW_FALLBACK_BOX == (64, 64, 186, 186)
    face = aligner(path)
    assert face.n_faces_found == 0 and face.box == LFW_FALLBACK_BOX
    np.testing.assert_array_equal(face.chip, _dlib_chip(load_image(path), LFW_FALLBACK_BOX))
    assert FaceAligner.for_lfw(chip_size=112).chip_size == 112


def test_bad_inputs_and_settings():
    with pytest.raises(ImageError, match="does not exist"):
        FaceAligner()("/no/such/photo.jpg")
    with pytest.raises(ImageError, match="does not exist"):
        FaceAligner(cache_dir="/tmp/unused")("/no/such/photo.jpg")
    with pytest.raises(ImageError, match="too small"):
        FaceAligner()(np.zeros((20, 20, 3), np.uint8))
    for kwargs in ({"chip_size": 8}, {"chip_size": 150.5}, {"padding": -1},
                   {"upsample": 9}, {"fallback_box": (10, 10, 5, 20)},
                   {"fallback_box": (1, 2, 3)}):
        with pytest.raises(ValueError):
            FaceAligner(**kwargs)


# ------------------------------------------------------------------------------ cache


class _Counter:
    def __init__(self, monkeypatch):
        self.detect = 0
        self.load = 0
        real_detect, real_load = FaceAligner.detect, align.load_image

        def detect(aligner, image):
            self.detect += 1
            return real_detect(aligner, image)

        def load(*args, **kwargs):
            self.load += 1
            return real_load(*args, **kwargs)

        monkeypatch.setattr(FaceAligner, "detect", detect)
        monkeypatch.setattr(align, "load_image", load)


def test_cache_returns_identical_faces_without_decoding_or_detecting(photo, tmp_path,
                                                                      monkeypatch):
    count = _Counter(monkeypatch)
    first = FaceAligner(cache_dir=tmp_path)(photo)
    assert (count.detect, count.load) == (1, 1)
    second = FaceAligner(cache_dir=tmp_path)(photo)  # a new aligner: only the disk is shared
    assert (count.detect, count.load) == (1, 1)
    np.testing.assert_array_equal(first.chip, second.chip)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)
    assert (second.box, second.n_faces_found, second.reason, second.source) == (
        first.box, first.n_faces_found, first.reason, first.source)
    entries = list(tmp_path.rglob("*.npy"))
    assert len(entries) == 1
    np.load(entries[0], allow_pickle=False)  # plain data
    # the key is the file's bytes: the same bytes under another name hit the entry
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(photo.read_bytes())
    assert FaceAligner(cache_dir=tmp_path)(copy).source.endswith("copy.jpg'")
    assert count.detect == 1
    # other settings never reuse the entry
    assert FaceAligner(cache_dir=tmp_path, chip_size=112)(photo).chip.shape == (112, 112, 3)
    FaceAligner(cache_dir=tmp_path, upsample=0)(photo)
    FaceAligner(cache_dir=tmp_path)(photo, assume_aligned=True)
    assert count.detect == 3 and len(list(tmp_path.rglob("*.npy"))) == 4


def test_cache_keys_in_memory_inputs_by_their_pixels(photo, tmp_path, monkeypatch):
    count = _Counter(monkeypatch)
    img = load_image(photo)
    aligner = FaceAligner(cache_dir=tmp_path)
    a = aligner(img)
    b = aligner(img.copy())
    assert count.detect == 1
    np.testing.assert_array_equal(a.chip, b.chip)
    flat = np.full((100, 100, 3), 128, np.uint8)
    aligner(flat, assume_aligned=True)
    assert aligner(flat, assume_aligned=True).landmarks is None
    with pytest.raises(NoFaceError):  # failures are not cached: they raise every time
        aligner(flat)


def test_a_damaged_entry_is_recomputed(photo, tmp_path):
    aligner = FaceAligner(cache_dir=tmp_path)
    good = aligner(photo)
    (entry,) = tmp_path.rglob("*.npy")
    entry.write_bytes(entry.read_bytes()[:100])
    np.testing.assert_array_equal(aligner(photo).chip, good.chip)
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False)["chip"], good.chip)


def test_a_failed_write_leaves_nothing_behind(photo, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(align.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        FaceAligner(cache_dir=tmp_path)(photo)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _fill(cache, paths, barrier, queue):
    barrier.wait()  # both processes start writing the same entries at the same moment
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chips = [FaceAligner.for_lfw(cache_dir=cache)(p).chip for p in paths]
    queue.put((os.getpid(), align._LOCAL.state[0], [c.tobytes() for c in chips]))


def test_two_processes_filling_the_cache_leave_valid_entries(lfw, tmp_path):
    paths = [lfw / n for n in ONE_FACE + SEVERAL_FACES + [NO_FACE]]
    results, pids = run_in_two_processes(_fill, tmp_path, paths)
    assert {r[0] for r in results} == pids
    for pid, model_pid, _ in results:
        assert model_pid == pid  # each process built its own dlib objects
    assert results[0][2] == results[1][2]
    assert len(list(tmp_path.rglob("*.npy"))) == len(paths)
    assert not list(tmp_path.rglob("*.tmp"))
    for entry in tmp_path.rglob("*.npy"):
        np.load(entry, allow_pickle=False)  # whole, readable records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = [FaceAligner.for_lfw(cache_dir=tmp_path)(p).chip for p in paths]
        fresh = [FaceAligner.for_lfw()(p).chip for p in paths]
    for got, ref, child in zip(again, fresh, results[0][2]):
        np.testing.assert_array_equal(got, ref)
        assert child == ref.tobytes()


# -------------------------------------------------------------------------- many images


def test_align_many_in_two_processes_matches_one(lfw, tmp_path):
    paths = [lfw / n for n in ONE_FACE + SEVERAL_FACES]
    aligner = FaceAligner()
    with pytest.warns(MultipleFacesWarning, match="4 of 7 images had several faces"):
        serial = aligner.align_many(paths, progress=False)
    with pytest.warns(MultipleFacesWarning):
        parallel = aligner.align_many(paths, workers=2, progress=False)
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s.chip, p.chip)
        assert (s.box, s.n_faces_found, s.source) == (p.box, p.n_faces_found, p.source)


def test_align_many_errors(lfw, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [lfw / ONE_FACE[0], bad, np.full((60, 60, 3), 128, np.uint8)]
    with pytest.raises(ImageError, match="bad.jpg"):
        FaceAligner().align_many(paths, progress=False)
    with pytest.warns(UserWarning, match="2 of 3 images failed"):
        out = FaceAligner().align_many(paths, progress=False, errors="none")
    assert out[0].chip.shape == (150, 150, 3) and out[1] is None and out[2] is None
    with pytest.raises(ImageError, match="bad.jpg"):
        FaceAligner().align_many(paths[:2] * 3, workers=2, progress=False)
    with pytest.raises(ValueError, match="errors="):
        FaceAligner().align_many(paths, errors="skip")
    assert FaceAligner().align_many([], progress=False) == []
