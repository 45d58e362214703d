"""`reid` subcommands contributed by the training package."""

from __future__ import annotations

import argparse

from training.datasets import cli as datasets_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands (each sets `func`, which returns an exit code)."""
    datasets_cli.register(subparsers)
