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
from dataclasses import dataclass

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


def alone(
    steps: Sequence[int], boxes: Sequence[Sequence[float]], span: int = 20, tolerance: float = 1.3
) -> int:
    """How many of a lost track's boxes to predict from: up to its last box of the person's own height
    (within `tolerance` of the median of its last `span` boxes), looking back at most `span // 2`.

    A track is often lost just after its boxes stopped being the person alone: a blob merged with
    someone in front (much taller), or the legs hidden by a counter (much shorter, the foot point
    jumping up). Predicting from such a last box misses the person where they come out again
    (measured on `store-video`, docs/video.md); the box before it still shows where they were heading."""
    n = len(boxes)
    if n < 3:
        return n
    heights = np.array([b[3] - b[1] for b in boxes[-span:]], np.float64)
    typical = float(np.median(heights))
    if typical <= 0:
        return n
    k = n
    while k > max(1, n - span // 2):
        height = boxes[k - 1][3] - boxes[k - 1][1]
        if typical / tolerance <= height <= typical * tolerance:
            return k
        k -= 1
    return n  # no box of its own height lately: keep the track as it is


Track = tuple[Sequence[int], Sequence[Sequence[float]], "np.ndarray | None"]  # steps, boxes, colour histogram


@dataclass(frozen=True)
class Continuation:
    """Which lost track a new track continues, judged once the new track has a few boxes.

    Two rules, both on where the lost track was heading (`continuation_cost`) and on clothing
    colour (video/appearance.py, Bhattacharyya distance of the tracks' mean histograms):
    - a short gap (up to `frames` processed frames): within `reach` person heights of the
      prediction, colours not clearly different (`colour`) - the colour veto keeps two people who
      crossed from being swapped or joined;
    - a longer gap (up to `long_frames`: two people walking together as one blob, a long
      occlusion): within `long_reach` person heights (growing slowly with the gap) and colours
      closely alike (`long_colour`).
    Each of the new track's first boxes is tried (the first is often a half-hidden person coming
    out of a merged blob); the nearest match, position plus colour distance, wins.
    """

    reach: float = 0.4
    frames: int = 20
    colour: float = 0.6
    long_reach: float = 1.0
    long_frames: int = 40
    long_colour: float = 0.4
    long_growth: float = 0.025
    alone: bool = True  # predict from the lost track's last box of the person alone (`alone`)

    def cost(self, lost: Track, new: Track) -> float | None:
        from video.appearance import distance

        steps, boxes, look = lost
        new_steps, new_boxes, new_look = new
        if not steps or not new_steps:
            return None
        if self.alone:
            k = alone(steps, boxes)
            steps, boxes = steps[:k], boxes[:k]
        gap = new_steps[0] - steps[-1]
        if not 0 < gap <= self.long_frames:
            return None
        unlike = distance(look, new_look)
        tries = []
        if gap <= self.frames and (unlike is None or unlike <= self.colour):
            tries.append((self.reach, 0.1))
        if unlike is not None and unlike <= self.long_colour:
            tries.append((self.long_reach, self.long_growth))
        best = None
        for reach, growth in tries:
            for step, box in zip(new_steps, new_boxes, strict=True):
                cost = continuation_cost(steps[-1], steps, boxes, step, box, reach=reach, growth=growth)
                if cost is not None and (best is None or cost < best):
                    best = cost
            if best is not None:
                break
        return None if best is None else best + (unlike or 0.0)

    def best(self, lost: Sequence[Track], new: Track) -> int | None:
        """Index in `lost` of the track `new` continues, or None (a new person)."""
        costs = [(c, i) for i, track in enumerate(lost) if (c := self.cost(track, new)) is not None]
        return min(costs)[1] if costs else None
