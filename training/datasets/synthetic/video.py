"""Rendered store videos with ground truth: `reid synth --preset store-video`.

    <out>/cam1.avi ... camN.avi   MJPEG videos (OpenCV writes them; any FFmpeg decodes them)
    <out>/boxes.csv               camera_id,frame,track_id,pid,x0,y0,x1,y1,visibility (boxes clipped to
                                  the frame; visibility = share of the body not hidden by the frame
                                  border, another person or a pillar)
    <out>/ground_truth.json       config, cameras (file, fps, size, frames, start), passes (one per true
                                  track: camera, track id, identity, entry / exit times) and the true
                                  counts (passes and distinct visitors per camera, visitors overall)

People are the synthetic identities of `reid synth` (training/datasets/synthetic/appearance.py)
drawn whole-body by the same renderer, walking with a leg swing, scaled by depth, nearer people
drawn over farther ones. Deterministic: the same config writes the same frames (the MJPEG bytes
depend on the OpenCV build's JPEG encoder).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from training.datasets.base import DatasetError
from training.datasets.synthetic.appearance import identity_look
from training.datasets.synthetic.camera import camera_background, camera_look
from training.datasets.synthetic.render import NOISE_MARGIN, _Canvas, _noise_bank, _palette, draw_person
from training.datasets.synthetic.video_plan import (
    Pass,
    VideoSceneConfig,
    clip_box,
    horizon_y,
    person_height_at,
    plan_passes,
    stride_at,
)

logger = logging.getLogger(__name__)

GENERATOR = "reid synth (video)"
MANIFEST = "ground_truth.json"
BOXES = "boxes.csv"
BOX_COLUMNS = ("camera_id", "frame", "track_id", "pid", "x0", "y0", "x1", "y1", "visibility")


def camera_id(camera: int) -> str:
    return f"cam{camera + 1}"


def _sprite(config: VideoSceneConfig, p: Pass, feet: tuple[float, float], t: float, palette: np.ndarray):
    """The person's colours and mask in a small canvas, and where its top-left corner goes."""
    look = identity_look(config.seed, p.pid, config.twin_fraction)
    body = person_height_at(config, feet[1]) * look.height
    sh, sw = int(body * 1.08) + 2, int(body * 0.7) + 2
    canvas = _Canvas(sh, sw)
    view = p.view()
    draw_person(
        canvas, look, "right" if view == "left" else view, sw / 2, sh - 1.0, body, stride_at(t, p.pid)
    )
    labels = canvas.labels[:, ::-1] if view == "left" else canvas.labels
    return (
        np.take(palette, labels, axis=0),
        labels > 0,
        int(round(feet[0] - sw / 2)),
        int(round(feet[1] - sh)),
    )


def _pillars(config: VideoSceneConfig, camera: int) -> list[tuple[int, int]]:
    """Static occluders in front of the walkers: (x0, x1) columns, from the floor up to the top."""
    rng = np.random.default_rng([config.seed, 22, camera])
    if rng.random() < 0.5:
        return []
    width = int(config.width * rng.uniform(0.03, 0.06))
    x0 = int(rng.uniform(0.15, 0.8) * config.width)
    return [(x0, x0 + width)]


def _counter(config: VideoSceneConfig, camera: int) -> tuple[int, int, int, int] | None:
    """A low counter or shelf standing on the floor (x0, y0, x1, y1): it hides the legs of people
    walking behind it (feet above its base line) and is hidden by people in front of it."""
    rng = np.random.default_rng([config.seed, 25, camera])
    if rng.random() >= config.counter_fraction:
        return None
    h, w, far = config.height, config.width, horizon_y(config)
    base = int(far + rng.uniform(0.35, 0.7) * (h - far))
    tall = int(0.4 * person_height_at(config, base))  # about hip height of a person standing there
    width = int(w * rng.uniform(0.25, 0.45))
    x0 = int(rng.uniform(0.0, 1.0) * (w - width))
    return x0, base - tall, x0 + width, base


def light_gain(config: VideoSceneConfig, camera: int, t: float) -> float:
    """Outdoor light: the scene's brightness factor at time t (slow swings, clouds passing)."""
    if config.light_drift == 0:
        return 1.0
    rng = np.random.default_rng([config.seed, 26, camera])
    p1, p2 = rng.uniform(20.0, 40.0), rng.uniform(5.0, 10.0)
    f1, f2 = rng.uniform(0, 2 * math.pi, 2)
    swing = 0.6 * math.sin(2 * math.pi * t / p1 + f1) + 0.4 * math.sin(2 * math.pi * t / p2 + f2)
    return 1.0 + config.light_drift * swing


