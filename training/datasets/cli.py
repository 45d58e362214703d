"""`reid synth` (and other dataset subcommands)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands."""
    from training.datasets.synthetic.config import PRESETS

    synth = subparsers.add_parser(
        "synth",
        help="write a procedural synthetic re-ID dataset (Market-1501 layout + timestamps)",
        description="Write a synthetic re-ID dataset in the Market-1501 layout, with timestamps.csv and "
        "dataset.json. Safe to run twice: an existing identical dataset is kept.",
    )
    synth.add_argument(
        "--out", required=True, help="output folder (created; must be empty or an earlier synth)"
    )
    synth.add_argument(
        "--preset", choices=sorted(PRESETS), default="market", help="size and scene (default market)"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed -> identical files (default 0)"
    )
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all available cores)")
    synth.add_argument("--force", action="store_true", help="regenerate even if the output exists")
    synth.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from training.datasets.synthetic import SyntheticConfig, generate

    config = SyntheticConfig.from_preset(args.preset, seed=args.seed)
    result = generate(config, args.out, workers=args.workers, force=args.force, progress=not args.no_progress)
    if result.skipped:
        logger.info(
            "%s already holds preset %s seed %d (%d images); kept",
            result.out,
            args.preset,
            args.seed,
            result.num_images,
        )
    else:
        logger.info(
            "wrote %d images to %s (%.0f images/s)",
            result.num_images,
            result.out,
            result.num_images / max(result.seconds, 1e-9),
        )
    return 0
