"""Tracking people within one camera: ByteTrack (Zhang et al., ECCV 2022) from `supervision`.

Why this one: supervision (Roboflow, MIT licence, released monthly) ships a plain-numpy ByteTrack
whose only heavy dependencies are numpy/scipy/matplotlib/PyAV; it needs no GPU, no weights and no
OpenCV GUI build. Its successor, the `trackers` package (Apache-2.0, same authors), requires the
full `opencv-python` (OpenCV 5, which dropped the HOG detector, and libGL), which cannot sit beside
the headless OpenCV 4 the default detector needs; BoxMOT is AGPL-3.0 and norfair needs numpy < 2.
supervision removed ByteTrack in 0.31, so the pin is `supervision>=0.30,<0.31`: this class is the
only place that touches it, so moving to `trackers.ByteTrackTracker` later is a local change.
Clothing colour may take part in the matching (`match_colour`, video/appearance_matching.py).

`Tracker.update` takes one processed frame's detections and returns (track id, box, score) for the
boxes that belong to a confirmed track. Ids count from 1 and are unique for the tracker's life,
i.e. within one camera and source.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from video.detectors.base import Detections


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's knobs, in seconds where the library counts frames (so --fps does not change them)."""

    activation_threshold: float = 0.35  # a detection this confident may start a track
    lost_seconds: float = 2.0  # a track unseen this long is over
    match_threshold: float = 0.8  # 1 - IoU gate for matching
    min_frames: int = 3  # a track confirmed by fewer processed frames is noise
    min_seconds: float = 0.0  # ... or one seen for fewer seconds' worth of processed frames
    stitch: bool = True  # join a lost track to the new track that continues it (video/stitching.py)
    stitch_reach: float = 0.4  # ... when the new box is this many person heights from where it was heading
    stitch_seconds: float = 2.0  # ... and the lost track was last seen at most this long ago
    stitch_colour: float = 0.6  # ... and their colour histograms are closer than this (video/appearance.py)
    # a longer gap (two people walking together, a long occlusion) is bridged only with a close colour match
    stitch_long_seconds: float = 4.0
    stitch_long_reach: float = 1.0
    stitch_long_colour: float = 0.4
    # a new track is judged (a new person or the continuation of a lost one) after this long
    settle_seconds: float = 0.5
    # a track whose foot point moved less than this many person heights is not a pass (video/track_quality.py)
    min_travel: float = 0.5
    # a track that is mostly a piece of a taller one (legs, a half cut by a pillar) is not counted
    drop_parts: bool = True
    # a track whose clothes change (the tracker followed another person after two blobs merged, or
    # a stitch joined two people) is cut in two where they change: the colour distance between its
    # last `cut_window` boxes and the `cut_history` before them above this (0 = never cut;
    # video/identity_change.py)
    cut_colour: float = 0.5
    cut_history_seconds: float = 1.0
    cut_window_seconds: float = 1.0
    # after a cut, a track started since the first part's end may continue it (stitching rules)
    rejoin: bool = True
    # a track whose boxes are under this share of a person's height at their foot row (learned per
    # camera from the tracks counted so far, video/perspective.py) is not a person (0 = off)
    min_height_ratio: float = 0.45
    # boxes are matched grown by this share of their size on each side (`buffered`; 0 = as found)
    match_buffer: float = 0.15
    # frame-to-frame matching with clothing colour (`ColourGate`, video/appearance.py): a detection
    # whose colour distance to a track's running colour is above this may not continue it (0 = boxes only)
    match_colour: float = 0.0
    # ... and one closer than this in colour may continue a track it overlaps less (its cost is the
    # lower of 1 - IoU and the colour distance, BoT-SORT's fusion) while 1 - IoU is under `match_near`
    match_colour_fuse: float = 0.0
    match_near: float = 0.9


class Tracker:
    def __init__(self, fps: float, settings: TrackerSettings | None = None) -> None:
        try:
            import supervision as sv
        except ImportError as exc:  # pragma: no cover - the "video" extra is missing
            from video.errors import VideoError

            raise VideoError("video tracking needs supervision: pip install 'rga-reid[video]'") from exc
        self.sv = sv
        self.settings = settings or TrackerSettings()
        self.fps = fps
        self.lost_frames = max(1, int(round(self.settings.lost_seconds * fps)))
        with warnings.catch_warnings():  # "deprecated in 0.28": see the module docstring
            warnings.simplefilter("ignore")
            self.tracker = sv.ByteTrack(
                track_activation_threshold=self.settings.activation_threshold,
                # supervision scales its buffer by frame_rate / 30
                lost_track_buffer=self.lost_frames,
                minimum_matching_threshold=self.settings.match_threshold,
                frame_rate=30,
                minimum_consecutive_frames=1,
            )
        # clothing colour in the matching (video/appearance_matching.py)
        self.gate = None
        if self.settings.match_colour or self.settings.match_colour_fuse:
            from video.appearance_matching import ColourGate

            self.gate = ColourGate(
                gate=self.settings.match_colour,
                fuse=self.settings.match_colour_fuse,
                near=self.settings.match_near,
            )

    def update(
        self, detections: Detections, descriptors: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[int, np.ndarray, float]]:
        """(track id, box, score) of the boxes that continue or start a confirmed track."""
        boxes = detections.boxes.astype(np.float32).reshape(-1, 4)
        return [
            (tid, boxes[index].copy(), score) for tid, index, score in self.match(detections, descriptors)
        ]

    def match(
        self, detections: Detections, descriptors: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[int, int, float]]:
        """(track id, index of the detection, score) for the detections that belong to a confirmed
        track. `descriptors` (one per detection, video/appearance.py's `describe`, None where
        unknown) let clothing colour take part in the matching when `match_colour` is set."""
        sv = self.sv
        boxes = detections.boxes.astype(np.float32).reshape(-1, 4)
        if descriptors is not None and len(descriptors) != len(boxes):
            raise ValueError(f"{len(descriptors)} colour descriptors for {len(boxes)} detections")
        grown = buffered(boxes, self.settings.match_buffer)
        found = sv.Detections(
            xyxy=grown,
            confidence=detections.scores.astype(np.float32),
            class_id=np.zeros(len(detections), int),
            data={"index": np.arange(len(boxes))},
        )
        if self.gate is not None and descriptors is not None:
            with self.gate.frame(grown, descriptors):
                tracked = self.tracker.update_with_detections(found)
        else:
            tracked = self.tracker.update_with_detections(found)
        if tracked.tracker_id is None or len(tracked) == 0:
            return []
        scores = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked))
        result = [
            (int(tid), int(index), float(score))
            for tid, index, score in zip(tracked.tracker_id, tracked.data["index"], scores, strict=True)
        ]
        if self.gate is not None and descriptors is not None:
            self.gate.learn([(tid, descriptors[index]) for tid, index, _ in result], self.tracker)
        return result


def buffered(boxes: np.ndarray, buffer: float) -> np.ndarray:
    """Boxes grown by `buffer` x their width / height on each side (C-BIoU, Yang et al., WACV 2023):
    the tracker matches these, so that a narrow person walking sideways (a box 25 px wide moving
    15 px per processed frame overlaps its last box by IoU 0.25) still overlaps where they were."""
    if buffer <= 0 or len(boxes) == 0:
        return boxes
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    pad = np.stack([-buffer * w, -buffer * h, buffer * w, buffer * h], axis=1)
    return (boxes + pad).astype(np.float32)
