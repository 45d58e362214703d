"""Image decoding rules shared by the embedder, the trainer and the service.

Anything image-like becomes an RGB PIL image or an ImageDecodeError that says why:
PIL images of any mode, numpy arrays (H x W, H x W x 1/3/4; uint8, or float in [0, 1]),
encoded bytes, and file paths.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.errors import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnsupportedImageFormatError,
)

ImageLike = Image.Image | np.ndarray | bytes | bytearray | memoryview | str | os.PathLike

# Modes PIL cannot convert to RGB without losing the range; scaled to 8 bits first.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB (alpha dropped, palettes expanded, 16-bit/float grey scaled to 8 bits)."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo) * 255.0
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"an image array must be H x W or H x W x 1/3/4, got shape {array.shape}")
    if array.size == 0:
        raise ImageDecodeError(f"empty image array of shape {array.shape}")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageDecodeError("a float image array must hold finite values in [0, 1]")
        array = np.round(array * 255.0).astype(np.uint8)
    else:
        raise ImageDecodeError(f"image arrays must be uint8 or float in [0, 1], got {array.dtype}")
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))


@dataclass(frozen=True)
class DecodedImage:
    """An encoded image decoded once: the RGB image and what the file said about itself."""

    image: Image.Image  # RGB
    format: str  # PIL's name for the encoding, e.g. "JPEG", "PNG"
    width: int
    height: int


def _decode(
    stream: io.IOBase | str | os.PathLike,
    what: str,
    max_pixels: int | None,
    formats: Collection[str] | None = None,
    min_side: int = 1,
) -> DecodedImage:
    """Open once, check format and size from the header, then decode; typed errors name `what`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                fmt = image.format or "unknown"
                width, height = image.size
                if formats is not None and fmt not in formats:
                    supported = tuple(formats)
                    raise UnsupportedImageFormatError(
                        f"{what} is {fmt}; supported formats: {', '.join(supported)}", fmt, supported
                    )
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{what} is {width}x{height} pixels, over the limit of {max_pixels}",
                        width,
                        height,
                        max_pixels,
                    )
                if width < min_side or height < min_side:
                    raise ImageTooSmallError(
                        f"{what} is {width}x{height} pixels; both sides must be at least {min_side}",
                        width,
                        height,
                        min_side,
                    )
                image.load()
                return DecodedImage(to_rgb(image), fmt, width, height)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{what} is too large to decode safely: {exc}", None, None, None) from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{what} is not an image in a supported format") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise CorruptImageError(f"{what} is corrupt or truncated: {exc}", str(exc)) from exc


def decode_bytes(
    data: bytes,
    name: str = "image data",
    *,
    max_pixels: int | None = None,
    formats: Collection[str] | None = None,
    min_side: int = 1,
) -> DecodedImage:
    """Encoded bytes -> DecodedImage, opening them once. Refused with a typed ImageDecodeError (which
    names `name`): not an image, a format outside `formats`, more than `max_pixels` pixels (or a
    decompression bomb), a side under `min_side`, corrupt or truncated data."""
    if not data:
        raise NotAnImageError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), name, max_pixels, formats, min_side)


def load_image(source: ImageLike, max_pixels: int | None = None) -> Image.Image:
    """Decode `source` to an RGB PIL image, or raise ImageDecodeError naming the problem."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageDecodeError("empty image data (0 bytes)")
        return _decode(io.BytesIO(data), "image data", max_pixels).image
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ImageDecodeError(f"image file not found: {path}")
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"image file is empty (0 bytes): {path}")
        return _decode(path, f"image file {path}", max_pixels).image
    raise ImageDecodeError(f"cannot read an image from a {type(source).__name__}")


def resize_to_input(source: ImageLike, input_size: tuple[int, int] | list[int]) -> np.ndarray:
    """The test-time transform's image part: decode, bilinear resize to (H, W) -> (H, W, 3) uint8 array.

    The one resize used for evaluation and inference (the official test transform: PIL bilinear resize,
    then scale and normalise, which the embedder does on the device).
    """
    height, width = int(input_size[0]), int(input_size[1])
    image = load_image(source)
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
