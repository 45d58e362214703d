"""People as moving blobs on a fixed camera: background subtraction (OpenCV's MOG2), then blobs
shaped like people, split where several people merged into one. No weights, cheap on a CPU.

Only for fixed cameras (a panning or shaking camera moves the whole picture). What it sees is
*motion*, not people: a cart, a door or a swaying plant of a person's size is a detection too, and a
person who stands still for longer than `history_seconds` fades into the background. Hence the
tracker's minimum track length and, where that matters, `--detector hog` or a trained detector.

Steps per frame:
1. light compensation: each colour channel is scaled by the median ratio background model /
   frame over pixels neither dark nor clipped (clouds, lights switched on);
2. MOG2 foreground (shadows, marked separately by MOG2, are not foreground), opened to drop
   noise and closed with a tall kernel to join a person's parts;
3. connected blobs at least `min_person_height` / 2 tall (a person behind a counter shows the upper
   half) and at most 3x as wide as tall (a wider band is a light change); parts of one person
   cut by a thin occluder (pillar) are joined;
4. a blob wider than one person (width > `max_width_ratio` x height) is split at the valleys of its
   column profile, or, if there are none (people overlapping), into equal parts one person wide.

The detector keeps state (the background model): `start_source(fps)` resets it for each source.

Frames larger than `max_side` on their long side (4K and 12 MP cameras) are shrunk to it first (people
there are tall enough to be found at that size), and the boxes scaled back: at 4000x3000 the full-size
steps took ~2 GB of memory and 1.4 s a frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from video.detectors.base import Detections, clip_boxes, valid

PERSON_WIDTH = 0.42  # a walking person's box width / height (arms and stride included)
# a channel at or above this is (near) clipped by the camera: noise and compression keep clipped
# areas a few levels under 255
CLIP_LEVEL = 240
CLIP_MARGIN = 12.0


class MotionDetector:
    name = "motion"
    batch_size = 1

    def __init__(
        self,
        min_person_height: float = 60.0,
        history_seconds: float = 30.0,
        var_threshold: float = 25.0,
        max_width_ratio: float = 0.75,
        fps: float = 10.0,
        max_side: int = 1280,
    ) -> None:
        from video.sources import _cv2

        if min_person_height < 8:
            raise ValueError(f"min_person_height must be >= 8 px, got {min_person_height}")
        if history_seconds <= 0:
            raise ValueError(f"history_seconds must be > 0, got {history_seconds}")
        self.cv2 = _cv2()
        self.min_person_height = float(min_person_height)
        self.history_seconds = float(history_seconds)
        self.var_threshold = float(var_threshold)
        self.max_width_ratio = float(max_width_ratio)
        if max_side < 64:
            raise ValueError(f"max_side must be >= 64 px, got {max_side}")
        self.max_side = int(max_side)
        self.work_min_height = self.min_person_height  # in the pixels of the frames worked on
        self.start_source(fps)

    def start_source(self, fps: float) -> None:
        """Forget the background: a new source (or camera) starts. `fps` = processed frames/s."""
        history = max(10, int(round(self.history_seconds * max(fps, 0.1))))
        self.subtractor = self.cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=self.var_threshold, detectShadows=True
        )
        # a floor under the per-pixel variance: smooth, clean areas otherwise flag the small
        # errors of light compensation and compression as motion
        self.subtractor.setVarMin(16.0)
        self.reference_level: float | None = None
        self.frames = 0

    def _compensate(self, frame: np.ndarray) -> np.ndarray:
        """The frame scaled (per colour channel) to the light of the background model: the median
        ratio background / frame over pixels that are neither dark nor clipped in either."""
        if self.frames < 2:
            return frame
        background = self.subtractor.getBackgroundImage()
        if background is None or background.shape != frame.shape:
            return frame
        now = frame[::4, ::4].astype(np.float32)
        then = background[::4, ::4].astype(np.float32)
        usable = (now > 20) & (now < 245) & (then > 20) & (then < 245)
        gains = np.ones(3, np.float32)
        for c in range(3):
            ok = usable[..., c]
            if np.count_nonzero(ok) > 0.1 * ok.size:
                gains[c] = float(np.median(then[..., c][ok] / now[..., c][ok]))
        clipped = frame >= CLIP_LEVEL
        if np.abs(gains - 1.0).max() < 0.01 and not clipped.any():
            return frame
        scaled = frame.astype(np.float32) * gains
        # A clipped channel only says "at least this bright": in the background's light the true
        # value is >= frame * gain. Where the background is that bright (less a margin for
        # noise and compression), the pixel is consistent with the background and shows it; only a
        # background clearly darker than that bound leaves the pixel free to be foreground. (A
        # white wall clips more or less as the light swings: that is not motion.)
        consistent = clipped & (background >= scaled - CLIP_MARGIN)
        scaled = np.where(consistent, background.astype(np.float32), scaled)
        return np.clip(scaled, 0, 255).astype(np.uint8)

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """The cleaned foreground mask (H, W) uint8 0/255 of this frame (updates the model)."""
        cv2 = self.cv2
        mask = self.subtractor.apply(self._compensate(frame))
        self.frames += 1
        mask = np.where(mask > 200, 255, 0).astype(np.uint8)  # 127 = shadow
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        size = max(3, int(self.work_min_height * 0.12)) | 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, 2 * size + 1))
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)

    def boxes_of(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) xyxy and their fill (share of foreground pixels) from a mask."""
        count, labels, stats, _ = self.cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_h = 0.5 * self.work_min_height
        blobs = []
        for i in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[i])
            # a band much wider than tall is a light change or a moving fixture, not people
            if h >= 0.25 * self.work_min_height and area >= 0.05 * h * h and w <= 3 * h:
                blobs.append([x, y, x + w, y + h])
        blobs = _join_cut_parts(blobs)
        boxes, fills = [], []
        for x0, y0, x1, y1 in blobs:
            if y1 - y0 < min_h:
                continue
            for box in self._split(mask, x0, y0, x1, y1):
                bx0, by0, bx1, by1 = box
                if by1 - by0 < min_h or (bx1 - bx0) < 0.12 * (by1 - by0):
                    continue
                fill = float(np.count_nonzero(mask[by0:by1, bx0:bx1])) / max((bx1 - bx0) * (by1 - by0), 1)
                if fill < 0.2:
                    continue
                boxes.append(box)
                fills.append(fill)
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(fills, np.float32)

    def _split(self, mask: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
        h, w = y1 - y0, x1 - x0
        if w <= self.max_width_ratio * h:
            return [[x0, y0, x1, y1]]
        profile = np.count_nonzero(mask[y0:y1, x0:x1], axis=0).astype(np.float32)
        if len(profile) >= 5:
            profile = np.convolve(profile, np.ones(5, np.float32) / 5, mode="same")
        low = profile < 0.25 * profile.max()
        # runs of person columns separated by low columns
        segments, start = [], None
        for i, is_low in enumerate(low):
            if not is_low and start is None:
                start = i
            elif is_low and start is not None:
                segments.append((start, i))
                start = None
        if start is not None:
            segments.append((start, len(low)))
        parts = []
        for s0, s1 in segments:
            rows = np.nonzero(np.count_nonzero(mask[y0:y1, x0 + s0 : x0 + s1], axis=1))[0]
            if len(rows) == 0:
                continue
            py0, py1 = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
            ph, pw = py1 - py0, s1 - s0
            k = max(1, int(round(pw / (PERSON_WIDTH * ph)))) if pw > self.max_width_ratio * ph else 1
            edges = np.linspace(x0 + s0, x0 + s1, k + 1).round().astype(int)
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                rows = np.nonzero(np.count_nonzero(mask[py0:py1, a:b], axis=1))[0]
                if len(rows):
                    parts.append([int(a), py0 + int(rows[0]), int(b), py0 + int(rows[-1]) + 1])
        return parts

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        found = []
        for frame in frames:
            height, width = frame.shape[:2]
            scale = min(1.0, self.max_side / max(height, width))
            if scale < 1.0:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                frame = self.cv2.resize(frame, size, interpolation=self.cv2.INTER_AREA)
            self.work_min_height = max(8.0, self.min_person_height * scale)
            boxes, fills = self.boxes_of(self.foreground(frame))
            boxes = boxes / scale
            # a solid, person-shaped blob is a confident detection; a sparse one less so
            scores = np.clip(0.45 + fills, 0.0, 0.95).astype(np.float32)
            found.append(valid(Detections(clip_boxes(boxes, width, height), scores)))
        return found


def _join_cut_parts(blobs: list[list[int]]) -> list[list[int]]:
    """Joins side-by-side parts of one person cut by a thin occluder (a pillar): the parts overlap
    in height by most of the taller one, the gap is under a third of its height and the joined box
    is still one person wide. (Parts one above the other are not joined: measured, that merged two
    people walking one behind the other more often than it mended a person.)"""
    blobs = [list(b) for b in blobs]
    changed = True
    while changed:
        changed = False
        for i in range(len(blobs)):
            for j in range(i + 1, len(blobs)):
                a, b = blobs[i], blobs[j]
                joined = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                tall = max(a[3] - a[1], b[3] - b[1])
                overlap = min(a[3], b[3]) - max(a[1], b[1])
                gap = max(a[0], b[0]) - min(a[2], b[2])
                if (
                    overlap >= 0.7 * tall
                    and gap < tall / 3
                    and joined[2] - joined[0] <= 0.6 * (joined[3] - joined[1])
                ):
                    blobs[i] = joined
                    del blobs[j]
                    changed = True
                    break
            if changed:
                break
    return blobs
