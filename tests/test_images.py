"""The image-loading path: every kind of input, the documented handling, one clear error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from xcos_xai.data import images
from xcos_xai.data.images import ImageError, describe_source, load_image


def _rgb(h=40, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG of a uint16 ``(H, W)`` or ``(H, W, C)`` array (Pillow cannot write RGB16)."""
    arr = np.asarray(arr, np.uint16)
    arr = arr[..., None] if arr.ndim == 2 else arr
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _encoded(arr, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------- good inputs


def test_every_kind_of_source_gives_the_same_pixels(tmp_path):
    arr = _rgb()
    path = tmp_path / "a.png"
    path.write_bytes(_encoded(arr))
    data = path.read_bytes()
    sources = [path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data),
               Image.fromarray(arr), arr, arr.astype(np.float32) / 255,
               arr.astype(np.float64) / 255, np.moveaxis(arr, -1, 0).copy(),
               arr.astype(np.int64), torch.from_numpy(arr), torch.from_numpy(arr).permute(2, 0, 1),
               torch.from_numpy(arr).float().div(255).permute(2, 0, 1).requires_grad_(),
               torch.from_numpy(arr).half().div(255)]
    with open(path, "rb") as f:
        sources.append(f)
        for source in sources:
            out = load_image(source)
            assert out.dtype == np.uint8 and out.shape == (40, 50, 3) and out.flags.c_contiguous
            np.testing.assert_array_equal(out, arr, err_msg=describe_source(source))
    bf16 = load_image(torch.from_numpy(arr).to(torch.bfloat16).div(255))  # 8-bit mantissa
    assert np.abs(bf16.astype(int) - arr).max() <= 1


def test_output_is_a_fresh_copy():
    arr = _rgb()
    out = load_image(arr)
    out[:] = 0
    assert arr.any()
    pil = Image.fromarray(arr)
    load_image(pil)[:] = 0
    np.testing.assert_array_equal(np.asarray(pil), arr)


def test_grey_inputs_become_three_equal_channels(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (40, 36), dtype=np.uint8)
    expected = np.repeat(grey[..., None], 3, axis=2)
    path = tmp_path / "g.png"
    path.write_bytes(_encoded(grey))
    for source in (grey, grey[..., None], grey[None], path, Image.fromarray(grey),
                   torch.from_numpy(grey)):
        np.testing.assert_array_equal(load_image(source), expected)
    bilevel = Image.fromarray(grey > 128)  # mode "1"
    np.testing.assert_array_equal(load_image(bilevel)[..., 0], np.where(grey > 128, 255, 0))


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 0  # top half fully transparent
    rgba[20:30, :, 3] = 128  # half transparent
    rgba[30:, :, 3] = 255  # opaque
    path = tmp_path / "a.png"
    path.write_bytes(_encoded(rgba))
    for source in (rgba, path, Image.fromarray(rgba), torch.from_numpy(rgba)):
        out = load_image(source)
        assert tuple(out[0, 0]) == (255, 255, 255)
        assert tuple(out[25, 0]) == (227, 127, 127)  # 200*a + 255*(1-a), a = 128/255
        assert tuple(out[35, 0]) == (200, 0, 0)
    la = Image.fromarray(np.full((40, 40), 10, np.uint8)).convert("LA")
    la.putalpha(0)
    assert load_image(la).min() == 255
    # a palette image with a transparent index (as GIFs and some PNGs have)
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 40, 20))
    gif = tmp_path / "t.gif"
    pal.save(gif, transparency=0)
    out = load_image(gif)
    assert tuple(out[5, 5]) == (0, 255, 0) and tuple(out[35, 5]) == (255, 255, 255)


def test_palette_and_cmyk_become_rgb(tmp_path):
    pal = Image.fromarray(_rgb()).convert("P")
    np.testing.assert_array_equal(load_image(pal), np.asarray(pal.convert("RGB")))
    for name in ("c.jpg", "c.tif"):
        cmyk = tmp_path / name
        Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
        r, g, b = load_image(cmyk)[20, 20].astype(int)
        assert r > 200 and g < 60 and b < 60, name


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(48 * 40).reshape(40, 48) * 34).astype(np.uint16)  # 0 .. 65246
    expected = np.round(ramp / 65535 * 255).astype(np.uint8)
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(load_image(path)[..., 1], expected)
    np.testing.assert_array_equal(load_image(ramp)[..., 0], expected)
    np.testing.assert_array_equal(load_image(np.full((40, 40, 3), 32896, np.uint16)),
                                  np.full((40, 40, 3), 128, np.uint8))
    # 16-bit RGB and RGBA PNGs: Pillow keeps the high byte, within one level of exact
    rgb16 = np.stack([ramp, ramp[::-1], np.full_like(ramp, 65535)], axis=-1)
    for arr in (rgb16, np.concatenate([rgb16, np.full_like(ramp, 65535)[..., None]], -1)):
        out = load_image(_png16(arr))
        exact = np.round(rgb16 / 65535 * 255)
        assert out.shape == (40, 48, 3) and np.abs(out - exact).max() <= 1
    # a dark 16-bit image stays dark (not read as 8-bit)
    dark = tmp_path / "dark16.png"
    Image.fromarray(np.full((40, 40), 200, np.uint16)).save(dark)
    assert load_image(dark).max() == 1


