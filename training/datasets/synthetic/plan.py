"""Who is seen where and when: the list of images a synthetic dataset holds, with file names and
capture times, decided before any pixel is drawn.

People arrive over the opening hours (more around midday and early evening), and during a visit
of a few minutes pass several cameras in order; each pass yields a short track of images. A share
of people come back later the same day. Test identities give one query per camera; the rest of
their images, distractors (pid 0) and junk (pid -1) form the gallery.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from training.datasets.synthetic.camera import camera_look
from training.datasets.synthetic.config import SyntheticConfig

FRAME_RATE = 25  # frames per second in the Market-style file names
SEQUENCE_HOURS = 2  # a new recording sequence (`s<n>`) every 2 hours keeps frame numbers in 6 digits
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
SIDE_VIEWS = ("left", "right")


@dataclass(frozen=True)
class ImageSpec:
    """One image to render. `pid` as written in the file name (0 distractor, -1 junk); camid 0-based."""

    file: str  # path relative to the dataset root, e.g. "query/0002_c1s1_000451_00.jpg"
    split: str  # train | query | gallery
    pid: int
    camid: int
    captured_at: datetime
    view: str  # front | back | left | right
    kind: str  # person | distractor | junk
    look_index: int  # pid for persons, distractor number for distractors, 0 for junk
    serial: int  # position in the plan, seeds the image's random generator


@dataclass(frozen=True)
class _Sighting:
    pid: int
    camid: int
    at: datetime
    view: str
    kind: str
    look_index: int


def split_identities(config: SyntheticConfig) -> tuple[list[int], list[int]]:
    """Person ids 1..N shuffled into (train ids, test ids), both sorted."""
    rng = np.random.default_rng([config.seed, 0, 1])
    ids = rng.permutation(np.arange(1, config.num_train_ids + config.num_test_ids + 1))
    return sorted(int(i) for i in ids[: config.num_train_ids]), sorted(
        int(i) for i in ids[config.num_train_ids :]
    )


def _opening(config: SyntheticConfig) -> tuple[datetime, datetime]:
    day = date.fromisoformat(config.day)
    start = datetime.combine(day, time(hour=config.opening_hours[0]), tzinfo=UTC)
    return start, start + timedelta(hours=config.opening_hours[1] - config.opening_hours[0])


def _arrival(rng: np.random.Generator, opens: datetime, closes: datetime, latest_offset: float) -> datetime:
    """An arrival time: a mix of a flat spread and peaks at lunch and after work."""
    span = (closes - opens).total_seconds()
    choice = rng.random()
    if choice < 0.4:
        offset = rng.uniform(0, span)
    else:
        peak = 0.4 if choice < 0.7 else 0.78
        offset = rng.normal(peak * span, 0.12 * span)
    return opens + timedelta(seconds=float(np.clip(offset, 0, max(span - latest_offset, 0))))


def _route(rng: np.random.Generator, config: SyntheticConfig) -> list[int]:
    count = int(rng.integers(config.cameras_per_visit[0], config.cameras_per_visit[1] + 1))
    if config.route == "store":  # enter at camera 0, leave past the last camera, aisles between
        aisles = rng.permutation(np.arange(1, config.num_cameras - 1))[: max(count - 2, 0)]
        return [0, *sorted(int(a) for a in aisles), config.num_cameras - 1]
    return [int(c) for c in rng.permutation(config.num_cameras)[:count]]


def _track_view(rng: np.random.Generator, view_weights: tuple[float, float, float]) -> str:
    view = ("front", "back", "side")[rng.choice(3, p=np.asarray(view_weights) / sum(view_weights))]
    return SIDE_VIEWS[rng.integers(2)] if view == "side" else view


def _visit(
    rng: np.random.Generator,
    config: SyntheticConfig,
    pid: int,
    start: datetime,
    minutes: float,
    view_weights: list[tuple[float, float, float]],
) -> list[_Sighting]:
    route = _route(rng, config)
    offsets = np.sort(rng.uniform(0, minutes * 60, len(route) - 1))
    sightings = []
    free_from = start  # the person has walked out of the previous camera's view
    for camid, offset in zip(route, [0.0, *offsets], strict=True):
        at = max(start + timedelta(seconds=float(offset)), free_from)
        view = _track_view(rng, view_weights[camid])
        for _ in range(int(rng.integers(config.images_per_track[0], config.images_per_track[1] + 1))):
            sightings.append(_Sighting(pid, camid, at, view, "person", pid))
            at += timedelta(seconds=float(rng.uniform(0.3, 1.5)))
        free_from = at + timedelta(seconds=float(rng.uniform(5, 20)))
    return sightings


def plan_images(
    config: SyntheticConfig, view_weights: list[tuple[float, float, float]] | None = None
) -> list[ImageSpec]:
    """Every image of the dataset, sorted by file name.

    `view_weights[c]` = P(front, back, side) at camera c; by default the cameras' own (camera_look).
    """
    if view_weights is None:
        view_weights = [camera_look(config.seed, c).view_weights for c in range(config.num_cameras)]
    rng = np.random.default_rng([config.seed, 0, 2])
    opens, closes = _opening(config)
    train_ids, test_ids = split_identities(config)
    sightings: list[_Sighting] = []
    for pid in sorted(train_ids + test_ids):
        minutes = float(rng.uniform(*config.visit_minutes))
        start = _arrival(rng, opens, closes, latest_offset=minutes * 60 + 60)
        sightings += _visit(rng, config, pid, start, minutes, view_weights)
        if rng.random() < config.revisit_fraction:
            later = start + timedelta(minutes=minutes + float(rng.uniform(60, 240)))
            minutes_again = float(rng.uniform(*config.visit_minutes))
            if later + timedelta(minutes=minutes_again + 1) < closes:
                sightings += _visit(rng, config, pid, later, minutes_again, view_weights)
    span = (closes - opens).total_seconds() - 5
    for kind, count, pid in (("distractor", config.num_distractors, 0), ("junk", config.num_junk, -1)):
        for index in range(count):
            at = opens + timedelta(seconds=float(rng.uniform(0, span)))
            camid = int(rng.integers(config.num_cameras))
            sightings.append(
                _Sighting(pid, camid, at, _track_view(rng, view_weights[camid]), kind, index + 1)
            )

    split_of = _assign_splits(rng, sightings, set(train_ids))
    return _name_files(config, sightings, split_of, opens)


def _assign_splits(rng: np.random.Generator, sightings: list[_Sighting], train_ids: set[int]) -> list[str]:
    """train for training ids; for test ids one query per (pid, camera), the rest gallery."""
    by_pid_camera: dict[tuple[int, int], list[int]] = defaultdict(list)
    split_of = ["gallery"] * len(sightings)
    for index, sighting in enumerate(sightings):
        if sighting.kind != "person":
            continue
        if sighting.pid in train_ids:
            split_of[index] = "train"
        else:
            by_pid_camera[(sighting.pid, sighting.camid)].append(index)
    for key in sorted(by_pid_camera):
        candidates = by_pid_camera[key]
        split_of[candidates[int(rng.integers(len(candidates)))]] = "query"
    return split_of


def _name_files(
    config: SyntheticConfig, sightings: list[_Sighting], split_of: list[str], opens: datetime
) -> list[ImageSpec]:
    """Market-style names `<pid>_c<cam>s<seq>_<frame>_<box>.jpg`; the box number tells apart
    detections in the same frame. Capture times are snapped to the frame they name."""
    order = sorted(
        range(len(sightings)), key=lambda i: (sightings[i].at, sightings[i].camid, sightings[i].pid)
    )
    boxes_in_frame: dict[tuple[int, int, int], int] = defaultdict(int)
    specs = []
    for index in order:
        sighting = sightings[index]
        seconds = (sighting.at - opens).total_seconds()
        sequence = int(seconds // (SEQUENCE_HOURS * 3600))
        frame = int(round((seconds - sequence * SEQUENCE_HOURS * 3600) * FRAME_RATE))
        box = boxes_in_frame[(sighting.camid, sequence, frame)]
        boxes_in_frame[(sighting.camid, sequence, frame)] += 1
        pid_text = f"{sighting.pid:04d}" if sighting.pid >= 0 else str(sighting.pid)
        name = f"{pid_text}_c{sighting.camid + 1}s{sequence + 1}_{frame:06d}_{box:02d}.jpg"
        captured_at = opens + timedelta(
            seconds=sequence * SEQUENCE_HOURS * 3600, milliseconds=frame * 1000 // FRAME_RATE
        )
        specs.append((f"{SPLIT_FOLDERS[split_of[index]]}/{name}", split_of[index], sighting, captured_at))
    specs.sort(key=lambda item: item[0])
    return [
        ImageSpec(file, split, s.pid, s.camid, at, s.view, s.kind, s.look_index, serial)
        for serial, (file, split, s, at) in enumerate(specs)
    ]
