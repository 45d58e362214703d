"""A cheap appearance descriptor of a person box: colour histograms of its upper and lower half.

Position alone cannot tell two people apart once their paths meet: when two walkers cross, a
motion detector sees one blob, the tracker keeps one of them and the other comes back as a new
track a second later, next to the first. Clothing colour tells them apart on any camera at no
model cost: a hue-saturation histogram (hue is what stays put when the light swings; saturation
separates grey from colour) of the top half (shirt, coat) and of the bottom half (trousers, skirt),
compared with the Bhattacharyya distance (0 = same, 1 = nothing in common). Pixels too dark or
too pale to have a reliable hue fall into one extra "grey" bin by their brightness, so a person in
black and a person in white still differ.

The box of a motion blob includes some background at its sides: the inner 60% of its width is
used. A track's appearance is the running mean of its boxes' histograms (`Appearance.update`), so
one bad box (a merged blob, a partial view) moves it little.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HUE_BINS = 12
SAT_BINS = 3
GREY_BINS = 4  # low-saturation or dark pixels, by brightness
MIN_SATURATION = 40
MIN_VALUE = 40


def _half_histogram(hsv: np.ndarray) -> np.ndarray:
    h = hsv[..., 0].reshape(-1).astype(np.int32)
    s = hsv[..., 1].reshape(-1).astype(np.int32)
    v = hsv[..., 2].reshape(-1).astype(np.int32)
    colour = (s >= MIN_SATURATION) & (v >= MIN_VALUE)
    bins = np.where(
        colour,
        (h * HUE_BINS // 180) * SAT_BINS
        + np.minimum((s - MIN_SATURATION) * SAT_BINS // (256 - MIN_SATURATION), SAT_BINS - 1),
        HUE_BINS * SAT_BINS + np.minimum(v * GREY_BINS // 256, GREY_BINS - 1),
    )
    hist = np.bincount(bins, minlength=HUE_BINS * SAT_BINS + GREY_BINS).astype(np.float32)
    total = hist.sum()
    return hist / total if total > 0 else hist


def describe(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """(2, bins) histograms of the box's upper and lower half in a BGR frame; None when the box
    is too small to say anything (under 8 x 16 px inside the frame)."""
    import cv2

    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    inset = 0.2 * (x1 - x0)
    x0, x1 = int(max(0, round(x0 + inset))), int(min(width, round(x1 - inset)))
    y0, y1 = int(max(0, round(y0))), int(min(height, round(y1)))
    if x1 - x0 < 4 or y1 - y0 < 16:
        return None
    hsv = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
    middle = (y1 - y0) // 2
    return np.stack([_half_histogram(hsv[:middle]), _half_histogram(hsv[middle:])])


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Bhattacharyya distance in [0, 1], the mean of the two halves; None when either is unknown."""
    if a is None or b is None:
        return None
    coefficient = np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None)).sum(axis=1)
    return float(np.mean(np.sqrt(np.clip(1.0 - coefficient, 0.0, 1.0))))


class Appearance:
    """A track's appearance: the running mean of its boxes' histograms."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.histogram: np.ndarray | None = None
        self.count = 0

    def update(self, descriptor: np.ndarray | None) -> None:
        if descriptor is None:
            return
        self.count += 1
        if self.histogram is None:
            self.histogram = descriptor.copy()
        else:
            rate = max(self.weight, 1.0 / self.count)
            self.histogram = (1.0 - rate) * self.histogram + rate * descriptor

    def merge(self, other: Appearance) -> None:
        """Both tracks' boxes, weighted by how many each had."""
        if other.histogram is None:
            return
        if self.histogram is None:
            self.histogram, self.count = other.histogram.copy(), other.count
            return
        share = other.count / (self.count + other.count)
        self.histogram = (1.0 - share) * self.histogram + share * other.histogram
        self.count += other.count
