"""Errors a user can act on. The CLI prints them as one line; the service maps them to 4xx/5xx."""


class ReidError(Exception):
    """Base class for errors whose message is meant for the user."""


class CheckpointError(ReidError):
    """A weights file is missing, corrupt, or does not fit the network."""


class ImageDecodeError(ReidError):
    """Input that is not a decodable image."""


class InputSizeError(ReidError, ValueError):
    """A network was asked to run on an input size it was not built for."""
