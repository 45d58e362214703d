"""Choosing a few good crops per track: large enough, sharp, not cut by the frame border, spread
over the track's life.

While a track runs, `TrackCrops.offer` keeps candidate crops (a bounded set, thinned evenly in time
when full); when it ends, `select` splits its life into `per_track` equal spans and takes the best
candidate of each span. Quality = sharpness (variance of the Laplacian of the crop at a fixed size,
so big and small crops compare) x detection confidence. A track that never showed a clean view
still gets its single largest crop, so every track reaches the gallery (footfall counts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class CropPolicy:
    per_track: int = 3
    min_height: int = 48  # pixels
    border_margin: int = 2  # a box this close to the frame edge is cut by it
    padding: float = 0.06  # context added around the box, share of its height
    max_candidates: int = 48  # per track, in memory
    jpeg_quality: int = 92


@dataclass
class Candidate:
    frame: int
    captured_at: datetime
    box: tuple[float, float, float, float]
    score: float
    clean: bool  # large enough and inside the frame
    sharpness: float
    pixels: np.ndarray  # (h, w, 3) uint8 BGR

    @property
    def quality(self) -> float:
        return self.sharpness * self.score


def sharpness(pixels: np.ndarray) -> float:
    import cv2

    grey = cv2.cvtColor(cv2.resize(pixels, (64, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def cut(frame: np.ndarray, box: np.ndarray, padding: float) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    pad = padding * (y1 - y0)
    c0, r0 = int(max(0, np.floor(x0 - pad))), int(max(0, np.floor(y0 - pad)))
    c1, r1 = int(min(width, np.ceil(x1 + pad))), int(min(height, np.ceil(y1 + pad)))
    return np.ascontiguousarray(frame[r0:r1, c0:c1])


@dataclass
class TrackCrops:
    policy: CropPolicy
    candidates: list[Candidate] = field(default_factory=list)
    seen: int = 0
    # the largest unclean view, kept when a clean one replaced it: if the track is cut before that
    # clean view (another person, video/identity_change.py), the first part still has a crop
    fallback: Candidate | None = None

    def offer(
        self, frame_index: int, captured_at: datetime, frame: np.ndarray, box: np.ndarray, score: float
    ):
        self.seen += 1
        height, width = frame.shape[:2]
        p = self.policy
        x0, y0, x1, y1 = (float(v) for v in box)
        inside = x0 >= p.border_margin and y0 >= p.border_margin
        inside &= x1 <= width - 1 - p.border_margin and y1 <= height - 1 - p.border_margin
        clean = inside and (y1 - y0) >= p.min_height
        if not clean and any(c.clean for c in self.candidates):
            return  # a clean view exists: unclean ones are no longer needed
        if not clean and self.candidates and (y1 - y0) <= max(c.box[3] - c.box[1] for c in self.candidates):
            return  # keep only the largest unclean view while there is no clean one
        pixels = cut(frame, box, p.padding)
        if pixels.shape[0] < 8 or pixels.shape[1] < 4:
            return
        if clean and self.candidates and not self.candidates[0].clean:
            self.fallback = self.candidates[0]
            self.candidates.clear()  # the first clean view replaces the fallback
        elif not clean:
            self.candidates.clear()
        self.candidates.append(
            Candidate(
                frame_index, captured_at, (x0, y0, x1, y1), float(score), clean, sharpness(pixels), pixels
            )
        )
        if len(self.candidates) > p.max_candidates:
            self.candidates = self.candidates[::2]  # thin evenly; spread over the life is kept

    def merge(self, other: TrackCrops) -> None:
        """Takes `other`'s candidates (a later part of the same track, video/stitching.py)."""
        clean = [c for c in self.candidates + other.candidates if c.clean]
        if clean:
            self.candidates = clean
        else:  # the largest unclean view
            everything = self.candidates + other.candidates
            self.candidates = [max(everything, key=lambda c: c.box[3] - c.box[1])] if everything else []
        self.seen += other.seen
        while len(self.candidates) > self.policy.max_candidates:
            self.candidates = self.candidates[::2]

    def split_off(self, frame: int) -> TrackCrops:
        """The candidates from `frame` on, moved to a new set (the track was cut there: another
        person, video/identity_change.py)."""
        rest = TrackCrops(self.policy, [c for c in self.candidates if c.frame >= frame])
        self.candidates = [c for c in self.candidates if c.frame < frame]
        if not self.candidates and self.fallback is not None and self.fallback.frame < frame:
            self.candidates = [self.fallback]
        self.fallback = None
        return rest

    def select(self) -> list[Candidate]:
        """Up to `per_track` crops in time order, the best of each span of the track's life."""
        if not self.candidates:
            return []
        if not self.candidates[0].clean:
            return self.candidates[:1]
        k = self.policy.per_track
        frames = np.array([c.frame for c in self.candidates], np.float64)
        lo, hi = frames.min(), frames.max() + 1
        edges = np.linspace(lo, hi, k + 1)
        chosen = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            span = [c for c, f in zip(self.candidates, frames, strict=True) if a <= f < b]
            if span:
                chosen.append(max(span, key=lambda c: c.quality))
        return chosen
