"""The tracking rules that make a per-camera count from tracks alone: colour-checked stitching
and track quality (movement, parts), each on synthetic detections in frames with known people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.video.replay import ReplayDetector
from video import appearance as colour
from video.pipeline import PipelineStats, track_source
from video.sources import Frame
from video.stitching import Continuation
from video.track_quality import attached, part_of, travel
from video.tracking import TrackerSettings

H, W = 240, 400
START = datetime(2024, 6, 3, 10, tzinfo=UTC)
FLOOR = (120, 130, 125)  # BGR, a grey floor
# two people's clothes (BGR): top, bottom
RED_BLUE = ((40, 40, 200), (160, 60, 20))
GREEN_YELLOW = ((40, 170, 40), (30, 200, 220))


def _draw(people) -> np.ndarray:
    """A frame with people as two-coloured boxes: (box, (top, bottom)); later ones in front."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = FLOOR
    for (x0, y0, x1, y1), (top, bottom) in people:
        middle = (y0 + y1) // 2
        image[int(y0) : int(middle), int(x0) : int(x1)] = top
        image[int(middle) : int(y1), int(x0) : int(x1)] = bottom
    return image


def _run(scenes, detections, settings=None, stats=None):
    frames = [Frame(i, i / 10, START + timedelta(seconds=i / 10), _draw(p)) for i, p in enumerate(scenes)]
    return list(
        track_source(
            iter(frames),
            camera_id="cam",
            source_key="k",
            detector=ReplayDetector(detections),
            fps=10,
            tracker_settings=settings,
            stats=stats,
        )
    )


def _dets(boxes):
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32))


def _crossing():
    """Two people walking towards each other; while they overlap the detector sees one wide blob
    (their union), as a motion detector does, for 8 frames."""
    scenes, detections = [], []
    for i in range(50):
        a = [20 + 7 * i, 60, 50 + 7 * i, 160]  # walking right
        b = [350 - 7 * i, 62, 380 - 7 * i, 162]  # walking left
        scenes.append([(a, RED_BLUE), (b, GREEN_YELLOW)])
        if abs(a[0] - b[0]) < 45:
            detections.append(_dets([[min(a[0], b[0]), 60, max(a[2], b[2]), 162]]))
        else:
            detections.append(_dets([a, b]))
    return scenes, detections


def test_two_people_crossing_stay_two_tracks_each_with_its_own_clothes():
    scenes, detections = _crossing()
    assert sum(len(d[0]) == 1 for d in detections) >= 6  # the blobs did merge
    tracks = _run(scenes, detections)
    assert len(tracks) == 2
    for track in tracks:
        xs = [(b[0] + b[2]) / 2 for _, _, b, _ in track.boxes]
        # each track walks one way from start to end: nobody was swapped at the crossing
        assert abs(xs[-1] - xs[0]) > 200
    directions = sorted(np.sign(t.boxes[-1][2][0] - t.boxes[0][2][0]) for t in tracks)
    assert directions == [-1, 1]


def _hidden_walk(clothes_after):
    """A person walking right, hidden for 1 s (10 frames), then someone seen near where they were
    heading (40 px further: too far for the tracker's overlap gate), wearing `clothes_after`."""
    scenes, detections = [], []
    for i in range(45):
        x = 20 + 6 * i + (40 if i >= 25 else 0)
        box = [x, 60, x + 30, 160]
        if 15 <= i < 25:
            scenes.append([])
            detections.append(_dets([]))
        else:
            scenes.append([(box, RED_BLUE if i < 15 else clothes_after)])
            detections.append(_dets([box]))
    return scenes, detections


@pytest.mark.parametrize("clothes, expected", [(RED_BLUE, 1), (GREEN_YELLOW, 2)])
def test_a_track_is_continued_only_by_someone_dressed_alike(clothes, expected):
    stats = PipelineStats()
    tracks = _run(*_hidden_walk(clothes), stats=stats)
    assert len(tracks) == expected
    assert stats.stitched == (1 if expected == 1 else 0)
    assert sorted(t.track_id for t in tracks) == list(range(1, expected + 1))


