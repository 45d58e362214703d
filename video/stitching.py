"""Joining a track the tracker lost to the new track it then started for the same person.

ByteTrack re-finds a lost person only when the Kalman prediction still overlaps the new box (IoU
gate): a person who walks fast, turns, or is hidden for a second (a pillar, another person, a
missed detection) comes back as a new track, and a visitor counted twice. Here a new track may
continue a track that was lost within the last `window` processed frames when its first box lies
where that track was heading: the bottom-centre of the new box within `reach` x the person's
height of the lost track's last position moved on at its recent velocity, and the heights within
a factor `size_ratio`. Nearest match wins; a track still being updated is never a candidate (two
tracks at once are two people).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def foot_point(box: Sequence[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, box[3]], np.float64)


def velocity(steps: Sequence[int], boxes: Sequence[Sequence[float]], span: int) -> np.ndarray:
    """Pixels per processed frame of the bottom-centre over the last `span` steps (0 when too short)."""
    if len(steps) < 2:
        return np.zeros(2)
    first = max(0, len(steps) - span)
    dt = steps[-1] - steps[first]
    if dt <= 0:
        return np.zeros(2)
    return (foot_point(boxes[-1]) - foot_point(boxes[first])) / dt


def continuation_cost(
    last_step: int,
    steps: Sequence[int],
    boxes: Sequence[Sequence[float]],
    new_step: int,
    new_box: Sequence[float],
    *,
    reach: float = 0.4,
    size_ratio: float = 1.5,
    span: int = 5,
    growth: float = 0.1,
) -> float | None:
    """How far (in person heights) `new_box` at `new_step` is from where the lost track would be;
    None when it cannot be the same person."""
    gap = new_step - last_step
    if gap <= 0:
        return None
    last = boxes[-1]
    h_old, h_new = last[3] - last[1], new_box[3] - new_box[1]
    if min(h_old, h_new) <= 0 or max(h_old, h_new) / min(h_old, h_new) > size_ratio:
        return None
    # the predicted point moves on at the track's speed; the longer the gap, the wider the reach
    predicted = foot_point(last) + velocity(steps, boxes, span) * gap
    height = max(h_old, h_new)
    distance = float(np.linalg.norm(foot_point(new_box) - predicted)) / height
    allowed = reach * (1.0 + growth * gap)
    return distance if distance <= allowed else None