def test_pil_int32_and_float_modes():
    np.testing.assert_array_equal(load_image(Image.fromarray(np.full((40, 40), 90, np.int32))),
                                  np.full((40, 40, 3), 90, np.uint8))
    as16 = load_image(Image.fromarray(np.full((40, 40), 65535, np.int32)))
    assert as16.min() == 255
    with pytest.raises(ImageError, match="32-bit"):
        load_image(Image.fromarray(np.full((40, 40), -5, np.int32)))
    f = Image.fromarray(np.full((40, 40), 77.0, np.float32))  # mode F: Pillow's 0..255 scale
    assert load_image(f).max() == 77
    f.putpixel((0, 0), float("nan"))
    with pytest.raises(ImageError, match="NaN"):
        load_image(f)


# EXIF orientation -> what a viewer shows, written from the EXIF specification
_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transposed
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise to display
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise to display
}


def _quadrants(h=40, w=64):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2:] = (0, 255, 0)
    arr[h // 2:, : w // 2] = (0, 0, 255)
    arr[h // 2:, w // 2:] = (255, 255, 255)
    return arr


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_png(tmp_path, orientation):
    arr = _quadrants()
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    img.save(path, exif=exif)
    np.testing.assert_array_equal(load_image(path), _UPRIGHT[orientation](arr))
    np.testing.assert_array_equal(load_image(Image.open(path)), _UPRIGHT[orientation](arr))


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (60, 40, 3)
    assert out[:28].mean() > 240 and out[32:].mean() < 15  # the white half is now on top


def test_name_is_used_in_messages():
    with pytest.raises(ImageError, match="my upload"):
        load_image(b"not an image", name="my upload")


# ------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"hello, this is text", "not a readable image"),
    (b"<html><body>404</body></html>", "not a readable image"),
    (bytes(range(256)) * 4, "not a readable image"),
    (b"\x89PNG\r\n\x1a\n", "corrupt or truncated|not a readable image"),  # signature only
    (b"\xff\xd8\xff\xe0", "corrupt or truncated|not a readable image"),  # JPEG start only
])
def test_non_image_files(tmp_path, content, match):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=f"x.jpg.*({match})"):
        load_image(path)
    with pytest.raises(ImageError, match=match):
        load_image(content)


@pytest.mark.parametrize("fmt,keep", [("JPEG", 0.5), ("JPEG", 0.9), ("PNG", 0.5),
                                      ("PNG", 0.97)])
def test_truncated_files(tmp_path, fmt, keep):
    data = _encoded(_rgb(200, 200), fmt)
    path = tmp_path / f"t.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError, match=r"t\.\w+.*corrupt or truncated.*re-download"):
        load_image(path)


def test_corrupt_png_checksum(tmp_path):
    data = bytearray(_encoded(_rgb(64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF  # one flipped byte inside the compressed pixels
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="crc.png.*corrupt"):
        load_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="nope.png.*does not exist.*check the path"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="binary mode"):
        load_image(io.StringIO("text"))


def test_tiny_images_are_refused(tmp_path):
    path = tmp_path / "tiny.png"
    path.write_bytes(_encoded(_rgb(20, 100)))
    with pytest.raises(ImageError, match="tiny.png' is 100x20 pixels, too small.*at least 32"):
        load_image(path)
    for source in (np.zeros((10, 100, 3), np.uint8), torch.zeros(3, 31, 64),
                   Image.new("RGB", (31, 31)), np.zeros((0, 0, 3), np.uint8)):
        with pytest.raises(ImageError, match="too small"):
            load_image(source)
    assert load_image(np.zeros((10, 12, 3), np.uint8), min_side=8).shape == (10, 12, 3)
    assert load_image(np.zeros((32, 32), np.uint8)).shape == (32, 32, 3)  # the limit itself


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)
    with pytest.raises(ImageError, match="big.png' has 3000x3000.*decompression bombs"):
        load_image(path, max_pixels=1_000_000)
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)  # the module setting
    with pytest.raises(ImageError, match="decompression"):
        load_image(np.zeros((40, 40, 3), np.uint8))
    monkeypatch.undo()
    assert load_image(path).shape == (3000, 3000, 3)


