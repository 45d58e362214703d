"""Image decoding rules: every input type and mode, and clear errors for what is not an image."""

import io

import numpy as np
import pytest
from PIL import Image

from model import ImageDecodeError
from model.errors import (
    CorruptImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnsupportedImageFormatError,
)
from model.images import decode_bytes, load_image, resize_to_input


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8))


def test_all_sources_decode_to_the_same_pixels(rgb, tmp_path):
    path = tmp_path / "a.png"
    rgb.save(path)
    expected = np.asarray(rgb)
    for source in (rgb, np.asarray(rgb), png_bytes(rgb), bytearray(png_bytes(rgb)), path, str(path)):
        out = load_image(source)
        assert out.mode == "RGB" and np.array_equal(np.asarray(out), expected)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"])
def test_modes_become_rgb(rgb, mode):
    image = rgb.convert("L").convert(mode) if mode in ("I;16", "I", "F") else rgb.convert(mode)
    out = load_image(image)
    assert out.mode == "RGB" and out.size == rgb.size


def test_float_and_grey_arrays():
    assert load_image(np.full((8, 4), 0.5, dtype=np.float32)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.zeros((8, 4, 1), dtype=np.uint8)).mode == "RGB"


@pytest.mark.parametrize(
    "source,message",
    [
        (b"", "0 bytes"),
        (b"this is not an image", "not an image"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
        (np.full((4, 4, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((4, 4, 3), dtype=np.int64), "uint8 or float"),
        (12345, "cannot read an image from a int"),
    ],
)
def test_bad_inputs(source, message):
    with pytest.raises(ImageDecodeError, match=message):
        load_image(source)


def test_truncated_and_missing_files(rgb, tmp_path):
    buf = io.BytesIO()
    rgb.resize((400, 400)).save(buf, format="JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(tmp_path / "empty.jpg")


def test_pixel_limit(rgb):
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(png_bytes(rgb), max_pixels=100)


def test_decode_bytes_gives_typed_errors_with_their_facts(rgb):
    decoded = decode_bytes(png_bytes(rgb), "a.png", formats=("PNG",), min_side=8)
    assert (decoded.format, decoded.width, decoded.height) == ("PNG", rgb.width, rgb.height)
    assert decoded.image.mode == "RGB"
    with pytest.raises(NotAnImageError, match="b.bin is not an image"):
        decode_bytes(b"hello", "b.bin")
    with pytest.raises(UnsupportedImageFormatError) as unsupported:
        decode_bytes(png_bytes(rgb), "c.png", formats=("JPEG",))
    assert unsupported.value.format == "PNG" and unsupported.value.supported == ("JPEG",)
    with pytest.raises(ImageTooLargeError) as large:
        decode_bytes(png_bytes(rgb), "d.png", max_pixels=10)
    assert (large.value.width, large.value.height, large.value.limit) == (rgb.width, rgb.height, 10)
    with pytest.raises(ImageTooSmallError) as small:
        decode_bytes(png_bytes(rgb), "e.png", min_side=max(rgb.size) + 1)
    assert small.value.min_side == max(rgb.size) + 1
    buf = io.BytesIO()
    rgb.resize((400, 400)).save(buf, format="JPEG")
    with pytest.raises(CorruptImageError, match="f.jpg is corrupt or truncated") as corrupt:
        decode_bytes(buf.getvalue()[:300], "f.jpg")
    assert corrupt.value.reason and "f.jpg" not in corrupt.value.reason


def test_resize_to_input_is_a_pil_bilinear_resize_to_height_by_width(rgb):
    out = resize_to_input(rgb, (16, 8))
    assert out.shape == (16, 8, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.asarray(rgb.resize((8, 16), Image.BILINEAR)))
    assert np.array_equal(resize_to_input(rgb, (40, 20)), np.asarray(rgb))  # already the size: untouched
    assert np.array_equal(resize_to_input(png_bytes(rgb), [16, 8]), out)
    with pytest.raises(ImageDecodeError):
        resize_to_input(b"not an image", (16, 8))
