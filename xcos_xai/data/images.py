"""The one image-loading path: anything image-like to an ``(H, W, 3)`` uint8 RGB array."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # decompression-bomb guard
MIN_SIDE = 32


class ImageError(ValueError):
    """An input that is not a usable image; the message names the input and the fix."""


def _describe(source) -> str:
    if isinstance(source, (str, Path)):
        return f"image file {str(source)!r}"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"{type(source).__name__} of shape {tuple(shape)} and dtype {source.dtype}"
    return f"{type(source).__name__} input"


def _from_pil(img: Image.Image, what: str) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        return _from_array(np.clip(arr / peak, 0, 1), what)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return _check_size(np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), what)


def _check_size(arr: np.ndarray, what: str) -> np.ndarray:
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what} is {w}x{h} pixels, too small for a face: give an image "
                         f"at least {MIN_SIDE} pixels on each side")
    if h * w > MAX_PIXELS:
        raise ImageError(f"{what} has {h * w} pixels, more than the limit of {MAX_PIXELS}: "
                         "downscale it first (a guard against decompression bombs)")
    return arr


def _from_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(f"{what}: expected (H, W), (H, W, 3), (H, W, 4) or (3, H, W) pixels; "
                         "pass a grey, RGB or RGBA image")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(f"{what}: unsupported pixel type {arr.dtype}; use uint8, uint16 or "
                         "float in [0, 1]")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{what} is {arr.shape[1]}x{arr.shape[0]} pixels, too small for a "
                         f"face: give an image at least {MIN_SIDE} pixels on each side")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{what} contains NaN or inf pixels: fix the values first")
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(f"{what}: float pixels must lie in [0, 1], got "
                             f"[{arr.min():.3g}, {arr.max():.3g}]; divide by 255 or clip")
        arr = np.round(arr * 255).astype(np.uint8)
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ImageError(f"{what}: integer pixels must lie in [0, 255]; convert to uint8")
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 255
        arr = np.round(arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return _check_size(np.ascontiguousarray(arr), what)


def load_image(source) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a path, bytes, PIL image, array or tensor.

    Handled: EXIF orientation (applied), grey and palette images (to RGB), RGBA/LA
    (composited on white), CMYK (converted), 16-bit images (scaled to 8 bits), float arrays
    in [0, 1], channels-first arrays and tensors. Refused with one :class:`ImageError`:
    missing, corrupt, truncated and non-image files, NaN/inf or out-of-range values, wrong
    shapes and dtypes, images under 32 pixels on a side or over 50 megapixels.
    """
    what = _describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    if type(source).__module__.startswith("torch"):
        import torch

        if isinstance(source, torch.Tensor):
            return _from_array(source.detach().cpu().numpy(), what)
    if isinstance(source, Image.Image):
        return _from_pil(source, what)
    if isinstance(source, (bytes, bytearray)):
        stream = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{what} does not exist: check the path")
        stream = path
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}: give a path, "
                         "bytes, a PIL image, a numpy array or a torch tensor")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{what} has {img.width * img.height} pixels, more than "
                                     f"the limit of {MAX_PIXELS}: downscale it first (a guard "
                                     "against decompression bombs)")
                img.load()
                return _from_pil(img, what)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise ImageError(f"{what} is not a readable image ({err}): give a JPEG or PNG "
                         "photo") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{what} is corrupt or truncated ({err}): re-export or re-download "
                         "the file") from None
