"""`reid` command-line entry point.

Each package contributes its own subcommands through a `register(subparsers)` function
in `<package>/cli.py`; this module only assembles them, so packages stay independent
(service -> model, training -> model; nothing imports this module).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = ("model.cli", "model.export_cli", "training.cli", "service.cli", "video.cli", "reid.demo")
# Loggers whose INFO lines are hidden unless --verbose.
QUIET_LOGGERS = ("httpx", "faiss", "alembic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid", description="Person re-identification with RGA-SC.")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and the INFO lines of faiss, alembic and httpx"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request drowns the progress of `reid demo`; faiss's loader and alembic's migration
    # context print half a dozen lines each at every start that say nothing to an operator.
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # user-facing errors: one clear line, no traceback
        from model.errors import ReidError

        if isinstance(exc, ReidError):
            print(f"reid {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
