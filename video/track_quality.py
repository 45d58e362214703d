"""Which finished tracks are visitors: rules a track must pass to be counted (and sent).

A track is a visitor's pass when it
- was confirmed by enough processed frames (`min_frames`; a blip of noise is not a person);
- moved: its foot point (bottom-centre of its box) travelled at least `min_travel` of the
  person's height over its life. People pass through a camera's picture; what stays put is a lit
  wall, a screen, a swaying plant, a door leaf or a shadow that a motion detector saw (a person who
  stands still for a while still walked in or out: only a track that never moved is dropped, and
  only when it is also short, `still_seconds`);
- is not a *part* of another track: a person whose legs match the floor, or who is cut by a thin
  occluder, can show as two boxes one above the other (or one inside the other); the track with
  the smaller boxes that, for most of its frames, sits on top of, under or inside another track's
  box is that person's part, not a second person. Two real people one behind the other overlap like that only
  while one passes the other, not for most of a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Box = Sequence[float]


def travel(boxes: Sequence[Box]) -> float:
    """How far the foot point got from where it started, at most, in person heights (median)."""
    if len(boxes) < 2:
        return 0.0
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    feet = np.stack([(b[:, 0] + b[:, 2]) / 2.0, b[:, 3]], axis=1)
    height = float(np.median(b[:, 3] - b[:, 1]))
    if height <= 0:
        return 0.0
    return float(np.linalg.norm(feet - feet[0], axis=1).max()) / height


def attached(part: Box, whole: Box) -> bool:
    """`part` is a piece of the person in `whole`: they overlap across most of the narrower width
    and `part` lies inside `whole` or right above / under it (gap or overlap up to 0.35 of the
    smaller height: a bag, a belt or a table edge at the waist leaves a gap; measured on
    `store-video`, legs seen up to 0.33 of their height under the torso's box)."""
    px0, py0, px1, py1 = part
    wx0, wy0, wx1, wy1 = whole
    x_overlap = min(px1, wx1) - max(px0, wx0)
    if x_overlap < 0.5 * min(px1 - px0, wx1 - wx0):
        return False
    small = min(py1 - py0, wy1 - wy0)
    inter_y = min(py1, wy1) - max(py0, wy0)
    if inter_y >= 0.8 * (py1 - py0):  # inside (vertically)
        return True
    stacked_below = abs(py0 - wy1) <= 0.35 * small
    stacked_above = abs(wy0 - py1) <= 0.35 * small
    return stacked_below or stacked_above


def _median_height(boxes: Mapping[int, Box]) -> float:
    return float(np.median([b[3] - b[1] for b in boxes.values()])) if boxes else 0.0


def part_of(track: Mapping[int, Box], other: Mapping[int, Box], share: float = 0.6) -> bool:
    """Whether `track` (frame -> box) is a part of `other`: for at least `share` of its frames it
    is attached to `other`'s box, and its boxes are the smaller ones (the part, not the whole)."""
    if not track or not other or _median_height(track) >= _median_height(other):
        return False
    hits = sum(1 for frame, box in track.items() if frame in other and attached(box, other[frame]))
    return hits >= share * len(track)
