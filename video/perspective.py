"""How tall a person is at each row of a fixed camera's picture, learned from the camera's own tracks.

On a flat floor seen by a fixed camera (pinhole, no roll), a standing person's height in pixels is
a linear function of the image row of their feet: zero at the horizon, growing towards the bottom
of the picture. So after a few people have walked past, the camera itself says how tall a person
is at any foot row - no calibration, no model, no weights. Used here to tell what is too small to
be a person where it stands: a motion detector also sees shadows, a head over a shelf, a swinging
bag or a pair of legs as blobs, and at their foot row those are a fraction of a person's height
(measured on `store-video`: the moving blobs that were no person at all had a median of 0.29-0.45
of the expected height; real people 0.8-1.1, people whose legs a counter hides 0.5-0.65).

The line is fitted with Siegel's repeated medians (scipy.stats.siegelslopes: up to half the points
may be wrong) to boxes of the tracks counted so far, a few per track, leaving out boxes cut by the
frame border. Outliers are expected in both directions - merged blobs (too tall), people behind a
counter and pieces of people (too short) - which is why a robust fit and not least squares. The
model answers only once it has seen `min_tracks` tracks and the fit is plausible (heights positive
over the picture, a spread of rows to fit on, residuals small); until then nothing is judged by it.
Limits: a floor that is not flat (stairs, ramps) or a camera looking straight down breaks the line;
then the fit's residuals are large and the model stays silent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

Box = Sequence[float]


class Perspective:
    def __init__(
        self,
        width: int,
        height: int,
        *,
        min_tracks: int = 8,
        per_track: int = 8,
        max_samples: int = 400,
        max_spread: float = 0.35,
        border: float = 2.0,
    ) -> None:
        self.width, self.height = int(width), int(height)
        self.min_tracks = min_tracks
        self.per_track = per_track
        self.max_spread = max_spread  # median relative residual above which the fit is not trusted
        self.border = border
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (foot row, height)
        self.tracks = 0
        self._fit: tuple[float, float] | None = None
        self._stale = False

    def _inside(self, box: Box) -> bool:
        x0, y0, x1, y1 = box
        b = self.border
        return x0 >= b and y0 >= b and x1 <= self.width - 1 - b and y1 <= self.height - 1 - b

    def add_track(self, boxes: Sequence[Box]) -> None:
        """Learns from a counted track's boxes (a few, spread over its life; border-cut ones skipped)."""
        inside = [b for b in boxes if self._inside(b) and b[3] - b[1] > 0]
        if not inside:
            return
        picks = np.linspace(0, len(inside) - 1, min(self.per_track, len(inside))).round().astype(int)
        for i in sorted(set(picks.tolist())):
            box = inside[i]
            self.samples.append((float(box[3]), float(box[3] - box[1])))
        self.tracks += 1
        self._stale = True

    def fit(self) -> tuple[float, float] | None:
        """(slope, intercept) of height = slope * foot row + intercept, or None while not known."""
        if not self._stale:
            return self._fit
        self._stale = False
        self._fit = None
        if self.tracks < self.min_tracks or len(self.samples) < 2 * self.min_tracks:
            return None
        from scipy.stats import siegelslopes

        data = np.asarray(self.samples, np.float64)
        rows, heights = data[:, 0], data[:, 1]
        if np.ptp(rows) < 0.1 * self.height:  # all at one depth: nothing to fit a line to
            return None
        slope, intercept = siegelslopes(heights, rows)
        expected = slope * rows + intercept
        if slope < 0 or np.any(expected <= 0):
            return None
        spread = float(np.median(np.abs(heights - expected) / expected))
        if spread > self.max_spread:
            return None
        self._fit = (float(slope), float(intercept))
        return self._fit

    def expected_height(self, foot_row: float) -> float | None:
        """A person's height in pixels with feet at `foot_row`, or None while not known."""
        fit = self.fit()
        if fit is None:
            return None
        height = fit[0] * foot_row + fit[1]
        return height if height > 0 else None

    def height_ratio(self, boxes: Sequence[Box]) -> float | None:
        """Median over `boxes` of box height / expected height at its foot row (None if unknown)."""
        ratios = []
        for box in boxes:
            expected = self.expected_height(box[3])
            if expected is not None:
                ratios.append((box[3] - box[1]) / expected)
        return float(np.median(ratios)) if ratios else None