def test_a_long_gap_is_bridged_only_by_a_close_colour_match():
    rules = Continuation(frames=20, long_frames=40)
    steps = list(range(1, 11))
    boxes = [[20 + 6 * s, 60, 50 + 6 * s, 160] for s in steps]
    look = np.stack([np.eye(40)[3], np.eye(40)[7]]).astype(np.float32)
    later = [[20 + 6 * 40, 60, 50 + 6 * 40, 160]]  # 30 steps on, where the walker would be
    assert rules.best([(steps, boxes, look)], ([40], later, look)) == 0
    other = np.stack([np.eye(40)[20], np.eye(40)[30]]).astype(np.float32)
    assert rules.best([(steps, boxes, look)], ([40], later, other)) is None
    assert rules.best([(steps, boxes, look)], ([60], later, look)) is None  # 5 s: too long


def test_appearance_tells_clothes_apart_and_ignores_brightness():
    box = [100, 40, 140, 200]
    red = colour.describe(_draw([(box, RED_BLUE)]), box)
    green = colour.describe(_draw([(box, GREEN_YELLOW)]), box)
    brighter = colour.describe(np.clip(_draw([(box, RED_BLUE)]) * 1.15, 0, 255).astype(np.uint8), box)
    assert colour.distance(red, red) == pytest.approx(0.0, abs=1e-6)
    assert colour.distance(red, brighter) < 0.2
    assert colour.distance(red, green) > 0.8
    assert colour.describe(_draw([]), [0, 0, 3, 10]) is None  # too small to say
    assert colour.distance(None, red) is None


def test_a_person_split_into_two_blobs_stays_one_track():
    """Legs that match the floor: the detector sees the upper body and the feet as two boxes."""
    scenes, detections = [], []
    for i in range(40):
        x = 20 + 6 * i
        person = [x, 60, x + 30, 160]
        scenes.append([(person, RED_BLUE)])
        detections.append(_dets([[x, 60, x + 30, 125], [x + 2, 128, x + 28, 160]]))
    stats = PipelineStats()
    tracks = _run(scenes, detections, stats=stats)
    assert len(tracks) == 1 and stats.dropped_parts == 1
    assert tracks[0].boxes[0][2][3] == pytest.approx(125)  # the upper body is the one kept
    # with the rule off, the feet are a second visitor
    assert len(_run(scenes, detections, TrackerSettings(drop_parts=False))) == 2


def test_part_rules_keep_two_real_people():
    upper, feet = [10, 10, 40, 75], [12, 78, 38, 110]
    assert attached(feet, upper) and attached(upper, feet)
    assert not attached([60, 10, 90, 110], upper)  # side by side
    assert not attached([10, 120, 40, 220], upper)  # well below: another person
    # legs under a torso with a gap of a third of their height (a bag or a table edge at the waist)
    assert attached([12, 95, 38, 155], [10, 10, 40, 75])
    assert not attached([12, 105, 38, 155], [10, 10, 40, 75])  # 0.6 of their height below
    whole = {f: [10 + 5 * f, 10, 40 + 5 * f, 110] for f in range(20)}
    piece = {f: [12 + 5 * f, 70, 38 + 5 * f, 110] for f in range(20)}
    assert part_of(piece, whole) and not part_of(whole, piece)
    # one person passing behind another for a few frames is not a part of them
    passing = {f: [200 - 10 * f, 20, 230 - 10 * f, 100] for f in range(20)}
    assert not part_of(passing, whole)


def test_a_still_blob_is_not_a_visitor():
    """A lit wall or a screen that a motion detector sees: a box that never moves."""
    scenes = [[]] * 40
    still = [_dets([[200 + (i % 2), 40, 230, 140]]) for i in range(40)]
    stats = PipelineStats()
    assert _run(scenes, still, stats=stats) == [] and stats.dropped_still == 1
    assert len(_run(scenes, still, TrackerSettings(min_travel=0.0))) == 1
    assert travel([[0, 0, 10, 100], [50, 0, 60, 100]]) == pytest.approx(0.5)
    assert travel([[0, 0, 10, 100]]) == 0.0
