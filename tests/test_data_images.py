"""edgecls.data.images: every input mode becomes 8-bit RGB, every failure becomes BadImage."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecls.data.images import (
    IMAGE_EXTENSIONS,
    RESIZE_METHOD,
    BadImage,
    load_image_array,
    load_rgb,
    resize_rgb,
)


def _pixel(img: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return tuple(int(v) for v in img.getpixel(xy))


def _loaded(tmp_path, img: Image.Image, name: str, **save_args) -> Image.Image:
    path = tmp_path / name
    img.save(path, **save_args)
    out = load_rgb(path)
    assert out.mode == "RGB"
    assert out.size == img.size
    return out


def test_extensions_are_lower_case_and_complete():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    assert RESIZE_METHOD == "pil-bilinear-squash"


def test_grayscale_l(tmp_path):
    out = _loaded(tmp_path, Image.new("L", (4, 3), 100), "l.png")
    assert _pixel(out) == (100, 100, 100)


def test_bilevel_1(tmp_path):
    img = Image.new("1", (4, 3), 0)
    img.putpixel((1, 0), 1)
    out = _loaded(tmp_path, img, "bilevel.png")
    assert _pixel(out, (0, 0)) == (0, 0, 0)
    assert _pixel(out, (1, 0)) == (255, 255, 255)


def test_la_transparent_pixels_become_white(tmp_path):
    img = Image.new("LA", (2, 1), (50, 255))
    img.putpixel((1, 0), (50, 0))
    out = _loaded(tmp_path, img, "la.png")
    assert _pixel(out, (0, 0)) == (50, 50, 50)
    assert _pixel(out, (1, 0)) == (255, 255, 255)


def test_palette(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    img.putpixel((1, 0), 1)
    out = _loaded(tmp_path, img, "p.png")
    assert _pixel(out, (0, 0)) == (10, 20, 30)
    assert _pixel(out, (1, 0)) == (200, 100, 0)


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_transparency_becomes_white(tmp_path, fmt):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 200, 100, 0] + [0] * 762)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    out = _loaded(tmp_path, img, f"p_transparent.{fmt}", transparency=0)
    assert _pixel(out, (0, 0)) == (255, 255, 255)
    assert _pixel(out, (1, 0)) == (200, 100, 0)


def test_rgba_is_composited_onto_white(tmp_path):
    img = Image.new("RGBA", (3, 1), (255, 0, 0, 255))
    img.putpixel((1, 0), (255, 0, 0, 0))
    img.putpixel((2, 0), (255, 0, 0, 128))
    out = _loaded(tmp_path, img, "rgba.png")
    assert _pixel(out, (0, 0)) == (255, 0, 0)
    assert _pixel(out, (1, 0)) == (255, 255, 255)
    r, g, b = _pixel(out, (2, 0))
    assert r == 255 and abs(g - 127) <= 1 and g == b


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (2, 1), (255, 0, 0, 0))  # pure cyan
    img.putpixel((1, 0), (0, 0, 0, 255))  # pure black
    out = _loaded(tmp_path, img, "cmyk.tif")
    assert _pixel(out, (0, 0)) == (0, 255, 255)
    assert _pixel(out, (1, 0)) == (0, 0, 0)


def test_cmyk_jpeg(tmp_path):
    out = _loaded(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "cmyk.jpg", quality=100)
    r, g, b = _pixel(out, (4, 4))
    assert r > 240 and g < 15 and b > 240  # magenta


SIXTEEN_BIT = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
SIXTEEN_BIT_AS_8 = [0, 1, 128, 255]


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16B", ">u2")])
def test_16_bit_is_scaled_not_clipped(tmp_path, mode, dtype):
    img = Image.frombytes(mode, (4, 1), SIXTEEN_BIT.astype(dtype).tobytes())
    out = _loaded(tmp_path, img, "g16.png" if mode == "I;16" else "g16.tif")
    assert [_pixel(out, (x, 0))[0] for x in range(4)] == SIXTEEN_BIT_AS_8


def test_32_bit_integer_uses_the_16_bit_range(tmp_path):
    img = Image.frombytes("I;16", (4, 1), SIXTEEN_BIT.tobytes()).convert("I")
    assert img.mode == "I"
    out = _loaded(tmp_path, img, "i32.tif")
    assert [_pixel(out, (x, 0))[0] for x in range(4)] == SIXTEEN_BIT_AS_8


def test_float_zero_to_one_is_stretched(tmp_path):
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert img.mode == "F"
    out = _loaded(tmp_path, img, "f01.tif")
    assert [_pixel(out, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_beyond_one_is_clipped_to_0_255(tmp_path):
    img = Image.fromarray(np.array([[-5.0, 100.0, 300.0, np.nan]], dtype=np.float32))
    out = _loaded(tmp_path, img, "f255.tif")
    assert [_pixel(out, (x, 0))[0] for x in range(4)] == [0, 100, 255, 0]


def test_exif_orientation_rotates_the_pixels(tmp_path):
    # Stored 20 wide x 10 high, red left half and blue right half; orientation 6 means
    # "rotate 90 degrees clockwise to view", which puts red on top.
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    out = load_rgb(path)
    assert out.size == (10, 20)
    top, bottom = _pixel(out, (5, 2)), _pixel(out, (5, 17))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert _pixel(load_rgb(path)) == (255, 0, 0)


@pytest.mark.parametrize("name", ["UPPER.JPG", "Mixed.Png", "png_named.jpg", "no_extension", "photo.txt"])
def test_format_comes_from_content_not_extension(tmp_path, name):
    path = tmp_path / name
    Image.new("RGB", (5, 4), (10, 200, 30)).save(path, format="PNG")
    assert _pixel(load_rgb(path)) == (10, 200, 30)


@pytest.mark.parametrize("name", ["with space.png", "café ñ 猫.png", "émoji 🙂 dir/x.png"])
def test_non_ascii_and_spaces_in_names(tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    assert _pixel(load_rgb(path)) == (1, 2, 3)


def _image_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF"])
def test_truncated_files_are_bad(tmp_path, fmt):
    data = _image_bytes(fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImage) as caught:
        load_rgb(path)
    assert caught.value.reason == "truncated image"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello, this is a README\n" * 5, "not an image"),
        (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), None),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, None),
        (b"\xff\xd8\xff\xe0" + b"\0" * 50, None),
    ],
    ids=["empty", "text", "random-bytes", "png-magic-only", "jpeg-magic-only"],
)
def test_non_images_are_bad(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(BadImage) as caught:
        load_rgb(path)
    assert caught.value.reason
    if reason:
        assert caught.value.reason == reason


def test_missing_file_and_folder_are_bad(tmp_path):
    with pytest.raises(BadImage, match="cannot read"):
        load_rgb(tmp_path / "nope.png")
    with pytest.raises(BadImage):
        load_rgb(tmp_path)


@pytest.mark.parametrize("side", [12, 40], ids=["over-limit-warning", "over-twice-limit-error"])
def test_decompression_bombs_are_bad_and_leave_warning_filters_alone(tmp_path, monkeypatch, side):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    filters_before = list(warnings.filters)
    with pytest.raises(BadImage) as caught:
        load_rgb(path)
    assert caught.value.reason.startswith("too large")
    assert str(side * side) in caught.value.reason
    assert warnings.filters == filters_before


def test_resize_squashes_with_pil_bilinear_and_no_reducing_gap(tmp_path):
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (37, 91, 3), dtype=np.uint8))
    out = resize_rgb(img, (10, 20))
    expected = np.asarray(img.resize((20, 10), Image.Resampling.BILINEAR, reducing_gap=None))
    assert out.dtype == np.uint8 and out.shape == (10, 20, 3)
    np.testing.assert_array_equal(out, expected)
    assert resize_rgb(img, 8).shape == (8, 8, 3)


def test_resize_refuses_non_rgb_and_bad_sizes():
    with pytest.raises(ValueError):
        resize_rgb(Image.new("L", (4, 4)), 2)
    with pytest.raises(ValueError):
        resize_rgb(Image.new("RGB", (4, 4)), (0, 3))


def test_load_image_array(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGBA", (30, 10), (0, 0, 255, 255)).save(path)
    array = load_image_array(path, (6, 7))
    assert array.shape == (6, 7, 3) and array.dtype == np.uint8
    assert (array == (0, 0, 255)).all()


# --- property-based: whatever the bytes, load_rgb returns RGB or raises BadImage ---

MAGIC_PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
                  b"P6\n", b"\x00\x00\x01\x00"]
VALID_IMAGES = {fmt: _image_bytes(fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")}


def _assert_rgb_or_bad(path) -> None:
    try:
        img = load_rgb(path)
    except BadImage as exc:
        assert exc.reason
    else:
        assert img.mode == "RGB"


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt metadata on the way
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(MAGIC_PREFIXES), body=st.binary(max_size=300))
def test_random_bytes_only_ever_raise_bad_image(tmp_path, prefix, body):
    path = tmp_path / "random.bin"
    path.write_bytes(prefix + body)
    _assert_rgb_or_bad(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(VALID_IMAGES)), data=st.data())
def test_damaged_images_only_ever_raise_bad_image(tmp_path, fmt, data):
    damaged = bytearray(VALID_IMAGES[fmt])
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(damaged) - 1), st.integers(0, 255)),
                                              max_size=8)):
        damaged[position] = value
    path = tmp_path / "damaged.img"
    path.write_bytes(bytes(damaged[: data.draw(st.integers(0, len(damaged)))]))
    _assert_rgb_or_bad(path)