def test_pils_own_decompression_bomb_error_becomes_ours():
    # a PNG header claiming 20000 x 20000 pixels: Pillow refuses it on open
    bomb = _png16(np.zeros((40, 40), np.uint16))
    bomb = bomb[:16] + struct.pack(">II", 20000, 20000) + bomb[24:]  # width, height
    ihdr = bomb[12:29]
    bomb = bomb[:29] + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + bomb[33:]
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)
    with pytest.raises(ImageError, match="too large to decode safely"):
        load_image(bomb, max_pixels=10**10)  # ours allows it, Pillow's own guard still holds


# ------------------------------------------------------------------------- bad arrays


@pytest.mark.parametrize("bad,match", [
    (np.full((40, 40, 3), np.nan, np.float32), "NaN or inf"),
    (np.full((40, 40, 3), np.inf), "NaN or inf"),
    (np.full((40, 40, 3), 2.0), r"\[0, 1\].*divide by 255"),
    (np.full((40, 40, 3), -0.5), r"\[0, 1\].*rescale or clip"),
    (np.full((40, 40, 3), 300, np.int32), "looks 16-bit"),
    (np.full((40, 40, 3), -1, np.int16), r"must lie in \[0, 255\]"),
    (np.zeros((40, 40, 3), bool), "unsupported pixel type bool"),
    (np.zeros((40, 40, 3), complex), "unsupported pixel type complex"),
    (np.zeros((40, 40, 3), object), "unsupported pixel type object"),
    (np.zeros((40, 40, 5), np.uint8), r"expected pixels shaped"),
    (np.zeros((40, 40, 2), np.uint8), r"expected pixels shaped"),
    (np.zeros((2, 40, 40, 3), np.uint8), r"a batch.*x\[0\]"),
    (np.zeros(100, np.uint8), "expected pixels shaped"),
    (torch.zeros(1, 3, 40, 40), r"torch tensor of shape \(1, 3, 40, 40\).*x\[0\]"),
    (torch.zeros(40, 40, 3, dtype=torch.bool), "unsupported pixel type"),
    (torch.full((3, 40, 40), float("nan")), "NaN"),
    ([[0] * 40] * 40, "cannot read an image from a list"),
    (None, "cannot read an image from a NoneType"),
    (42, "cannot read an image from a int"),
])
def test_bad_arrays_and_types(bad, match):
    with pytest.raises(ImageError, match=match):
        load_image(bad)


def test_error_names_the_array():
    with pytest.raises(ImageError, match=r"numpy array of shape \(40, 40, 3\) and dtype float64"):
        load_image(np.full((40, 40, 3), 3.0))


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


# ---------------------------------------------------------------------------- properties

_shapes = st.tuples(st.integers(0, 70), st.integers(0, 70),
                    st.sampled_from([None, 1, 2, 3, 4, 5])).map(
    lambda t: t[:2] if t[2] is None else t)


@settings(max_examples=80, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float16,
                               np.float32, np.float64, np.bool_]), _shapes))
def test_any_array_gives_rgb_or_one_image_error(arr):
    try:
        out = load_image(arr)
    except ImageError as err:
        assert "shape" in str(err)  # the message names the input
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert min(out.shape[:2]) >= 32


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(32, 60), st.integers(32, 60), st.just(3))))
def test_uint8_rgb_round_trips_exactly(arr):
    np.testing.assert_array_equal(load_image(arr), arr)
    np.testing.assert_array_equal(load_image(torch.from_numpy(arr).permute(2, 0, 1)), arr)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(32, 50), st.integers(32, 50), st.just(3)),
              elements=st.floats(0, 1)))
def test_float_arrays_scale_by_255(arr):
    np.testing.assert_array_equal(load_image(arr), np.round(arr * 255).astype(np.uint8))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(32, 50), st.integers(32, 50), st.just(4))))
def test_rgba_arrays_composite_within_rounding(arr):
    a = arr[..., 3:] / 255
    expected = arr[..., :3] * a + 255 * (1 - a)
    assert np.abs(load_image(arr) - expected).max() <= 0.5 + 1e-6
