"""Frames -> detections -> tracks -> chosen crops, for one camera and one source.

`track_source` yields each track once it is over (unseen for the tracker's `lost_seconds`, or the
source ended), with its boxes and chosen crops. A track's reference `<camera>/<source key>/<id>`
is the same on every run over the same file (the source key is a content hash), which with the
service's content-hash dedupe makes a re-run idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from video.crops import Candidate, CropPolicy, TrackCrops
from video.detectors.base import Detector
from video.sources import Frame
from video.stitching import continuation_cost
from video.tracking import Tracker, TrackerSettings

logger = logging.getLogger(__name__)


@dataclass
class TrackResult:
    track_ref: str
    camera_id: str
    track_id: int
    boxes: list[tuple[int, float, tuple[float, float, float, float], float]]  # frame, seconds, xyxy, score
    first_seen: datetime
    last_seen: datetime
    crops: list[Candidate] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready: what the dry run writes per track (one line of tracks.jsonl)."""
        return {
            "track_ref": self.track_ref,
            "camera_id": self.camera_id,
            "track_id": self.track_id,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "frames": len(self.boxes),
            "boxes": [[f, round(s, 3), [round(v, 1) for v in b], round(sc, 3)] for f, s, b, sc in self.boxes],
            "crops": [
                {
                    "frame": c.frame,
                    "captured_at": c.captured_at.isoformat(),
                    "box": [round(v, 1) for v in c.box],
                }
                for c in self.crops
            ],
        }


@dataclass
class _Open:
    track_id: int
    crops: TrackCrops
    boxes: list = field(default_factory=list)
    times: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    last_step: int = 0

    @property
    def boxes_xyxy(self) -> list:
        return [b[2] for b in self.boxes]


@dataclass
class PipelineStats:
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    dropped_short: int = 0
    stitched: int = 0


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def track_source(
    frames: Iterator[Frame],
    *,
    camera_id: str,
    source_key: str,
    detector: Detector,
    fps: float,
    tracker_settings: TrackerSettings | None = None,
    crop_policy: CropPolicy | None = None,
    stats: PipelineStats | None = None,
) -> Iterator[TrackResult]:
    """Tracks of one source, each yielded when it is over. `fps` is the rate of processed frames."""
    settings = tracker_settings or TrackerSettings()
    policy = crop_policy or CropPolicy()
    stats = stats if stats is not None else PipelineStats()
    tracker = Tracker(fps, settings)
    alias: dict[int, int] = {}  # tracker id -> the open track it continues (stitching)
    start_source = getattr(detector, "start_source", None)
    if start_source is not None:  # a detector with state (the motion detector's background model)
        start_source(fps)
    open_tracks: dict[int, _Open] = {}
    step = 0
    counter = iter(range(1, 1 << 62))

    def next_id() -> int:
        return next(counter)

    stitch_frames = max(1, int(round(settings.stitch_seconds * fps)))
    min_frames = max(settings.min_frames, int(round(settings.min_seconds * fps)))

    def continued(box: np.ndarray, updated: set[int]) -> _Open | None:
        """The lost open track this new tracker id continues, if any (video/stitching.py)."""
        best, best_cost = None, None
        for entry in open_tracks.values():
            if entry.track_id in updated or not 0 < step - entry.last_step <= stitch_frames:
                continue
            cost = continuation_cost(
                entry.last_step, entry.steps, entry.boxes_xyxy, step, box, reach=settings.stitch_reach
            )
            if cost is not None and (best_cost is None or cost < best_cost):
                best, best_cost = entry, cost
        return best

    def finish(entry: _Open) -> TrackResult | None:
        if len(entry.boxes) < min_frames:
            stats.dropped_short += 1
            return None
        stats.tracks += 1
        return TrackResult(
            track_ref=f"{camera_id}/{source_key}/{entry.track_id}",
            camera_id=camera_id,
            track_id=entry.track_id,
            boxes=entry.boxes,
            first_seen=entry.times[0],
            last_seen=entry.times[-1],
            crops=entry.crops.select(),
        )

    for batch in _batches(frames, max(1, detector.batch_size)):
        found = detector.detect([f.image for f in batch])
        for frame, detections in zip(batch, found, strict=True):
            step += 1
            stats.frames += 1
            stats.detections += len(detections)
            tracked = tracker.update(detections)
            # tracks the tracker kept this frame first: a new tracker id may only continue a track
            # that is not among them
            tracked.sort(key=lambda t: t[0] not in alias)
            updated: set[int] = set()
            for tracker_id, box, score in tracked:
                track_id = alias.get(tracker_id)
                entry = open_tracks.get(track_id) if track_id is not None else None
                if track_id is None and settings.stitch:
                    entry = continued(box, updated)
                    if entry is not None:
                        alias[tracker_id] = entry.track_id
                        stats.stitched += 1
                if entry is None:
                    track_id = alias[tracker_id] = next_id()
                    entry = open_tracks[track_id] = _Open(track_id, TrackCrops(policy))
                updated.add(entry.track_id)
                entry.boxes.append((frame.index, frame.seconds, tuple(float(v) for v in box), score))
                entry.times.append(frame.captured_at)
                entry.steps.append(step)
                entry.last_step = step
                entry.crops.offer(frame.index, frame.captured_at, frame.image, np.asarray(box), score)
            over = [tid for tid, e in open_tracks.items() if step - e.last_step > tracker.lost_frames]
            for tid in over:
                result = finish(open_tracks.pop(tid))
                if result is not None:
                    yield result
    for tid in sorted(open_tracks):
        result = finish(open_tracks.pop(tid))
        if result is not None:
            yield result
