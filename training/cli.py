"""`reid` subcommands contributed by the training package."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands (each sets `func`, which returns an exit code)."""
