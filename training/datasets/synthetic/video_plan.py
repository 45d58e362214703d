"""Who walks where in a synthetic store video: visitors, their passes past each camera, and the
boxes the ground truth records. Pure functions of the config (seed included); no pixels here.

A visitor enters the store at camera 0, passes some of the middle cameras and leaves past the last
one; a share of visitors comes back to a camera later (a re-entry). Each pass is one walk across the
camera's picture from one edge to another, at a walking speed, sometimes with a pause (people
standing, crossing and occluding each other). Person height follows depth: far (near the horizon)
is small, near (the bottom of the picture) is large.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from training.datasets.base import DatasetError


@dataclass(frozen=True)
class VideoSceneConfig:
    """Parameters of a rendered store video set. Same config (seed included) -> identical files."""

    preset: str = "store-video"
    seed: int = 0
    num_cameras: int = 3
    num_visitors: int = 30
    width: int = 768
    height: int = 576
    fps: float = 10.0
    duration_s: float = 60.0
    # pixels at the horizon .. at the bottom edge, before each identity's height factor (0.86-1.06):
    # people 60-200 px tall, as on ordinary 768x576 surveillance footage
    person_height: tuple[int, int] = (70, 190)
    walk_seconds: tuple[float, float] = (4.0, 9.0)  # time to cross the picture
    gap_seconds: tuple[float, float] = (1.0, 4.0)  # from leaving one camera to entering the next
    pause_fraction: float = 0.2  # share of passes with a standstill in the middle
    revisit_fraction: float = 0.1  # share of visitors passing one camera twice
    twin_fraction: float = 0.1
    start: str = "2024-06-03T10:00:00+00:00"  # capture time of frame 0 of every camera
    jpeg_quality: int = 90  # MJPEG quality of the written videos
    light_drift: float = 0.15  # outdoor light: slow brightness swings of up to +-this share (clouds)
    counter_fraction: float = 0.5  # share of cameras with a low counter in front hiding people's legs

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.num_cameras <= 9:
            problems.append("num_cameras must be 1..9")
        if self.num_visitors < 1:
            problems.append("num_visitors must be >= 1")
        if self.width < 96 or self.height < 96:
            problems.append("frames must be at least 96x96")
        if not 1 <= self.fps <= 60:
            problems.append("fps must be 1..60")
        low, high = self.person_height
        if not 0 <= self.light_drift < 0.5:
            problems.append("light_drift must be 0..0.5")
        if not 0 <= self.counter_fraction <= 1:
            problems.append("counter_fraction must be 0..1")
        if not 24 <= low <= high <= self.height:
            problems.append("person_height must satisfy 24 <= low <= high <= height")
        if not 0 < self.walk_seconds[0] <= self.walk_seconds[1]:
            problems.append("walk_seconds must satisfy 0 < low <= high")
        if self.duration_s < 2 * self.walk_seconds[1]:
            problems.append("duration_s must be at least twice the longest walk")
        try:
            parsed = datetime.fromisoformat(self.start)
            if parsed.tzinfo is None:
                problems.append("start must carry a timezone, e.g. +00:00")
        except ValueError:
            problems.append(f"start must be ISO 8601, got {self.start!r}")
        if problems:
            raise DatasetError("invalid video scene config: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        return int(round(self.duration_s * self.fps))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> VideoSceneConfig:
        if name not in VIDEO_PRESETS:
            raise DatasetError(f"unknown video preset {name!r}; choose one of {', '.join(VIDEO_PRESETS)}")
        return dataclasses.replace(VIDEO_PRESETS[name], **overrides)


VIDEO_PRESETS: dict[str, VideoSceneConfig] = {
    # surveillance-like footage: 768x576 at 10 fps, people 60-200 px tall, 3 cameras x 1 minute, light
    # drifting, per-frame sensor noise, pillars and counters hiding parts of people
    "store-video": VideoSceneConfig(),
    # a few seconds of low-resolution video per camera: for tests on 2 CPU cores
    "store-video-small": VideoSceneConfig(
        preset="store-video-small",
        num_cameras=2,
        num_visitors=4,
        width=384,
        height=288,
        fps=10.0,
        duration_s=16.0,
        person_height=(110, 180),
        walk_seconds=(3.0, 4.5),
        gap_seconds=(0.5, 1.5),
        pause_fraction=0.0,
        revisit_fraction=0.0,
        counter_fraction=0.0,
    ),
}


@dataclass(frozen=True)
class Pass:
    """One walk of one visitor across one camera's picture (= one true track)."""

    camera: int  # 0-based
    track_id: int  # 1-based, unique within the camera
    pid: int  # identity (1-based; the synthetic identity look)
    t_enter: float  # seconds from the video start
    t_exit: float
    start_xy: tuple[float, float]  # feet position (x, y) at t_enter, pixels; may lie outside the frame
    end_xy: tuple[float, float]
    pause: tuple[float, float] | None  # (start, length) seconds into the pass where the person stands

    def feet_at(self, t: float) -> tuple[float, float] | None:
        """Feet position at time t, or None when the pass is not under way."""
        if not self.t_enter <= t <= self.t_exit:
            return None
        moving = self.t_exit - self.t_enter - (self.pause[1] if self.pause else 0.0)
        elapsed = t - self.t_enter
        if self.pause:
            p0, plen = self.pause
            elapsed = elapsed if elapsed < p0 else max(p0, elapsed - plen)
        f = min(max(elapsed / max(moving, 1e-6), 0.0), 1.0)
        return (
            self.start_xy[0] + f * (self.end_xy[0] - self.start_xy[0]),
            self.start_xy[1] + f * (self.end_xy[1] - self.start_xy[1]),
        )

    def view(self) -> str:
        """Front (walking towards the camera), back (away), left / right (across)."""
        dx, dy = self.end_xy[0] - self.start_xy[0], self.end_xy[1] - self.start_xy[1]
        if abs(dy) > 0.3 * abs(dx):  # the renderer's side view is thin: only for walks straight across
            return "front" if dy > 0 else "back"
        return "right" if dx > 0 else "left"


