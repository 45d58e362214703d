"""Cutting a track where it goes on with another person (video/identity_change.py), on synthetic
descriptors and on rendered frames with replayed detections."""

from __future__ import annotations

import numpy as np
import pytest

from tests.video.test_track_rules import GREEN_YELLOW, RED_BLUE, _dets, _run
from video.identity_change import change_point, split_distance
from video.pipeline import PipelineStats
from video.tracking import TrackerSettings

BINS = 40


def _look(top: int, bottom: int) -> np.ndarray:
    return np.stack([np.eye(BINS)[top], np.eye(BINS)[bottom]]).astype(np.float32)


A, B = _look(3, 7), _look(20, 30)
MIXED = (A + B) / 2  # a merged blob of both


def test_a_lasting_change_of_clothes_is_found_where_it_starts():
    descriptors = [A] * 20 + [B] * 10
    assert split_distance(descriptors, 20, 10, 10) == pytest.approx(1.0)
    assert change_point(descriptors, history=10, window=10, threshold=0.5) == 20
    # a merged blob or two between them: the cut is at the first box of the other person's clothes
    # or on the blob, never inside the first person
    descriptors = [A] * 20 + [MIXED] * 2 + [B] * 10
    assert change_point(descriptors, history=10, window=10, threshold=0.5) in (20, 21, 22)


def test_one_person_is_not_cut():
    # a merged blob for a few frames, a partial view, unknown boxes: the clothes come back
    descriptors = [A] * 20 + [MIXED] * 4 + [A] * 6 + [None] * 2 + [A] * 10
    for n in range(len(descriptors) + 1):
        assert change_point(descriptors[:n], history=10, window=10, threshold=0.5) is None
    # too little seen before to judge
    assert change_point([A] * 9 + [B] * 10, history=10, window=10, threshold=0.5) is None
    assert change_point([A] * 20 + [B] * 10, history=10, window=10, threshold=0.0) is None  # off


def _handover(length=50, at=25):
    """A person walking right; from frame `at` on the box goes on smoothly but shows someone else
    (what a tracker does when two walkers merge into one blob and it keeps the wrong one)."""
    scenes, detections = [], []
    for i in range(length):
        box = [20 + 6 * i, 60, 50 + 6 * i, 160]
        scenes.append([(box, RED_BLUE if i < at else GREEN_YELLOW)])
        detections.append(_dets([box]))
    return scenes, detections


def test_a_track_that_goes_on_with_another_person_is_two_visitors():
    stats = PipelineStats()
    tracks = _run(*_handover(), stats=stats)
    assert len(tracks) == 2 and stats.cut == 1
    first, second = sorted(tracks, key=lambda t: t.boxes[0][0])
    assert first.boxes[-1][0] == 24 and second.boxes[0][0] == 25  # cut where the clothes changed
    assert len(first.boxes) + len(second.boxes) == 50  # no box lost
    # each track's crops show only its own person
    assert all(c.frame < 25 for c in first.crops) and all(c.frame >= 25 for c in second.crops)
    assert first.crops and second.crops
    # with the rule off it is one visitor
    assert len(_run(*_handover(), TrackerSettings(cut_colour=0.0))) == 1


def test_one_person_walking_stays_one_track():
    scenes, detections = _handover(at=50)  # nobody else
    stats = PipelineStats()
    assert len(_run(scenes, detections, stats=stats)) == 1 and stats.cut == 0


def test_both_parts_of_a_cut_track_keep_a_crop_when_the_first_was_never_seen_cleanly():
    """The first person walks along the top edge of the picture (every box cut by the border: no
    clean crop); the person the track goes on with is seen cleanly."""
    scenes, detections = [], []
    for i in range(50):
        top = 0 if i < 25 else 40
        box = [20 + 6 * i, top, 50 + 6 * i, top + 100]
        scenes.append([(box, RED_BLUE if i < 25 else GREEN_YELLOW)])
        detections.append(_dets([box]))
    first, second = sorted(_run(scenes, detections), key=lambda t: t.boxes[0][0])
    assert len(first.crops) == 1 and first.crops[0].frame < 25 and not first.crops[0].clean
    assert second.crops and all(c.frame >= 25 and c.clean for c in second.crops)
