"""`reid ingest-video`: point the product at a camera (video files or a live stream)."""

from __future__ import annotations

import argparse
import logging
import re
from datetime import datetime

logger = logging.getLogger(__name__)
CAMERA_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # what the service accepts


def register(subparsers: argparse._SubParsersAction) -> None:
    from video.detectors import DETECTORS

    p = subparsers.add_parser(
        "ingest-video",
        help="detect and track people in camera video; send crops with track references to the service",
        description="Decode video files or a live stream (RTSP/HTTP URL), detect people, track them within "
        "the camera and send a few good crops per track to a running service (POST /gallery), or write "
        "them to a folder with --dry-run. Re-running over the same file creates no duplicates.",
    )
    p.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="video files (consecutive segments) or one URL"
    )
    p.add_argument("--camera", required=True, help="camera id the crops are filed under")
    p.add_argument("--start", help="ISO 8601 capture time of the first frame of a file (with timezone)")
    p.add_argument("--fps", type=float, help="frames per second to process (frame skipping; default: all)")
    p.add_argument("--detector", choices=DETECTORS, default="hog", help="person detector (default hog)")
    p.add_argument("--detector-weights", help="weights file for --detector torchvision / onnx")
    p.add_argument("--detector-arch", help="torchvision architecture (default: found from the file)")
    p.add_argument(
        "--min-person-height",
        type=float,
        help="smallest people to find, px (HOG enlarges frames to fit them; motion ignores smaller blobs)",
    )
    p.add_argument(
        "--hog-upscale",
        type=float,
        help="enlarge frames for HOG by this factor (default: from --min-person-height, else 1)",
    )
    p.add_argument(
        "--min-track-seconds",
        type=float,
        default=0.0,
        help="tracks seen for less than this are dropped as noise (default 0: at least 3 frames)",
    )
    p.add_argument(
        "--no-stitch", action="store_true", help="do not join a lost track to the new track continuing it"
    )
    p.add_argument("--device", help="cpu or cuda for the torchvision detector (default: cuda if present)")
    p.add_argument("--crops-per-track", type=int, default=3, help="crops sent per track (default 3)")
    p.add_argument("--service", help="service URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--key", help="API key with the ingest role (or env REID_INGEST_KEY)")
    p.add_argument("--batch-size", type=int, default=16, help="crops per POST /gallery (default 16)")
    p.add_argument("--dry-run", metavar="DIR", help="write crops and tracks.jsonl to DIR instead of sending")
    p.set_defaults(func=run)


def _start(text: str | None) -> datetime | None:
    from video.errors import VideoError

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise VideoError(f"--start {text!r} is not ISO 8601 (e.g. 2024-06-03T10:00:00+00:00)") from exc
    if value.tzinfo is None:
        raise VideoError(f"--start {text!r} needs a timezone (e.g. +00:00 or Z)")
    return value


def run(args: argparse.Namespace) -> int:
    import os

    from video.client import GalleryClient
    from video.crops import CropPolicy
    from video.detectors import build_detector
    from video.errors import VideoError
    from video.ingest import ingest_video
    from video.sources import is_stream
    from video.tracking import TrackerSettings

    if args.dry_run is None and not args.service:
        raise VideoError("give --service URL (and --key), or --dry-run DIR")
    streams = [s for s in args.sources if is_stream(s)]
    if streams and len(args.sources) > 1:
        raise VideoError("a live stream is ingested alone: give one URL, or only files")
    if not CAMERA_ID.match(args.camera):
        raise VideoError(f"--camera {args.camera!r} must be 1..64 characters of A-Z a-z 0-9 _ . : -")
    if args.crops_per_track < 1:
        raise VideoError("--crops-per-track must be >= 1")
    start = _start(args.start)
    detector = build_detector(
        args.detector,
        args.detector_weights,
        arch=args.detector_arch,
        device=args.device,
        hog_upscale=args.hog_upscale,
        min_person_height=args.min_person_height,
        fps=args.fps or 10.0,
    )
    if args.min_track_seconds < 0:
        raise VideoError("--min-track-seconds must be >= 0")
    client = None
    if args.dry_run is None:
        key = args.key or os.environ.get("REID_INGEST_KEY")
        if not key:
            raise VideoError("--key (or REID_INGEST_KEY) is needed to send to the service")
        client = GalleryClient(args.service, key, batch_size=args.batch_size)
        client.check()
    try:
        report = ingest_video(
            args.sources,
            camera_id=args.camera,
            detector=detector,
            start=start,
            fps=args.fps,
            client=client,
            dry_run=args.dry_run,
            crop_policy=CropPolicy(per_track=args.crops_per_track),
            tracker_settings=TrackerSettings(min_seconds=args.min_track_seconds, stitch=not args.no_stitch),
        )
    finally:
        if client is not None:
            client.close()
    print(report.line())
    return 1 if report.sent is not None and report.sent.failed else 0
