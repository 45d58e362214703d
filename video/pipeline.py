"""Frames -> detections -> tracks -> chosen crops, for one camera and one source.

`track_source` yields each track once it is over (unseen for the tracker's `lost_seconds`, or the
source ended), with its boxes and chosen crops. A track's reference `<camera>/<source key>/<id>`
is the same on every run over the same file (the source key is a content hash), which with the
service's content-hash dedupe makes a re-run idempotent.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from video import appearance as colour
from video.crops import Candidate, CropPolicy, TrackCrops
from video.detectors.base import Detector
from video.errors import VideoError
from video.identity_change import change_point
from video.perspective import Perspective
from video.sources import Frame
from video.stitching import Continuation
from video.track_quality import part_of, travel
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


# how many of a track's latest boxes keep their colour histogram, capture time and step: the change-point
# test (video/identity_change.py) reads the last history + 2 x window boxes, a new track is judged on at
# most its first settle + 2 x window boxes, and a colour summary rebuilt after a cut (an EMA of weight 0.2,
# video/appearance.py) gives a box older than this many more a weight under 0.8**64 < 1e-6
LOOKS_MEMORY = 64


@dataclass
class _Open:
    key: int  # internal; the public track id is given once the track is known to be new
    crops: TrackCrops
    memory: int = 1 << 62  # the per-box lists below keep the last `memory` boxes (bounded on long tracks)
    track_id: int = 0
    boxes: list = field(default_factory=list)  # every box: the track's result
    # of the last `memory` boxes: capture times, processed-frame steps, colour histograms (video/appearance.py)
    times: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    descriptors: list = field(default_factory=list)
    dropped: int = 0  # older boxes no longer in times / steps / descriptors (boxes[dropped:] align with them)
    dropped_known: int = 0  # ... of which had a colour histogram
    first_time: datetime | None = None
    first_step: int = 0
    last_step: int = 0
    looks: colour.Appearance = field(default_factory=colour.Appearance)
    settled: bool = False  # decided: a new track, or merged into the one it continues
    cut_from: int | None = None  # key of the track this one was cut from (another person)

    @property
    def boxes_xyxy(self) -> list:
        return [b[2] for b in self.boxes]

    @property
    def recent_xyxy(self) -> list:
        """The boxes that `steps` holds (the latest `memory`)."""
        return [b[2] for b in self.boxes[self.dropped :]]

    def by_frame(self) -> dict:
        return {b[0]: b[2] for b in self.boxes}

    def add(self, box: tuple, captured_at: datetime, step: int, descriptor) -> None:
        if not self.boxes:
            self.first_time, self.first_step = captured_at, step
        self.boxes.append(box)
        self.times.append(captured_at)
        self.steps.append(step)
        self.descriptors.append(descriptor)
        self.last_step = step
        self.looks.update(descriptor)
        self._trim()

    def _trim(self) -> None:
        extra = len(self.steps) - self.memory
        if extra > 0:
            self.dropped_known += sum(d is not None for d in self.descriptors[:extra])
            del self.times[:extra], self.steps[:extra], self.descriptors[:extra]
            self.dropped += extra

    def absorb(self, other: _Open) -> None:
        """Takes over `other`, which continues this track after a gap."""
        self.boxes += other.boxes
        if other.dropped:  # other's kept boxes are all that is kept
            self.dropped_known += sum(d is not None for d in self.descriptors) + other.dropped_known
            self.dropped += len(self.steps) + other.dropped
            self.times, self.steps = list(other.times), list(other.steps)
            self.descriptors = list(other.descriptors)
        else:
            self.times += other.times
            self.steps += other.steps
            self.descriptors += other.descriptors
        self._trim()
        self.last_step = other.last_step
        self.looks.merge(other.looks)
        self.crops.merge(other.crops)

    def cut(self, at: int, key: int) -> _Open:
        """Splits off the kept boxes `at`.. (an index into `steps` / `descriptors`: another person,
        video/identity_change.py) as a new track `key`."""
        first = self.dropped + at  # index in boxes
        rest = _Open(key, self.crops.split_off(self.boxes[first][0]), memory=self.memory, cut_from=self.key)
        rest.boxes, self.boxes = self.boxes[first:], self.boxes[:first]
        rest.times, self.times = self.times[at:], self.times[:at]
        rest.steps, self.steps = self.steps[at:], self.steps[:at]
        rest.descriptors, self.descriptors = self.descriptors[at:], self.descriptors[:at]
        rest.first_time, rest.first_step = rest.times[0], rest.steps[0]
        rest.last_step, self.last_step = rest.steps[-1], self.steps[-1]
        # each part's colours again from its own boxes (the dropped ones counted, their colours forgotten)
        self.looks, rest.looks = colour.Appearance(), colour.Appearance()
        self.looks.count = self.dropped_known
        for entry in (self, rest):
            for descriptor in entry.descriptors:
                entry.looks.update(descriptor)
        return rest


@dataclass
class PipelineStats:
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    dropped_short: int = 0
    dropped_still: int = 0  # tracks that never moved (video/track_quality.py)
    dropped_parts: int = 0  # tracks that were a piece of another track
    dropped_small: int = 0  # tracks too small for a person where they walked (video/perspective.py)
    stitched: int = 0
    cut: int = 0  # tracks cut in two where they went on with another person
    rejoined: int = 0  # ... whose first part was then continued by a track started since (of `stitched`)


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
    open_tracks: dict[int, _Open] = {}  # by internal key
    step = 0
    keys = iter(range(1, 1 << 62))
    public_ids = iter(range(1, 1 << 62))

    stitch_frames = max(1, int(round(settings.stitch_seconds * fps)))
    long_frames = max(stitch_frames, int(round(settings.stitch_long_seconds * fps)))
    # a new track is judged (new, or the continuation of a lost one) once it has this many boxes:
    # its first box alone is often a half-hidden person coming out of a merged blob
    settle_frames = max(2, int(round(settings.settle_seconds * fps)))
    # a lost track stays open (a stitching candidate) until any new track that may continue it is judged
    keep_frames = max(tracker.lost_frames, long_frames + settle_frames if settings.stitch else 0)
    min_frames = max(settings.min_frames, int(round(settings.min_seconds * fps)))
    cut_history = max(2, int(round(settings.cut_history_seconds * fps)))
    cut_window = max(2, int(round(settings.cut_window_seconds * fps)))
    memory = cut_history + 2 * cut_window + settle_frames + LOOKS_MEMORY
    perspective: Perspective | None = None  # made at the first frame (it needs the frame size)
    recent: deque[tuple[int, dict]] = deque()  # (last step, frame -> box) of finished tracks
    rules = Continuation(
        reach=settings.stitch_reach,
        frames=stitch_frames,
        colour=settings.stitch_colour,
        long_reach=settings.stitch_long_reach,
        long_frames=long_frames,
        long_colour=settings.stitch_long_colour,
    )

    def join(target: _Open, follower: _Open) -> None:
        """`follower` continues `target`'s person: merged into it, its tracker ids now lead to `target`."""
        target.absorb(follower)
        del open_tracks[follower.key]
        for tracker_id, key in alias.items():
            if key == follower.key:
                alias[tracker_id] = target.key
        stats.stitched += 1

    def settle(entry: _Open) -> None:
        """Decides whether `entry` continues a lost track (then merged into it) or is new."""
        entry.settled = True
        lost = [
            e
            for e in open_tracks.values()
            if e is not entry and e.last_step < entry.first_step and e.key != entry.cut_from
        ]
        target = None
        if settings.stitch and lost:
            choice = rules.best(
                [(e.steps, e.recent_xyxy, e.looks.histogram) for e in lost],
                (entry.steps, entry.recent_xyxy, entry.looks.histogram),
            )
            target = lost[choice] if choice is not None else None
        if target is None:
            entry.track_id = next(public_ids)
            return
        join(target, entry)

    def rejoin(first: _Open) -> None:
        """`first` was just cut (it went on with someone else): its person was lost where it now
        ends. A track started since, judged new while `first` still seemed to follow its person
        (video/identity_change.py notices a change only after `cut_window`), may be that person
        going on: the nearest such track that continues `first` by the stitching rules joins it."""
        later = [
            e
            for e in open_tracks.values()
            if e.settled and e.first_step > first.last_step and e.cut_from != first.key and not e.dropped
        ]
        costs = []
        for e in later:  # judged on the boxes it was judged on as new
            look = e.looks.histogram
            cost = rules.cost(
                (first.steps, first.recent_xyxy, first.looks.histogram),
                (e.steps[:settle_frames], e.recent_xyxy[:settle_frames], look),
            )
            if cost is not None:
                costs.append((cost, e.key))
        if not costs:
            return
        join(first, open_tracks[min(costs)[1]])
        stats.rejoined += 1

    def finish(entry: _Open) -> TrackResult | None:
        if not entry.settled:
            settle(entry)
            if entry.key not in open_tracks:  # merged into the track it continues
                return None
            del open_tracks[entry.key]
        frames = entry.by_frame()
        while recent and step - recent[0][0] > keep_frames + len(frames):
            recent.popleft()
        if len(entry.boxes) < min_frames:
            stats.dropped_short += 1
            return None
        if travel(entry.boxes_xyxy) < settings.min_travel:
            stats.dropped_still += 1
            return None
        ratio = perspective.height_ratio(entry.boxes_xyxy) if perspective is not None else None
        if settings.min_height_ratio > 0 and ratio is not None and ratio < settings.min_height_ratio:
            stats.dropped_small += 1
            return None
        if settings.drop_parts and any(
            part_of(frames, other)
            for other in [e.by_frame() for e in open_tracks.values()] + [f for _, f in recent]
        ):
            stats.dropped_parts += 1
            return None
        recent.append((entry.last_step, frames))
        if perspective is not None:
            perspective.add_track(entry.boxes_xyxy)
        stats.tracks += 1
        return TrackResult(
            track_ref=f"{camera_id}/{source_key}/{entry.track_id}",
            camera_id=camera_id,
            track_id=entry.track_id,
            boxes=entry.boxes,
            first_seen=entry.first_time,
            last_seen=entry.times[-1],
            crops=entry.crops.select(),
        )

    def finished(entries: list[_Open]) -> Iterator[TrackResult]:
        # unsettled ones first: one may still merge into a lost track that ends with it
        for entry in sorted(entries, key=lambda e: (e.settled, e.key)):
            if entry.key in open_tracks:
                if entry.settled:
                    del open_tracks[entry.key]
                result = finish(entry)
                if result is not None:
                    yield result
        # a tracker id whose track is over would start a new track if the tracker brought it back, as
        # with no alias: forget it (on a live stream the map would otherwise grow with every track)
        for tracker_id in [t for t, k in alias.items() if k not in open_tracks]:
            del alias[tracker_id]

    try:
        for batch in _batches(frames, max(1, detector.batch_size)):
            found = detector.detect([f.image for f in batch])
            for frame, detections in zip(batch, found, strict=True):
                if perspective is None:
                    perspective = Perspective(frame.image.shape[1], frame.image.shape[0])
                step += 1
                stats.frames += 1
                stats.detections += len(detections)
                # every detection's colours: the tracker may match on them, the track keeps them
                looks = [colour.describe(frame.image, box) for box in detections.boxes]
                for tracker_id, index, score in tracker.match(detections, looks):
                    box = detections.boxes[index].copy()
                    key = alias.get(tracker_id)
                    entry = open_tracks.get(key) if key is not None else None
                    if entry is None:
                        key = alias[tracker_id] = next(keys)
                        entry = open_tracks[key] = _Open(key, TrackCrops(policy), memory=memory)
                    entry.add(
                        (frame.index, frame.seconds, tuple(float(v) for v in box), score),
                        frame.captured_at,
                        step,
                        looks[index],
                    )
                    entry.crops.offer(frame.index, frame.captured_at, frame.image, np.asarray(box), score)
                    at = change_point(
                        entry.descriptors,
                        history=cut_history,
                        window=cut_window,
                        threshold=settings.cut_colour,
                    )
                    if at is not None:
                        rest = entry.cut(at, next(keys))
                        open_tracks[rest.key] = rest
                        alias[tracker_id] = rest.key
                        if not entry.settled:
                            settle(entry)
                        stats.cut += 1
                        if settings.stitch and settings.rejoin and entry.key in open_tracks:
                            rejoin(entry)
                for entry in [
                    e for e in open_tracks.values() if not e.settled and len(e.boxes) >= settle_frames
                ]:
                    settle(entry)
                yield from finished([e for e in open_tracks.values() if step - e.last_step > keep_frames])
    except (VideoError, KeyboardInterrupt):
        # the source ended before its end: a live camera gone for good, or Ctrl-C / `docker stop` on a
        # live ingest. The people in view were really there: their tracks end here and are yielded
        # (a live ingest sends them), then the error goes on. A file ingest sends nothing on an error.
        try:
            closing = list(finished(list(open_tracks.values())))
        except Exception:  # an interrupt mid-update may leave a track half-added: lose the open tracks only
            logger.exception("%s: could not close the open tracks", camera_id)
            closing = []
        yield from closing
        raise
    yield from finished(list(open_tracks.values()))
