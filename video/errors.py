"""Errors a user can act on (printed by the CLI as one line)."""

from model.errors import ReidError


class VideoError(ReidError):
    """A video source, detector file or service answer that the ingest cannot work with."""
