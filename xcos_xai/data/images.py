"""The one image-loading path: anything image-like to an ``(H, W, 3)`` uint8 RGB array.

:func:`load_image` accepts

- a path (``str`` or ``os.PathLike``), ``bytes``/``bytearray``/``memoryview`` holding an
  encoded file, or a binary file object (anything with ``read()``);
- a ``PIL.Image.Image``;
- a numpy array: ``(H, W)`` grey, ``(H, W, 1|3|4)`` or channels-first ``(1|3|4, H, W)``;
  ``uint8`` (0..255), ``uint16`` (0..65535, rounded to 8 bits), other integer types holding
  0..255, or floats in ``[0, 1]``;
- a torch tensor of the same layouts (``(3, H, W)`` or ``(H, W, 3)``, ``uint8`` or float in
  ``[0, 1]``; half and bfloat16 are fine).

What is done to the pixels (the documented handling):

- EXIF orientation is applied (``ImageOps.exif_transpose``), so the array is upright as
  viewers show it. A broken EXIF block is ignored with a warning.
- Grey, bilevel, palette, CMYK, YCbCr and LAB images are converted to RGB by Pillow.
  There is no colour management: embedded ICC profiles are ignored.
- Transparency (RGBA, LA, PA, palette with a transparent colour, 4-channel arrays) is
  **composited over white**: a cut-out portrait gets a plain light backdrop rather than the
  arbitrary colours hiding under alpha 0. Opaque pixels are unchanged.
- 16 bits per sample: grey 16-bit PNGs (mode ``I;16``) and ``uint16`` arrays are scaled by
  ``round(v * 255 / 65535)``; Pillow itself decodes 16-bit RGB(A) PNGs to 8 bits by taking
  the high byte (within one level of the same). Pillow mode ``I`` (32-bit integers) is read
  as 8-bit when all values are <= 255, as 16-bit when <= 65535, and refused otherwise.
  Mode ``F`` follows Pillow's convention (the same 0..255 scale as ``L``).
- Animated/multi-page files: the first frame.

Everything that cannot give a usable face photo raises one :class:`ImageError` (a
``ValueError``) whose message names the input (its path, or its type, shape and dtype) and
says what to do: missing, unreadable, empty, non-image, truncated or corrupt files; images
smaller than :data:`MIN_SIDE` pixels on a side; images over :data:`MAX_PIXELS` pixels
(checked from the header, before decoding: a decompression-bomb guard; Pillow's own
``DecompressionBombWarning``/``DecompressionBombError`` become the same error); files
larger than any image of that many pixels can be (``8 * MAX_PIXELS`` bytes plus 16 MiB,
checked before reading) and paths that are not regular files (devices, pipes); NaN or inf
values; values out of range; unsupported shapes and dtypes.

Limits: ``MAX_PIXELS`` and ``MIN_SIDE`` are module settings (change them for the whole
process) and per-call keywords (``max_pixels=``, ``min_side=``). Pillow's own guard
(``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP for the warning and twice that for the error)
still applies to files: a ``max_pixels`` above it also needs Pillow's limit raised.
The bomb warning is turned into an error with ``warnings.catch_warnings``, which is
process-global: loading from several threads at once is safe for the pixels, but the
warning filters of other threads may be briefly affected.
Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is respected as is: if another library
sets it, truncated files decode with grey filler instead of raising.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "MIN_SIDE", "ImageError", "describe_source", "load_image"]

MAX_PIXELS = 50_000_000
"""Largest accepted image, in pixels (width x height): the decompression-bomb guard."""

MIN_SIDE = 32
"""Smallest accepted side, in pixels: below this there is no usable face."""

_FORMATS_HINT = "save it as a JPEG or PNG (Pillow reads JPEG, PNG, BMP, GIF, TIFF, WebP)"


class ImageError(ValueError):
    """An input that is not a usable image; the message names the input and the fix."""


def describe_source(source) -> str:
    """A short human description of an image input, as used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return f"image file {os.fspath(source)!r}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{type(source).__name__} input ({len(source)} bytes)"
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, {source.width}x{source.height})"
    shape = getattr(source, "shape", None)
    if shape is not None and hasattr(source, "dtype"):
        kind = "torch tensor" if _is_tensor(source) else f"{type(source).__name__}"
        if isinstance(source, np.ndarray):
            kind = "numpy array"
        return f"{kind} of shape {tuple(shape)} and dtype {source.dtype}"
    name = getattr(source, "name", None)
    if hasattr(source, "read") and isinstance(name, str):
        return f"file object {name!r}"
    return f"{type(source).__name__} input"


