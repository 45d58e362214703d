"""`reid synth` (and other dataset subcommands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands."""
