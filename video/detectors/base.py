"""The detector interface: frames in, person boxes with confidences out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Detections:
    """People found in one frame: `boxes` (N, 4) float32 x0, y0, x1, y1 in pixels, `scores` (N,)
    float32 confidences in [0, 1] (the tracker's thresholds are in that scale)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.boxes)

    def keep(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask])


class Detector(Protocol):
    """Finds people. `batch_size` frames are handed over at once (a GPU detector runs them as one
    batch); frames are (H, W, 3) uint8 BGR as OpenCV decodes them."""

    name: str
    batch_size: int

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height - 1)
    return boxes


def valid(detections: Detections, min_size: float = 2.0) -> Detections:
    """Drops boxes that are empty, inverted or not finite."""
    b = detections.boxes
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] - b[:, 0] >= min_size) & (b[:, 3] - b[:, 1] >= min_size)
    return detections.keep(ok & np.isfinite(detections.scores))
