"""Checks on client input. Each problem becomes an ApiError naming the field; nothing is written before
every check on an item has passed."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, UploadFile
from PIL import Image
from pydantic import BeforeValidator

from model.errors import (
    CorruptImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnsupportedImageFormatError,
)
from model.images import decode_bytes
from service.errors import ApiError, invalid

logger = logging.getLogger(__name__)

CAMERA_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# ISO 8601 extended calendar form, as RFC 3339 writes it: 2026-11-23, 2026-11-23T10:15, 2026-11-23T10:15:00.5Z,
# 2026-11-23 10:15:00+01:00 (a space or T between date and time; offset Z or +hh:mm; none = UTC).
ISO_TIME = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?"
)
SUPPORTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP"}
MIN_SIDE = 8
MAX_EXTERNAL_REF = 256
MAX_TRACK_REF = 128
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)


@dataclass
class PreparedImage:
    """An upload that passed every check: its bytes, hash and decoded RGB image."""

    filename: str
    data: bytes
    content_hash: str
    image: Image.Image
    format: str
    width: int
    height: int


# Numbers in paths, queries and forms exactly as written: digits (a sign, a point, an exponent for decimals),
# nothing around them. Pydantic alone would read " 1", "1_000", "+1" and "5.0" as whole numbers.
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _written_as(pattern: re.Pattern, what: str) -> BeforeValidator:
    def check(value):
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what} (no spaces or separators around or inside it)")
        return value

    return BeforeValidator(check)


# Annotated[int, Query(...), WHOLE_NUMBER] / Annotated[float, Form(...), DECIMAL]
WHOLE_NUMBER = _written_as(_INTEGER, "a whole number in digits, like 42")
DECIMAL = _written_as(_DECIMAL, "a decimal number, like 0.5")


def no_empty_form_fields(*names: str):
    """Dependency: 422 when one of these form fields is sent empty. FastAPI reads an empty form field as
    "not sent" and would answer with the default (an empty top_k searched for 20)."""

    async def check(request: Request) -> None:
        form = await request.form()  # parsed once per request: FastAPI's own body parse is cached
        for name in names:
            if any(value == "" for value in form.getlist(name)):
                raise invalid(f"{name} is empty: leave the field out for its default, or give a value", name)

    return check


def camera_id(value: str | None, field: str = "camera_id") -> str:
    """The camera id exactly as sent (never trimmed: "cam\\n" is refused, not stored as "cam")."""
    if value is None or value == "":
        raise invalid("camera_id is required", field, code="missing")
    value = str(value)
    if not CAMERA_ID.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise invalid(f"camera_id {shown!r} must be 1..64 characters of A-Z a-z 0-9 _ . : -", field)
    return value


MAX_CAMERA_FILTERS = 500


def camera_ids(values: list[str] | None, field: str = "camera_id") -> list[str]:
    """A filter's camera ids: each valid, at most MAX_CAMERA_FILTERS, duplicates dropped (sorted)."""
    values = values or []
    if len(values) > MAX_CAMERA_FILTERS:
        raise invalid(f"{len(values)} camera_id filters; the limit is {MAX_CAMERA_FILTERS}", field)
    return sorted({camera_id(v, field) for v in values})


