"""`reid` command-line entry point.

Each package contributes its own subcommands through a `register(subparsers)` function
in `<package>/cli.py`; this module only assembles them, so packages stay independent
(service -> model, training -> model; nothing imports this module).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

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


class _Terminated(KeyboardInterrupt):
    """SIGTERM (`docker stop`, Kubernetes, a batch scheduler's preemption) taken as Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def _sigterm_as_ctrl_c() -> bool:
    """Every command stops on SIGTERM the way it stops on Ctrl-C: `reid train` writes resume.pt, a live
    `reid ingest-video` sends the tracks in view, and so on. Servers (uvicorn) install their own handlers
    while they run. Left alone when SIGTERM is already handled or ignored, or off the main thread.
    True when installed (main() puts the default back when the command returns)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def main(argv: list[str] | None = None) -> int:
    installed = _sigterm_as_ctrl_c()
    try:
        return _main(argv)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
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
    except _Terminated:
        return 143  # 128 + SIGTERM, as a shell reports it
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # user-facing errors: one clear line, no traceback
        from model.errors import ReidError

        if isinstance(exc, ReidError):
            print(f"reid {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
