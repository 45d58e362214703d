"""Saved detections: a detector's raw output per processed frame, written once and replayed instead
of the detector, so that tracker settings are compared on exactly the same boxes (and without the
detector's cost: frames are still decoded, for colours and crops).

One JSON file per camera and source: a header saying what the boxes were made from (the video's
content hash, the processed frame rate, the detector and its settings, whatever the caller adds) and,
for every processed frame in order, its index and boxes `[x0, y0, x1, y1, score]`. Coordinates are
the detector's float32 values written exactly, so a replay hands the tracker the same numbers.
A replay whose header differs from what the caller is about to run, or whose frames are not the
ones the source yields, is refused with one line saying what differs: the tracker would otherwise be
judged on another video's or another detector's boxes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from video.detectors.base import Detections, Detector
from video.errors import VideoError

FORMAT = 1


class Recorder:
    """Wraps a detector and keeps what it answered, in order (one entry per frame it was given)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.name = detector.name
        self.batch_size = detector.batch_size
        self.found: list[Detections] = []

    def start_source(self, fps: float) -> None:
        start = getattr(self.detector, "start_source", None)
        if start is not None:
            start(fps)
        self.found = []

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        found = self.detector.detect(frames)
        self.found += found
        return found

    def save(self, path: str | Path, header: dict, frames: Sequence[int]) -> Path:
        """Writes the detections of `frames` (the processed frame indices, in order) under `header`."""
        if len(frames) != len(self.found):
            raise VideoError(f"{len(frames)} processed frames but {len(self.found)} detection results")
        rows = [
            [
                int(index),
                [[float(v) for v in box] + [float(s)] for box, s in zip(d.boxes, d.scores, strict=True)],
            ]
            for index, d in zip(frames, self.found, strict=True)
        ]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".partial")
        staging.write_text(json.dumps({"format": FORMAT, **header, "frames": rows}), encoding="utf-8")
        staging.replace(path)  # whole or not at all
        return path


class Replay:
    """A detector that answers the saved detections of one camera, frame by frame. `check(index)` is
    called with each frame's index before it is detected (the frames must be the saved ones)."""

    batch_size = 1

    def __init__(self, path: str | Path, expected: dict) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no saved detections (write them with --save-detections)")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            self.indices = [int(index) for index, _ in data["frames"]]
            self.answers = [_detections(boxes) for _, boxes in data["frames"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VideoError(f"{self.path}: unreadable saved detections ({exc})") from exc
        for key, value in expected.items():
            if data.get(key) != value:
                raise VideoError(
                    f"{self.path}: saved with {key}={json.dumps(data.get(key))}, this run has "
                    f"{key}={json.dumps(value)}: not the same video or settings"
                )
        self.name = str((data.get("detector") or {}).get("name", "saved"))
        self.next = 0

    def start_source(self, fps: float) -> None:
        self.next = 0

    def check(self, index: int) -> None:
        """The source's next processed frame is `index`: it must be the next saved one."""
        if self.next >= len(self.indices) or self.indices[self.next] != index:
            saved = self.indices[self.next] if self.next < len(self.indices) else "the end"
            raise VideoError(
                f"{self.path}: the video's processed frame {index} is not the saved one ({saved}): "
                "not the same video"
            )

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        if self.next + len(frames) > len(self.answers):
            raise VideoError(
                f"{self.path}: the video has more processed frames than the {len(self.answers)} saved"
            )
        found = self.answers[self.next : self.next + len(frames)]
        self.next += len(frames)
        return found

    def finish(self) -> None:
        """Raises if the source ended before the saved frames did."""
        if self.next != len(self.answers):
            raise VideoError(
                f"{self.path}: {len(self.answers)} frames saved but the video gave {self.next}: not the same video"
            )


def _detections(boxes: list) -> Detections:
    rows = np.asarray(boxes, np.float32).reshape(-1, 5)
    return Detections(rows[:, :4], rows[:, 4])
