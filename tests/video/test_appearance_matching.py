"""Clothing colour in the frame-to-frame matching (video/appearance_matching.py): where boxes alone
hand a track to the wrong person, a colour gate keeps each person on their own track."""

from __future__ import annotations

import numpy as np
import pytest

from video.detectors.base import Detections
from video.tracking import Tracker, TrackerSettings

BINS = 40
RED_BLUE = np.stack([np.eye(BINS)[3], np.eye(BINS)[7]]).astype(np.float32)
GREEN_YELLOW = np.stack([np.eye(BINS)[20], np.eye(BINS)[30]]).astype(np.float32)
GATE = TrackerSettings(match_colour=0.5)


def _meet_and_turn(frames=30, meet=12, stand=4):
    """A (red/blue) walks right, B (green/yellow) walks left; they meet, stand face to face, their
    boxes overlapping, and each walks back the way they came."""
    out = []
    for i in range(frames):
        k = min(i, meet) - max(0, i - meet - stand)
        a, b = 100 + 5 * k, 190 - 5 * k
        out.append(([[a, 60, a + 30, 160], [b, 62, b + 30, 162]], [RED_BLUE, GREEN_YELLOW]))
    return out


def _pillar(frames=30, hidden=(10, 14), lag=12):
    """A (red/blue) walks right 5 px a step and is hidden behind a pillar for 4 steps; A comes out
    `lag` px behind where they were heading (they slowed down), while B (green/yellow) comes out
    from behind the pillar where A was heading, walking on right."""
    out = []
    for i in range(frames):
        a = 100 + 5 * i - (lag if i >= hidden[1] else 0)
        if hidden[0] <= i < hidden[1]:
            out.append(([], []))
        elif i < hidden[0]:
            out.append(([[a, 60, a + 30, 160]], [RED_BLUE]))
        else:
            b = 106 + 5 * i
            out.append(([[a, 60, a + 30, 160], [b, 60, b + 30, 160]], [RED_BLUE, GREEN_YELLOW]))
    return out


def _ids(frames, settings):
    """Per frame, the track id given to each person (by their index in the frame), None when none."""
    tracker = Tracker(10, settings)
    ids = []
    for boxes, looks in frames:
        found = Detections(np.asarray(boxes, np.float32), np.full(len(boxes), 0.9, np.float32))
        given = {index: tid for tid, index, _ in tracker.match(found, looks)}
        ids.append([given.get(i) for i in range(len(boxes))])
    return ids


def _person(ids, index):
    return {frame[index] for frame in ids if len(frame) > index and frame[index] is not None}


def test_two_people_crossing_with_different_clothes_keep_their_ids():
    frames = _meet_and_turn()
    # boxes alone: each track goes on the way it was heading, with the other person
    swapped = _ids(frames, TrackerSettings())
    assert _person(swapped, 0) == {1, 2} and _person(swapped, 1) == {1, 2}
    kept = _ids(frames, GATE)
    assert _person(kept, 0) == {1} and _person(kept, 1) == {2}


def test_a_person_passing_behind_a_pillar_keeps_their_id_when_someone_else_comes_out_ahead():
    frames = _pillar()
    taken = _ids(frames, TrackerSettings())
    assert _person(taken, 0) == {1, 2} and _person(taken, 1) == {1}  # B took A's track
    kept = _ids(frames, GATE)
    assert _person(kept, 0) == {1} and _person(kept, 1) == {2}


def test_people_dressed_alike_are_matched_on_boxes_as_before():
    frames = [(boxes, [RED_BLUE] * len(boxes)) for boxes, _ in _meet_and_turn()]
    assert _ids(frames, GATE) == _ids(frames, TrackerSettings())


def test_unknown_colours_leave_the_box_matching_alone():
    frames = [(boxes, [None] * len(boxes)) for boxes, _ in _pillar()]
    assert _ids(frames, GATE) == _ids(frames, TrackerSettings())


def test_colour_fusion_lets_a_person_who_moved_far_keep_their_track():
    """A walks right 4 px a step, then jumps 24 px (a dropped frame, a box that grew to the side):
    their boxes overlap too little for the tracker's gate, but the colours match."""
    frames = []
    for i in range(20):
        x = 100 + 4 * i + (24 if i >= 10 else 0)
        frames.append(([[x, 60, x + 30, 160]], [RED_BLUE]))
    assert _person(_ids(frames, TrackerSettings(match_buffer=0.0)), 0) == {1, 2}
    fused = TrackerSettings(match_buffer=0.0, match_colour=0.5, match_colour_fuse=0.3)
    assert _person(_ids(frames, fused), 0) == {1}


def test_the_tracker_module_is_put_back_after_each_frame():
    from supervision.tracker.byte_tracker import core, matching

    frames = _meet_and_turn()
    _ids(frames[:3], GATE)
    assert core.matching is matching
    tracker = Tracker(10, GATE)
    with pytest.raises(ValueError):
        tracker.match(Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32)), [RED_BLUE, RED_BLUE])
    assert core.matching is matching


def test_colour_matching_options_are_checked():
    found = Detections(np.zeros((1, 4), np.float32) + [0, 0, 30, 100], np.ones(1, np.float32))
    with pytest.raises(ValueError, match="descriptors"):
        Tracker(10, GATE).match(found, [])
    with pytest.raises(ValueError, match="colour gate"):
        Tracker(10, TrackerSettings(match_colour=-0.1))
