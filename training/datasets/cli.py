"""`reid synth` (and other dataset subcommands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands."""
    from training.datasets.synthetic.config import PRESETS
    from training.datasets.synthetic.store_crops import STORE_CROP_PRESETS
    from training.datasets.synthetic.video_plan import VIDEO_PRESETS

    synth = subparsers.add_parser(
        "synth",
        help="write a procedural synthetic re-ID dataset (Market-1501 layout + timestamps)",
        description="Write a synthetic re-ID dataset in the Market-1501 layout, with timestamps.csv and "
        "dataset.json; or, with a store-video preset, rendered camera videos with ground truth (boxes, "
        "tracks, identities, entry/exit times). Safe to run twice: an existing identical dataset is kept.",
    )
    synth.add_argument(
        "--out", required=True, help="output folder (created; must be empty or an earlier synth)"
    )
    synth.add_argument(
        "--preset",
        choices=sorted(PRESETS) + sorted(VIDEO_PRESETS) + sorted(STORE_CROP_PRESETS),
        default="market",
        help="size and scene (default market); store-video*: videos with ground truth; store-reid*: re-ID "
        "crops cut from rendered store scenes (train on these for store footage)",
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
    from training.datasets.synthetic.store_crops import STORE_CROP_PRESETS
    from training.datasets.synthetic.video_plan import VIDEO_PRESETS

    if args.preset in STORE_CROP_PRESETS:
        from dataclasses import replace

        from training.datasets.synthetic.store_crops import generate_store_crops

        generate_store_crops(
            replace(STORE_CROP_PRESETS[args.preset], seed=args.seed),
            args.out,
            force=args.force,
            workers=args.workers,
        )
        return 0
    if args.preset in VIDEO_PRESETS:
        from training.datasets.synthetic.video import generate_video
        from training.datasets.synthetic.video_plan import VideoSceneConfig

        generate_video(VideoSceneConfig.from_preset(args.preset, seed=args.seed), args.out, force=args.force)
        return 0
    config = SyntheticConfig.from_preset(args.preset, seed=args.seed)
    generate(config, args.out, workers=args.workers, force=args.force, progress=not args.no_progress)
    return 0  # generate() logs what it wrote or why it kept the existing folder
