"""OpenCV's HOG + linear SVM people detector (Dalal & Triggs): no weights file, CPU only.

OpenCV 5 removed it, hence the `opencv-python-headless<5` pin. Its window is 64x128 with the person
about 96 px tall inside, so people shorter than ~100 px need `upscale` > 1 (1.6 finds 60 px people,
at about 2.5x the time). The window's margin is cut off the boxes so they hug the person.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from video.detectors.base import Detections, clip_boxes, valid

# the share of the 64x128 window around the person, per side (x, y)
WINDOW_MARGIN = (0.2, 0.08)


class HogDetector:
    name = "hog"

    def __init__(
        self,
        upscale: float = 1.0,
        hit_threshold: float = 0.0,
        win_stride: int = 8,
        scale: float = 1.05,
        batch_size: int = 1,
    ) -> None:
        from video.sources import _cv2

        cv2 = _cv2()
        if upscale <= 0:
            raise ValueError(f"upscale must be > 0, got {upscale}")
        self.cv2 = cv2
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = upscale
        self.hit_threshold = hit_threshold
        self.win_stride = (win_stride, win_stride)
        self.scale = scale
        self.batch_size = batch_size

    def detect_one(self, frame: np.ndarray) -> Detections:
        height, width = frame.shape[:2]
        image = frame
        if self.upscale != 1.0:
            image = self.cv2.resize(
                frame, None, fx=self.upscale, fy=self.upscale, interpolation=self.cv2.INTER_LINEAR
            )
        # OpenCV's detectMultiScale crashes the process (SIGSEGV, seen with opencv-python-headless 4.14 on
        # 64x64, 96x96 and 64x128 HxW frames) on images lower or narrower than its window: nobody fits there
        window_w, window_h = self.hog.winSize
        if image.shape[0] < window_h or image.shape[1] < window_w:
            return Detections()
        rects, weights = self.hog.detectMultiScale(
            image,
            hitThreshold=self.hit_threshold,
            winStride=self.win_stride,
            padding=(8, 8),
            scale=self.scale,
        )
        if len(rects) == 0:
            return Detections()
        rects = np.asarray(rects, np.float32).reshape(-1, 4) / self.upscale
        x, y, w, h = rects.T
        mx, my = WINDOW_MARGIN
        boxes = np.stack([x + mx * w, y + my * h, x + (1 - mx) * w, y + (1 - my) * h], axis=1)
        # the SVM margin (>= hit_threshold, typically 0..3) mapped to a [0, 1) confidence
        scores = 1.0 - np.exp(-np.clip(np.asarray(weights, np.float32).reshape(-1), 0, None))
        return valid(Detections(clip_boxes(boxes, width, height), scores))

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect_one(frame) for frame in frames]