def timestamp(
    value: str | None, field: str, *, required: bool = True, not_future: bool = False
) -> datetime | None:
    """ISO 8601 in the extended calendar form (ISO_TIME: a date, optionally a time and an offset) -> aware
    UTC datetime; no offset means UTC. Week dates, ordinal dates, the basic form and surrounding spaces are
    refused, as are times before 1970 and (with not_future) after now + 1 day."""
    if value is None or value == "":
        if required:
            raise invalid(f"{field} is required (ISO 8601 time)", field, code="missing")
        return None
    text = str(value)
    if len(text) > 64:
        raise invalid(f"{field} is not an ISO 8601 time", field)
    try:
        if not ISO_TIME.fullmatch(text):
            raise ValueError(text)
        parsed = datetime.fromisoformat(re.sub("[Zz]$", "+00:00", text).replace("t", "T"))
    except ValueError:
        raise invalid(
            f"{field} {text!r} is not an ISO 8601 time like 2026-11-23T10:15:00Z (date, optional "
            "time and offset)",
            field,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise invalid(f"{field} {text!r} is out of range", field) from None
    if parsed < EARLIEST:
        raise invalid(f"{field} {text!r} is before 1970", field)
    if not_future and parsed > datetime.now(UTC) + FUTURE_SLACK:
        raise invalid(f"{field} {text!r} is in the future", field)
    return parsed


def window(start: datetime | None, end: datetime | None, max_days: float | None = None) -> None:
    if start is not None and end is not None and end <= start:
        raise invalid("end must be after start", "end")
    if (
        max_days is not None
        and start is not None
        and end is not None
        and end - start > timedelta(days=max_days)
    ):
        raise invalid(f"the time window is longer than the limit of {max_days:g} days", "end")


def short_text(value: str | None, field: str, max_length: int) -> str | None:
    """An optional free-text reference: None when absent or empty; 422 when too long or with control characters."""
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise invalid(f"{field} is longer than {max_length} characters", field)
    if any(ord(ch) < 32 for ch in value):
        raise invalid(f"{field} contains control characters", field)
    return value


def external_ref(value: str | None, field: str = "external_ref") -> str | None:
    return short_text(value, field, MAX_EXTERNAL_REF)


def read_upload_bytes(upload: UploadFile, max_bytes: int, field: str = "files") -> bytes:
    """At most max_bytes from an upload; 413 when it is larger, 422 when it is empty."""
    name = upload.filename or "upload"
    upload.file.seek(0)
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"{name} is larger than the limit of {max_bytes} bytes", field)
    if not data:
        raise invalid(f"{name} is empty (0 bytes)", field, code="empty_file")
    return data


def decode_image(data: bytes, name: str, max_pixels: int, field: str = "files") -> tuple[Image.Image, str]:
    """Bytes -> (RGB image, format), decoded once by the model's rules (model.images.decode_bytes);
    its typed errors become ApiErrors: not an image, unsupported format, too many pixels, too small,
    corrupt or truncated."""
    try:
        decoded = decode_bytes(
            data, name, max_pixels=max_pixels, formats=tuple(SUPPORTED_FORMATS), min_side=MIN_SIDE
        )
    except NotAnImageError:
        raise invalid(
            f"{name} is not an image (or not in a supported format)", field, code="not_an_image"
        ) from None
    except UnsupportedImageFormatError as exc:
        supported = ", ".join(SUPPORTED_FORMATS[f] for f in exc.supported)
        raise ApiError(
            415, "unsupported_format", f"{name} is {exc.format}; supported formats: {supported}", field
        ) from None
    except ImageTooLargeError as exc:
        if exc.limit is None:  # a decompression bomb
            message = f"{name} has too many pixels to decode safely"
        else:
            message = f"{name} is {exc.width}x{exc.height} pixels, over the limit of {exc.limit}"
        raise ApiError(413, "too_many_pixels", message, field) from None
    except ImageTooSmallError as exc:
        raise invalid(
            f"{name} is {exc.width}x{exc.height} pixels; both sides must be at least {exc.min_side}", field
        ) from None
    except CorruptImageError as exc:
        raise invalid(f"{name} is corrupt or truncated: {exc.reason}", field, code="bad_image") from None
    except Exception as exc:  # decoder bugs on hostile files are still the file's problem, not a 500
        logger.warning("decoding %s failed unexpectedly: %r", name, exc)
        raise invalid(
            f"{name} could not be decoded ({type(exc).__name__})", field, code="bad_image"
        ) from None
    return decoded.image, decoded.format


def prepare_upload(
    upload: UploadFile, max_bytes: int, max_pixels: int, field: str = "files"
) -> PreparedImage:
    name = upload.filename or "upload"
    data = read_upload_bytes(upload, max_bytes, field)
    image, fmt = decode_image(data, name, max_pixels, field)
    return PreparedImage(
        filename=name,
        data=data,
        content_hash=hashlib.sha256(data).hexdigest(),
        image=image,
        format=fmt,
        width=image.width,
        height=image.height,
    )


def per_file(values: list[str] | None, n: int, field: str, *, required: bool) -> list[str | None]:
    """One value for all files or one per file -> a list of n values."""
    values = [v for v in (values or [])]
    if not values:
        if required:
            raise invalid(f"{field} is required (one for all files or one per file)", field, code="missing")
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise invalid(f"{len(values)} {field} values for {n} files: give one for all or one per file", field)
    return values


def track_ref(value: str | None, field: str = "track_ref") -> str | None:
    """A person track's reference (any text of 1..MAX_TRACK_REF characters without control characters)."""
    return short_text(value, field, MAX_TRACK_REF)