def _is_tensor(obj) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to check
    return torch is not None and isinstance(obj, torch.Tensor)


def _check_size(width: int, height: int, what: str, max_pixels: int, min_side: int) -> None:
    if min(width, height) < min_side:
        raise ImageError(f"{what} is {width}x{height} pixels, too small for a face: give an "
                         f"image at least {min_side} pixels on each side")
    if width * height > max_pixels:
        raise ImageError(f"{what} has {width}x{height} = {width * height} pixels, more than "
                         f"the limit of {max_pixels} (a guard against decompression bombs): "
                         "downscale it first, or raise max_pixels if you trust the file")


# ---------------------------------------------------------------------------------- arrays


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """Any supported dtype to uint8 with the same shape."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(f"{what}: unsupported pixel type {arr.dtype}; give uint8 (0..255), "
                         "uint16 (0..65535) or float in [0, 1]")
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageError(f"{what} contains {bad} NaN or inf values: replace them "
                             "(e.g. np.nan_to_num) before loading")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            hint = "divide by 255" if hi <= 255 and lo >= 0 else "rescale or clip to [0, 1]"
            raise ImageError(f"{what}: float pixels must lie in [0, 1], got [{lo:.4g}, "
                             f"{hi:.4g}]; {hint}")
        return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        hint = ("it looks 16-bit: convert to uint16" if lo >= 0 and hi <= 65535
                else "rescale to 0..255")
        raise ImageError(f"{what}: integer pixels of type {arr.dtype} must lie in [0, 255], "
                         f"got [{lo}, {hi}]; {hint} or convert to uint8")
    return arr.astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.round(out).astype(np.uint8)


def _from_array(arr: np.ndarray, what: str, max_pixels: int, min_side: int) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        fix = ("a batch or stack: pass one image, e.g. x[0]" if arr.ndim == 4
               else "pass one grey, RGB or RGBA image")
        raise ImageError(f"{what}: expected pixels shaped (H, W), (H, W, 3), (H, W, 4) or "
                         f"(3, H, W); this looks like {fix}")
    _check_size(arr.shape[1], arr.shape[0], what, max_pixels, min_side)
    arr = _to_uint8(arr, what)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[-1] == 4:
        arr = _composite_on_white(arr)
    return np.array(arr, dtype=np.uint8, order="C")  # always a copy: never alias the input


def _tensor_to_numpy(tensor, what: str) -> np.ndarray:
    t = tensor.detach()
    if t.is_complex() or t.dtype == torch.bool:
        raise ImageError(f"{what}: unsupported pixel type {t.dtype}; give uint8 or float "
                         "in [0, 1]")
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # half / bfloat16: numpy has no bfloat16
    try:
        return t.cpu().numpy()
    except (TypeError, RuntimeError) as err:
        raise ImageError(f"{what} cannot be read as pixels ({err}): convert it to a plain "
                         "uint8 or float32 tensor") from None


# ------------------------------------------------------------------------------------- PIL


def _exif_upright(img: Image.Image, what: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception as err:  # a malformed EXIF block: the pixels themselves are fine
        warnings.warn(f"{what}: ignoring unreadable EXIF orientation ({err})", stacklevel=4)
        return img


def _from_pil(img: Image.Image, what: str, max_pixels: int, min_side: int) -> np.ndarray:
    _check_size(img.width, img.height, what, max_pixels, min_side)
    img = _exif_upright(img, what)
    mode = img.mode
    if mode.startswith("I;16"):
        return _from_array(np.asarray(img).astype(np.uint16), what, max_pixels, min_side)
    if mode == "I":
        arr = np.asarray(img)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageError(f"{what}: 32-bit integer pixels in [{lo}, {hi}] have no known "
                             "scale; convert the image to 8 or 16 bits")
        arr = arr.astype(np.uint8 if hi <= 255 else np.uint16)
        return _from_array(arr, what, max_pixels, min_side)
    if mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise ImageError(f"{what} contains NaN or inf values: replace them before loading")
    if mode == "La":  # premultiplied grey + alpha: Pillow converts it only to LA
        img = img.convert("LA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as err:
            raise ImageError(f"{what}: Pillow cannot convert mode {mode} to RGB ({err}); "
                             f"{_FORMATS_HINT}") from None
    return np.array(img, dtype=np.uint8)  # a fresh, writable, contiguous copy


# ----------------------------------------------------------------------------------- files


def _decode(stream, what: str, max_pixels: int, min_side: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            if max_pixels <= (Image.MAX_IMAGE_PIXELS or 0):
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            else:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                _check_size(img.width, img.height, what, max_pixels, min_side)  # before decoding
                img.load()
                return _from_pil(img, what, max_pixels, min_side)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{what} is too large to decode safely ({err}): downscale it first "
                         "(a guard against decompression bombs)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not a readable image (unknown or empty file format): "
                         f"{_FORMATS_HINT}") from None
    except MemoryError:
        raise ImageError(f"{what} needs more memory than available to decode: downscale "
                         "it first") from None
    except Exception as err:  # OSError, SyntaxError, zlib.error, struct.error, ...
        raise ImageError(f"{what} is corrupt or truncated ({type(err).__name__}: {err}): "
                         "re-export or re-download the file") from None


def _read_path(path: Path, what: str, max_pixels: int | None = None) -> bytes:
    if not path.exists():
        raise ImageError(f"{what} does not exist: check the path (relative paths are taken "
                         f"from the working directory {os.getcwd()!r})")
    if path.is_dir():
        raise ImageError(f"{what} is a directory: give the path of one image file")
    if not path.is_file():  # a device, pipe or socket: reading could block or never end
        raise ImageError(f"{what} is not a regular file: give the path of an image file")
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    limit = 8 * max_pixels + (16 << 20)  # 16-bit RGBA, uncompressed, plus metadata
    try:
        size = path.stat().st_size
        if size > limit:  # refused before reading: the file-size side of the bomb guard
            raise ImageError(f"{what} is {size} bytes, more than an image of up to "
                             f"{max_pixels} pixels can need ({limit} bytes): downscale or "
                             "re-encode it, or raise max_pixels if you trust the file")
        return path.read_bytes()
    except OSError as err:
        raise ImageError(f"{what} cannot be read ({err.strerror or err}): check its "
                         "permissions") from None


def load_image(source, *, name: str | None = None, max_pixels: int | None = None,
               min_side: int | None = None) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a path, bytes, file object, PIL image, array
    or tensor (see the module documentation for what is accepted and how it is converted).

    Args:
        source: the image.
        name: how to call the input in error messages (default: its path, or its type and
            shape).
        max_pixels: refuse larger images (default :data:`MAX_PIXELS`, 50 MP).
        min_side: refuse images with a shorter side (default :data:`MIN_SIDE`, 32 px).

    Returns:
        A new C-contiguous ``(H, W, 3)`` ``uint8`` array (the input is never modified).

    Raises:
        ImageError: the input is not a usable image; the message names it and the fix.
    """
    what = name if name is not None else describe_source(source)
    max_pixels = MAX_PIXELS if max_pixels is None else int(max_pixels)
    min_side = MIN_SIDE if min_side is None else int(min_side)
    if isinstance(source, np.ndarray):
        return _from_array(source, what, max_pixels, min_side)
    if _is_tensor(source):
        return _from_array(_tensor_to_numpy(source, what), what, max_pixels, min_side)
    if isinstance(source, Image.Image):
        try:
            return _from_pil(source, what, max_pixels, min_side)
        except ImageError:
            raise
        except Exception as err:  # e.g. a lazily loaded PIL image whose file is broken
            raise ImageError(f"{what} cannot be decoded ({type(err).__name__}: {err}): "
                             "re-export the image") from None
    if isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), what, max_pixels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read()
        except Exception as err:
            raise ImageError(f"{what} cannot be read ({err}): give an open binary file, "
                             "its path or its bytes") from None
        if not isinstance(data, bytes):
            raise ImageError(f"{what} gave {type(data).__name__}, not bytes: open the file "
                             "in binary mode ('rb')")
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}: give a path, "
                         "bytes, a PIL image, a numpy array or a torch tensor")
    if not data:
        raise ImageError(f"{what} is empty (0 bytes): re-export or re-download the file")
    return _decode(io.BytesIO(data), what, max_pixels, min_side)
