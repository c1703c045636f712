"""Files found in folders scraped from phones and the web, for the reliability tests.

``LEGAL`` holds odd but valid images, which the loader must keep (as RGB); ``BROKEN`` holds files
it must skip, each with the start of the reason it must give. ``hostile_dataset`` writes both
into class folders beside ordinary images; ``png_header`` crafts a PNG that claims any size, so a
decompression bomb costs a few bytes on disk and nothing in memory when it is refused.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_header(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, payload: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``; IDAT holds ``payload`` deflated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload))
            + chunk(b"IEND", b""))


def _save(img: Image.Image, **kwargs):
    def write(path: Path) -> None:
        img.save(path, **kwargs)

    return write


def _bytes(data: bytes):
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.new("RGB", (12, 6), (200, 30, 30)).save(path, format="JPEG", exif=exif)


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


_PALETTE = Image.new("RGB", (8, 8), (10, 120, 240)).convert("P", palette=Image.Palette.ADAPTIVE)

# name -> writer(path). Every one of these is a usable image.
LEGAL = {
    "grayscale.png": _save(Image.new("L", (8, 8), 90)),
    "rgba half transparent.png": _save(Image.new("RGBA", (8, 8), (255, 0, 0, 128))),
    "palette.gif": _save(_PALETTE),
    "cmyk.jpg": _save(Image.new("CMYK", (8, 8), (0, 200, 0, 0)), format="JPEG"),
    "sixteen_bit.png": _save(Image.fromarray(np.full((8, 8), 40000, np.uint16))),
    "one_pixel.png": _save(Image.new("RGB", (1, 1), (0, 255, 0))),
    "exif_rotated.jpg": _exif_rotated,
    "png_named.jpg": _save(Image.new("RGB", (8, 8), (5, 5, 5)), format="PNG"),
    "no_extension": _save(Image.new("RGB", (8, 8), (50, 5, 5)), format="PNG"),
    "UPPER CASE.JPEG": _save(Image.new("RGB", (8, 8), (5, 50, 5)), format="JPEG"),
    "café ü 猫 photo.png": _save(Image.new("RGB", (8, 8), (5, 5, 50))),
}

# name -> (writer(path), start of the reason the loader must give)
BROKEN = {
    "notes.txt": (_bytes(b"shopping list: milk, eggs\n" * 4), "not an image"),
    "empty.jpg": (_bytes(b""), "empty file"),
    "truncated.jpg": (_bytes(_jpeg_bytes()[:300]), "truncated image"),
    "bomb 100000x100000.png": (_bytes(png_header(100_000, 100_000)), "too large"),
    "random bytes.png": (_bytes(bytes(np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8))), ""),
    "html saved as.jpg": (_bytes(b"<!doctype html><title>403 Forbidden</title>"), "not an image"),
}


def hostile_dataset(root: Path, classes=("a", "b"), normal_per_class: int = 6) -> tuple[dict, dict]:
    """Class folders with ordinary images plus every LEGAL and BROKEN file spread across them.

    Returns (legal, broken): relative path -> expected reason ("" for legal files).
    """
    root = Path(root)
    rng = np.random.default_rng(11)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(normal_per_class):
            colour = np.array([200 if c == index else 30 for c in range(3)])
            pixels = np.clip(colour + rng.integers(-25, 26, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"normal_{i}.png")
    legal, broken = {}, {}
    for position, (name, write) in enumerate(LEGAL.items()):
        relative = f"{classes[position % len(classes)]}/{name}"
        write(root / relative)
        legal[relative] = ""
    for position, (name, (write, reason)) in enumerate(BROKEN.items()):
        relative = f"{classes[position % len(classes)]}/{name}"
        write(root / relative)
        broken[relative] = reason
    return legal, broken


# Where ``lambda_payload`` leaves its mark; a test sets it. A named function (not a ``lambda``)
# is what Keras safe mode lets through: it is looked up by module and name when a model loads.
PAYLOAD_MARKER: dict = {"path": None}


def lambda_payload(x):
    """Stands for any function an attacker could name in a Lambda layer; marks that it ran."""
    if PAYLOAD_MARKER["path"]:
        Path(PAYLOAD_MARKER["path"]).touch()
    return x
