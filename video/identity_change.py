"""Where a track stops following one person and follows another: a lasting change of clothes.

A tracker that associates boxes by position alone swaps people where their paths meet: a motion
detector sees two walkers as one blob while they overlap, and when they part the track goes on
with whichever box lies nearer its prediction - often the other person. Stitching (video/stitching.py)
can do the same across a gap when two people look alike to it. The track then holds two people one
after the other, and the count loses one of them (measured on `store-video`: most of the passes
missed by the motion detector were such chains, not people never seen).

A track's clothes (video/appearance.py: colour histograms of the box's upper and lower half) stay
put while it follows one person; a merged blob, a turn or a partial view move them for a frame or
two. So a track is cut where the mean histogram of its last `window` boxes is far (Bhattacharyya
distance above `threshold`) from the mean of the `history` boxes before them - a change that has
lasted `window` boxes, against a reference long enough to be the person. The cut goes where the
two sides differ most among the last boxes, so a half-mixed window does not put it early.
Holds on real footage as long as clothes differ: people dressed alike (uniforms, dark winter
coats) are not told apart, and a strongly coloured light that sweeps over a person can cut a
track (the threshold is high for that reason).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from video.appearance import distance


def _mean(descriptors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    known = [d for d in descriptors if d is not None]
    if len(known) < max(2, len(descriptors) // 2):
        return None
    return np.mean(known, axis=0)


def split_distance(descriptors: Sequence[np.ndarray | None], at: int, history: int, window: int) -> float:
    """Colour distance between the `history` boxes before index `at` and the `window` from it (0 when
    either side has too few known descriptors)."""
    before = _mean(descriptors[max(0, at - history) : at])
    after = _mean(descriptors[at : at + window])
    found = distance(before, after)
    return 0.0 if found is None else found


def change_point(
    descriptors: Sequence[np.ndarray | None], *, history: int, window: int, threshold: float
) -> int | None:
    """Index of the first box of another person at the end of `descriptors` (one per box, oldest
    first, None for a box too small to describe), or None while it is one person. Needs `history`
    boxes before the last `window`."""
    n = len(descriptors)
    if threshold <= 0 or window < 2 or history < 2 or n < history + window:
        return None
    if split_distance(descriptors, n - window, history, window) <= threshold:
        return None
    # the change may have started a little before the window: pick the clearest cut, leaving at
    # least 2 boxes after it
    candidates = range(max(history, n - 2 * window), n - 1)
    scores = [split_distance(descriptors, k, history, window) for k in candidates]
    return candidates[int(np.argmax(scores))]