def horizon_y(config: VideoSceneConfig) -> float:
    """Feet at this y are as far as people get (smallest)."""
    return 0.45 * config.height


def person_height_at(config: VideoSceneConfig, feet_y: float) -> float:
    low, high = config.person_height
    f = (feet_y - horizon_y(config)) / (config.height - horizon_y(config))
    return low + float(np.clip(f, 0.0, 1.2)) * (high - low)


def _edge_point(config: VideoSceneConfig, rng: np.random.Generator, edge: str) -> tuple[float, float]:
    w, h, far = config.width, config.height, horizon_y(config)
    if edge == "bottom":  # feet below the frame: the person walks out towards the camera
        return float(rng.uniform(0.2 * w, 0.8 * w)), h + 0.25 * config.person_height[1]
    if edge == "far":  # the far end of the aisle: people appear from behind the shelves there
        return float(rng.uniform(0.15 * w, 0.85 * w)), far + 0.02 * (h - far)
    y = float(rng.uniform(far + 0.1 * (h - far), h - 0.05 * h))
    margin = 0.35 * person_height_at(config, y)  # fully outside: the body is about 0.3 h wide
    return (-margin if edge == "left" else w + margin), y


def plan_passes(config: VideoSceneConfig) -> list[Pass]:
    """Every pass of every visitor, sorted by camera then entry time; track ids per camera."""
    rng = np.random.default_rng([config.seed, 21])
    raw: list[tuple[int, int, float, float, tuple, tuple, tuple | None]] = []
    last = config.num_cameras - 1
    for pid in range(1, config.num_visitors + 1):
        if config.num_cameras <= 2:
            route = list(range(config.num_cameras))
        else:
            middle = [c for c in range(1, last) if rng.random() < 0.6]
            route = [0, *middle, last]
        if rng.random() < config.revisit_fraction:
            route.append(int(rng.choice(route)))
        total_walk = (sum(config.walk_seconds) + sum(config.gap_seconds)) / 2 * len(route)
        t = float(rng.uniform(0.0, max(config.duration_s - total_walk, 1.0)))
        for camera in route:
            walk = float(rng.uniform(*config.walk_seconds))
            pause = None
            if rng.random() < config.pause_fraction:
                pause = (float(rng.uniform(0.3, 0.6) * walk), float(rng.uniform(1.0, 3.0)))
            length = walk + (pause[1] if pause else 0.0)
            if t + length > config.duration_s - 0.5:  # does not fit before the video ends
                break
            # mostly along the aisle (far end <-> a near edge), sometimes straight across
            a, b = ("far", ("left", "right", "bottom")[int(rng.integers(3))])
            if rng.random() < 0.2:
                a, b = ("left", "right")
            start, end = _edge_point(config, rng, a), _edge_point(config, rng, b)
            if rng.random() < 0.5:
                start, end = end, start
            raw.append((camera, pid, t, t + length, start, end, pause))
            t += length + float(rng.uniform(*config.gap_seconds))
    raw.sort(key=lambda r: (r[0], r[2], r[1]))
    passes, next_id = [], {}
    for camera, pid, t0, t1, start, end, pause in raw:
        next_id[camera] = next_id.get(camera, 0) + 1
        passes.append(Pass(camera, next_id[camera], pid, t0, t1, start, end, pause))
    return passes


def full_box(config: VideoSceneConfig, feet: tuple[float, float], build: float = 1.0) -> tuple[float, ...]:
    """The person's unclipped box (x0, y0, x1, y1) for feet position `feet`."""
    h = person_height_at(config, feet[1])
    half = 0.19 * h * build
    return feet[0] - half, feet[1] - h, feet[0] + half, feet[1]


def clip_box(config: VideoSceneConfig, box: tuple[float, ...]) -> tuple[float, ...] | None:
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[2], config.width - 1.0), min(box[3], config.height - 1.0)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def stride_at(t: float, pid: int) -> float:
    """Leg swing in [-1, 1] (two steps a second, a per-person phase)."""
    return math.sin(2 * math.pi * 1.0 * t + pid)
