"""Errors a user can act on. The CLI prints them as one line; the service maps them to 4xx/5xx."""


class ReidError(Exception):
    """Base class for errors whose message is meant for the user."""


class CheckpointError(ReidError):
    """A weights file is missing, corrupt, or does not fit the network."""


class ImageDecodeError(ReidError):
    """Input that is not a decodable image (the subclasses below say why, with the facts as attributes)."""


class NotAnImageError(ImageDecodeError):
    """Bytes or a file no decoder recognises."""


class UnsupportedImageFormatError(ImageDecodeError):
    """An image in a format the caller does not accept."""

    def __init__(self, message: str, format: str, supported: tuple[str, ...]) -> None:
        super().__init__(message)
        self.format = format
        self.supported = supported


class ImageTooLargeError(ImageDecodeError):
    """More pixels than the caller's limit, or than PIL decodes safely (a decompression bomb: limit None)."""

    def __init__(self, message: str, width: int | None, height: int | None, limit: int | None) -> None:
        super().__init__(message)
        self.width = width
        self.height = height
        self.limit = limit


class ImageTooSmallError(ImageDecodeError):
    """A side shorter than the caller's minimum."""

    def __init__(self, message: str, width: int, height: int, min_side: int) -> None:
        super().__init__(message)
        self.width = width
        self.height = height
        self.min_side = min_side


class CorruptImageError(ImageDecodeError):
    """A recognised image whose data is corrupt or truncated; `reason` is the decoder's own words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InputSizeError(ReidError, ValueError):
    """A network was asked to run on an input size it was not built for."""
