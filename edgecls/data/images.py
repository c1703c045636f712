"""The one image loader and the one resize function.

Every stage (training, evaluation, calibration, benchmarks, the device) goes through
``load_rgb`` + ``resize_rgb`` so a model always sees pixels prepared the same way.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Written into model sidecars; change it only together with resize_rgb.
RESIZE_METHOD = "pil-bilinear-squash"

_WHITE = (255, 255, 255, 255)
_MODES_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "P"})

# warnings.catch_warnings swaps process-wide state; without a lock, two decoding threads
# entering and leaving it out of order could leave the "error" filter installed for good.
_BOMB_FILTER_LOCK = threading.Lock()


class BadImage(Exception):
    """A file that cannot be used as an image; ``reason`` is short and meant for people."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully into an 8-bit RGB image, upright according to its EXIF tag.

    The format is found from the content, not the extension. Transparent pixels are
    composited onto white; 16-bit images are scaled (0..65535 -> 0..255), float images
    read as 0..1 or 0..255. Images over ``PIL.Image.MAX_IMAGE_PIXELS`` are refused.
    Raises only ``BadImage``.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage("empty file")
    except OSError as exc:
        raise BadImage(f"cannot read: {exc.strerror or exc}") from None
    try:
        with _open_refusing_bombs(path) as img:
            img.load()
            _refuse_if_too_large(img.size)
            return _to_rgb(_upright(img))
    except BadImage:
        raise
    # PIL reports broken files through many types (OSError, SyntaxError, struct.error,
    # ValueError, ...); callers are promised exactly one, so everything maps to BadImage.
    except Exception as exc:
        raise BadImage(_reason_for(exc)) from None


def resize_rgb(img: Image.Image, size: int | tuple[int, int]) -> np.ndarray:
    """Squash an RGB image to ``size`` (an int for a square, or (height, width)): uint8 (h, w, 3).

    This is the only resize in edgecls. Training, evaluation, int8 calibration and the
    device all call it (the device copy in ``pi_infer.py`` must stay identical), so the
    model always sees the same pixels: PIL bilinear, the whole image squashed to the
    target aspect (no crop), ``reducing_gap=None`` so no extra box pre-reduction.
    Its name for sidecars is ``RESIZE_METHOD``.
    """
    height, width = height_width(size)
    if img.mode != "RGB":
        raise ValueError(f"resize_rgb expects an RGB image, got mode {img.mode!r}; use load_rgb")
    resized = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.array(resized, dtype=np.uint8)


def load_image_array(path: str | os.PathLike, size: int | tuple[int, int]) -> np.ndarray:
    """``load_rgb`` then ``resize_rgb``: the uint8 (h, w, 3) array a model is fed."""
    return resize_rgb(load_rgb(path), size)


def height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as (height, width): an int means a square."""
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return height, width


def _open_refusing_bombs(path: Path) -> Image.Image:
    # Only the header is parsed here, so holding the lock costs little; the slow decode
    # (img.load) runs outside it, and _refuse_if_too_large covers sizes found while loading.
    with _BOMB_FILTER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _refuse_if_too_large(size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if limit is not None and width * height > limit:
        raise BadImage(f"too large: {width}x{height} pixels")


def _upright(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        # A broken EXIF block does not make the pixels wrong; keep them as stored rather
        # than lose the image (the device path does the same, so it stays consistent).
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "F" or mode.startswith("I"):
        return Image.fromarray(_high_depth_to_uint8(img)).convert("RGB")
    if mode in _MODES_WITH_ALPHA:
        # Transparent areas of logos and icons are meant to look like the page behind them;
        # white is the common case, and black (what dropping alpha gives) is arbitrary.
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    values = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        # Float images come either as 0..1 or as 0..255; anything else is clipped.
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    # I;16* and I come from 16-bit PNG/TIFF: map 0..65535 linearly onto 0..255 (PIL's own
    # convert("L") clips at 255 instead, which turns almost every 16-bit photo white).
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


_PIXEL_COUNT = re.compile(r"\((\d+) pixels\)")


def _reason_for(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        found = _PIXEL_COUNT.search(str(exc))
        return f"too large: {found.group(1)} pixels" if found else "too large"
    if isinstance(exc, MemoryError):
        return "too large: out of memory while decoding"
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "broken data stream" in text:
        return "truncated image"
    return f"could not decode: {text[:200] or type(exc).__name__}"
