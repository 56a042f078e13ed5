"""The image-loading path: every kind of input, and one clear error for bad ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from xcos_xai.data.images import ImageError, load_image


def _rgb(h=40, w=50):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_path_pil_bytes_array_tensor_agree(tmp_path):
    arr = _rgb()
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    for source in (path, str(path), path.read_bytes(), Image.fromarray(arr), arr,
                   torch.from_numpy(arr), torch.from_numpy(arr).permute(2, 0, 1),
                   arr.astype(np.float32) / 255):
        np.testing.assert_array_equal(load_image(source), arr)


def test_grey_rgba_palette_cmyk_and_16bit(tmp_path):
    grey = np.full((40, 40), 90, np.uint8)
    np.testing.assert_array_equal(load_image(grey), np.full((40, 40, 3), 90, np.uint8))
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: composited on white
    np.testing.assert_array_equal(load_image(rgba), np.full((40, 40, 3), 255, np.uint8))
    rgba[..., 3] = 255
    assert tuple(load_image(Image.fromarray(rgba))[0, 0]) == (200, 0, 0)
    pal = Image.fromarray(_rgb()).convert("P")
    np.testing.assert_array_equal(load_image(pal), np.asarray(pal.convert("RGB")))
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    r, g, b = load_image(cmyk)[20, 20].astype(int)
    assert r > 200 and g < 60 and b < 60
    sixteen = tmp_path / "s.png"
    Image.fromarray(np.full((40, 40), 65535, np.uint16)).save(sixteen)
    assert load_image(sixteen).min() == 255
    np.testing.assert_array_equal(load_image(np.full((40, 40, 3), 32896, np.uint16)),
                                  np.full((40, 40, 3), 128, np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (60, 40, 3)
    assert out[:30].mean() > 200 and out[30:].mean() < 50  # white half now on top


@pytest.mark.parametrize("content,match", [
    (b"", "not a readable image"),
    (b"hello, this is text", "not a readable image"),
])
def test_non_images(tmp_path, content, match):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=f"x.jpg.*{match}"):
        load_image(path)


def test_truncated_and_missing_files(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 200)).save(buf, "JPEG")
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="t.jpg.*corrupt or truncated"):
        load_image(path)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_tiny_huge_nan_and_wrong_shapes(monkeypatch):
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((10, 100, 3), np.uint8))
    monkeypatch.setattr("xcos_xai.data.images.MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression"):
        load_image(np.zeros((40, 40, 3), np.uint8))
    monkeypatch.undo()
    bad = np.zeros((40, 40, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(bad)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((40, 40, 3), 2.0))
    with pytest.raises(ImageError, match="expected"):
        load_image(np.zeros((40, 40, 5), np.uint8))
    with pytest.raises(ImageError, match="cannot read"):
        load_image(42)


def test_decompression_bomb_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)
    monkeypatch.setattr("xcos_xai.data.images.MAX_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match="big.png.*decompression"):
        load_image(path)


@settings(max_examples=60, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64]),
              st.tuples(st.integers(0, 70), st.integers(0, 70),
                        st.sampled_from([None, 1, 2, 3, 4, 5])).map(
                  lambda t: t[:2] if t[2] is None else t)))
def test_arrays_give_rgb_or_one_image_error(arr):
    try:
        out = load_image(arr)
    except ImageError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert min(out.shape[:2]) >= 32