def render_frame(
    config: VideoSceneConfig, camera: int, frame: int, passes: list[Pass]
) -> tuple[np.ndarray, list[dict]]:
    """Frame `frame` of `camera`: (H, W, 3) uint8 RGB and its ground-truth rows."""
    t = frame / config.fps
    look = camera_look(config.seed, camera)
    h, w = config.height, config.width
    image = camera_background(look, h, w)[:h, :w].copy()
    owner = np.full((h, w), -1, np.int32)  # which visible person each pixel shows
    here = [(p, p.feet_at(t)) for p in passes if p.camera == camera]
    here = sorted(((p, f) for p, f in here if f is not None), key=lambda pf: pf[1][1])  # far first
    boxes, areas = [], []
    counter = _counter(config, camera)

    def draw_counter() -> None:
        cx0, cy0, cx1, cy1 = counter
        image[cy0:cy1, cx0:cx1] = np.asarray(look.accent, np.float32) * 0.45 + 40.0
        image[cy0 : cy0 + 3, cx0:cx1] = np.asarray(look.accent, np.float32) * 0.3  # the top edge
        owner[cy0:cy1, cx0:cx1] = -1

    for k, (p, feet) in enumerate(here):
        if counter is not None and feet[1] > counter[3]:  # this person and the rest stand in front of it
            draw_counter()
            counter = None
        rng = np.random.default_rng([config.seed, 23, camera, p.track_id])  # same colours each frame
        palette = _palette(identity_look(config.seed, p.pid, config.twin_fraction), look, rng)
        colours, mask, x0, y0 = _sprite(config, p, feet, t, palette)
        ys, xs = np.nonzero(mask)
        areas.append(len(ys))
        boxes.append((x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1.0, y0 + ys.max() + 1.0))
        # paste the part that lies inside the frame
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = min(mask.shape[0], h - y0), min(mask.shape[1], w - x0)
        if sy0 >= sy1 or sx0 >= sx1:
            continue
        region = (slice(y0 + sy0, y0 + sy1), slice(x0 + sx0, x0 + sx1))
        m = mask[sy0:sy1, sx0:sx1]
        image[region][m] = colours[sy0:sy1, sx0:sx1][m]
        owner[region][m] = k
    if counter is not None:
        draw_counter()
    for x0, x1 in _pillars(config, camera):
        image[:, x0:x1] = np.asarray(look.accent, np.float32) * 0.6
        owner[:, x0:x1] = -1
    image *= np.float32(light_gain(config, camera, t))
    # fresh sensor noise each frame (a window of the bank chosen per frame), as a real camera's
    oy, ox = np.random.default_rng([config.seed, 24, camera, frame]).integers(0, NOISE_MARGIN, 2)
    bank = _noise_bank(h, w)
    image = np.clip(image + bank[oy : oy + h, ox : ox + w] * np.float32(look.noise), 0, 255).astype(np.uint8)
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(here))
    rows = []
    for k, (p, _) in enumerate(here):
        clipped = clip_box(config, boxes[k])
        if clipped is None or visible[k] == 0:
            continue
        rows.append(
            {
                "camera_id": camera_id(camera),
                "frame": frame,
                "track_id": p.track_id,
                "pid": p.pid,
                "x0": round(clipped[0], 1),
                "y0": round(clipped[1], 1),
                "x1": round(clipped[2], 1),
                "y1": round(clipped[3], 1),
                "visibility": round(float(visible[k]) / max(areas[k], 1), 3),
            }
        )
    return image, rows


def _write_video(config: VideoSceneConfig, camera: int, passes: list[Pass], path: Path) -> list[dict]:
    import cv2  # the "video" extra

    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), config.fps, (config.width, config.height)
    )
    if not writer.isOpened():
        raise DatasetError(f"OpenCV cannot write MJPEG video to {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, config.jpeg_quality)
    rows: list[dict] = []
    try:
        for frame in range(config.num_frames):
            image, frame_rows = render_frame(config, camera, frame, passes)
            writer.write(np.ascontiguousarray(image[:, :, ::-1]))
            rows.extend(frame_rows)
    finally:
        writer.release()
    return rows


def manifest(config: VideoSceneConfig, passes: list[Pass]) -> dict:
    start = datetime.fromisoformat(config.start)

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat()

    cameras = [camera_id(c) for c in range(config.num_cameras)]
    truth = {
        c: {
            "passes": sum(p.camera == i for p in passes),
            "visitors": len({p.pid for p in passes if p.camera == i}),
        }
        for i, c in enumerate(cameras)
    }
    return {
        "generator": GENERATOR,
        "config": config.to_dict(),
        "cameras": [
            {
                "camera_id": c,
                "video": f"{c}.avi",
                "fps": config.fps,
                "width": config.width,
                "height": config.height,
                "num_frames": config.num_frames,
                "start": config.start,
            }
            for c in cameras
        ],
        "passes": [
            {
                "camera_id": camera_id(p.camera),
                "track_id": p.track_id,
                "pid": p.pid,
                "t_enter": round(p.t_enter, 3),
                "t_exit": round(p.t_exit, 3),
                "entered_at": at(p.t_enter),
                "exited_at": at(p.t_exit),
            }
            for p in passes
        ],
        "truth": {"per_camera": truth, "visitors": len({p.pid for p in passes}), "passes": len(passes)},
    }


def generate_video(config: VideoSceneConfig, out: str | Path, force: bool = False) -> Path:
    """Write the videos and ground truth to `out` (built in a staging folder, moved into place whole).

    An `out` that already holds this config is kept; another config needs `force`, which replaces
    only a folder this generator wrote.
    """
    out = Path(out)
    existing = out / MANIFEST
    if out.exists() and any(out.iterdir()):
        if not existing.is_file():
            raise DatasetError(f"{out} is not empty and was not written by {GENERATOR}")
        try:
            same = json.loads(existing.read_text(encoding="utf-8")).get("config") == config.to_dict()
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{existing} is unreadable: {exc}") from exc
        if same and not force:
            logger.info("%s already holds this video set; kept", out)
            return out
        if not force:
            raise DatasetError(f"{out} holds a video set with another config; pass --force to replace it")
    started = time.perf_counter()
    passes = plan_passes(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.synth-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    rows: list[dict] = []
    for camera in range(config.num_cameras):
        rows.extend(_write_video(config, camera, passes, staging / f"{camera_id(camera)}.avi"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=BOX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (staging / BOXES).write_text(buffer.getvalue(), encoding="utf-8")
    (staging / MANIFEST).write_text(json.dumps(manifest(config, passes), indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    logger.info(
        "wrote %d cameras x %d frames, %d passes of %d visitors to %s in %.1f s",
        config.num_cameras,
        config.num_frames,
        len(passes),
        len({p.pid for p in passes}),
        out,
        time.perf_counter() - started,
    )
    return out
