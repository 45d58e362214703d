"""The demo's camera step: a rendered store video through `reid ingest-video` into the running service.

Stores have cameras, not crops. This step renders the `store-video` benchmark scene (seed 0: three
cameras, 60 s each at 768x576 and 10 fps, 30 visitors, ground truth kept; `reid synth --preset
store-video`; tests use `store-video-small`), sends each camera through person detection (the motion detector: fixed cameras) and
tracking into the service over its public API, and prints, per camera, the tracks made next to the
true passes (the count from tracking alone, no model involved), then the visitors GET /metrics counts
over the three cameras (tracks linked by the re-ID model) next to the true visitors.

The scene's capture times are moved to the day after the store's, so its visitors never meet the
store gallery's. Cameras are ingested two at a time (the motion detector is single-threaded).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

logger = logging.getLogger("reid.demo")

SCENE_SEED = 0  # bench.video's seed 0: BENCHMARKS.md has its per-camera table
FPS = 10.0
MIN_PERSON_HEIGHT = 60.0
CAMERA_PREFIX = "video-"


def video_stack_missing() -> str | None:
    """Why the camera step cannot run here (the `video` extra is not installed), or None."""
    try:
        import cv2  # noqa: F401
        import supervision  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'rga-reid[video]')"
    return None


def render_scene(root: Path, store_day: str, preset: str) -> Path:
    """The benchmark scene, rendered once under `root` (a second demo run reuses it)."""
    from training.datasets.synthetic.video import generate_video
    from training.datasets.synthetic.video_plan import VideoSceneConfig

    day = datetime.fromisoformat(store_day) + timedelta(days=1)
    start = day.replace(hour=10).isoformat() + "+00:00"
    scene = VideoSceneConfig.from_preset(preset, seed=SCENE_SEED, start=start)
    return generate_video(scene, root)


def ingest_camera(base_url: str, key: str, root: Path, camera: dict):
    """One camera's video into the service; its IngestReport."""
    from video.client import GalleryClient
    from video.detectors import build_detector
    from video.ingest import ingest_video

    detector = build_detector("motion", min_person_height=MIN_PERSON_HEIGHT, fps=FPS)
    client = GalleryClient(base_url, key, batch_size=32)
    try:
        return ingest_video(
            [str(root / camera["video"])],
            camera_id=CAMERA_PREFIX + camera["camera_id"],
            detector=detector,
            start=datetime.fromisoformat(camera["start"]),
            fps=FPS,
            client=client,
        )
    finally:
        client.close()


def camera_step(
    client,
    base_url: str,
    key: str,
    root: Path,
    store_day: str,
    model_at_chance: bool,
    preset: str = "store-video",
) -> None:
    missing = video_stack_missing()
    if missing is not None:
        logger.info("step 7/8: cameras skipped: %s", missing)
        return
    logger.info("step 7/8: cameras: rendering the %s scene (seed %d) in %s", preset, SCENE_SEED, root)
    root = render_scene(root, store_day, preset)
    truth = json.loads((root / "ground_truth.json").read_text())
    cameras = truth["cameras"]
    first = cameras[0]
    seconds = first["num_frames"] / first["fps"]
    logger.info("  detecting, tracking and sending %d cameras through reid ingest-video", len(cameras))
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda camera: ingest_camera(base_url, key, root, camera), cameras))

    print(f"Cameras ({preset} seed {SCENE_SEED}: {len(cameras)} cameras x {seconds:g} s, {first['width']}x"
          f"{first['height']}; motion detector at {FPS:g} fps, tracking):")  # fmt: skip
    print(" camera  tracks  true passes  error   (the per-camera count from tracking alone, no model)")
    for camera, report in zip(cameras, reports, strict=True):
        passes = truth["truth"]["per_camera"][camera["camera_id"]]["passes"]
        error = (report.tracks - passes) / max(passes, 1)
        print(f" {camera['camera_id']:6s}  {report.tracks:6d}  {passes:11d}  {error:+6.1%}")
    start = datetime.fromisoformat(cameras[0]["start"]).replace(hour=0)
    response = client.get(
        "/metrics",
        params={
            "start": start.isoformat(),
            "end": (start + timedelta(days=1)).isoformat(),
            "bucket": "1h",
            "camera_id": [CAMERA_PREFIX + c["camera_id"] for c in cameras],
        },
    )
    response.raise_for_status()
    counted = response.json()["totals"]["unique_visitors"]
    visitors = truth["truth"]["visitors"]
    print(
        f"Visitors over the {len(cameras)} cameras: {counted} counted (tracks linked by re-ID), {visitors} in "
        f"truth ({abs(counted - visitors) / max(visitors, 1):.1%} off)."
    )
    if model_at_chance:
        print(" (the model is at chance: linking tracks across cameras is not measured here)")
    print()
