"""Keeping one person one track where boxes mislead: a lost track predicted from its last box of
the person alone, a track started while its person's old track followed someone else (rejoined
after the cut), and narrow people walking sideways (matched on buffered boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.video.test_track_rules import GREEN_YELLOW, RED_BLUE, _dets, _run
from video.pipeline import PipelineStats
from video.stitching import Continuation, alone
from video.tracking import TrackerSettings, buffered

LOOK = np.stack([np.eye(40)[3], np.eye(40)[7]]).astype(np.float32)


def _walk_then(last: str):
    """A person 100 px tall walking right 10 px a step; in the last 3 boxes the legs are hidden by a
    counter ("legs") or the box has merged with a taller person in front ("merged")."""
    steps = list(range(1, 13))
    boxes = [[10 + 10 * s, 100, 40 + 10 * s, 200] for s in steps]
    for b in boxes[-3:]:
        if last == "legs":
            b[3] = 140  # the foot point jumps 60 px up
        else:
            b[1], b[3] = 40, 300
    return steps, boxes


@pytest.mark.parametrize("last", ["legs", "merged"])
def test_a_lost_track_is_predicted_from_its_last_box_of_the_person_alone(last):
    steps, boxes = _walk_then(last)
    assert alone(steps, boxes) == 9  # the 3 misleading boxes are left out
    assert alone(steps[:9], boxes[:9]) == 9  # a track of the person alone is kept whole
    new = ([16], [[10 + 10 * 16, 100, 40 + 10 * 16, 200]], LOOK)  # seen again where it was heading
    assert Continuation().cost((steps, boxes, LOOK), new) is not None
    assert Continuation(alone=False).cost((steps, boxes, LOOK), new) is None


def _swap(length=60, at=25, merged=3, stand=15):
    """A (red/blue) walks right and stops at frame `at`; B (green/yellow) comes out of A's blob and
    walks on along A's path at A's speed, so the tracker keeps B on A's track; A stands for `stand`
    frames, then walks back left: a new track that starts while the old one still seems to follow A."""
    scenes, detections = [], []
    for i in range(length):
        stop = 20 + 6 * at
        a_x = 20 + 6 * i if i < at else (stop if i < at + stand else stop - 6 * (i - at - stand))
        a = [a_x, 60, a_x + 30, 160]
        b_x = 20 + 6 * i
        b = [b_x, 62, b_x + 30, 162]
        if i < at:
            scenes.append([(a, RED_BLUE)])
            detections.append(_dets([a]))
        elif i < at + merged:  # one blob of both
            scenes.append([(a, RED_BLUE), (b, GREEN_YELLOW)])
            detections.append(_dets([[min(a[0], b[0]), 60, max(a[2], b[2]), 162]]))
        else:
            scenes.append([(a, RED_BLUE), (b, GREEN_YELLOW)])
            detections.append(_dets([a, b]))
    return scenes, detections


@pytest.mark.parametrize("rejoin, expected", [(True, 2), (False, 3)])
def test_a_track_started_while_its_person_was_followed_by_someone_else_rejoins_after_the_cut(
    rejoin, expected
):
    stats = PipelineStats()
    # the change noticed late (over 2 s of boxes, a higher threshold: as for clothes less unlike): A's new
    # track is judged new before the cut
    tracks = _run(
        *_swap(), TrackerSettings(rejoin=rejoin, cut_window_seconds=2.0, cut_colour=0.6), stats=stats
    )
    assert stats.cut == 1 and stats.rejoined == (1 if rejoin else 0)
    assert len(tracks) == expected
    if rejoin:  # A's track: its walk right and back; B's: from the blob on
        a, b = sorted(tracks, key=lambda t: t.boxes[0][0])
        assert a.boxes[0][0] == 0 and a.boxes[-1][0] == 59 and b.boxes[0][0] >= 25
        # after the blob, A's track holds A's boxes (standing, then walking left), not B's
        assert all(box[0] <= 20 + 6 * 25 for f, _, box, _ in a.boxes if f >= 28)
        assert all(box[0] > 20 + 6 * 25 for f, _, box, _ in b.boxes if f >= 28)


def _sideways(buffer: float, step=12, width=20):
    """A narrow person (20 x 100 px) walking sideways 12 px per processed frame: consecutive
    boxes overlap by IoU 0.25, under ByteTrack's gate for confirming a new track (0.3)."""
    scenes, detections = [[]] * 3, [_dets([])] * 3  # (a track in the first frame is confirmed at once)
    for i in range(28):
        box = [20 + step * i, 60, 20 + step * i + width, 160]
        scenes.append([(box, RED_BLUE)])
        detections.append(_dets([box]))
    return _run(scenes, detections, TrackerSettings(match_buffer=buffer)), detections


def test_a_narrow_person_walking_sideways_is_one_track_on_buffered_boxes():
    tracks, detections = _sideways(0.15)
    assert len(tracks) == 1
    # the track holds the boxes as detected, not the buffered ones the tracker matched
    for frame, _, box, _ in tracks[0].boxes:
        np.testing.assert_array_equal(box, detections[frame][0][0])
    assert len(tracks[0].boxes) >= 26
    unbuffered, _ = _sideways(0.0)
    assert len(unbuffered) != 1 or len(unbuffered[0].boxes) < 20


def test_buffered_boxes_grow_by_their_own_size():
    boxes = np.array([[10, 20, 30, 120]], np.float32)
    np.testing.assert_allclose(buffered(boxes, 0.25), [[5, -5, 35, 145]])
    assert buffered(boxes, 0.0) is boxes
