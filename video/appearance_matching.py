"""Clothing colour in ByteTrack's frame-to-frame matching (what DeepSORT / BoT-SORT do with re-ID features).

supervision's ByteTrack matches on boxes only: in a crowd a track may jump to a neighbour whose box
overlaps its own better, and the neighbour's own track then restarts as a second track. `ColourGate`
adds the colour histograms of video/appearance.py to the cost ByteTrack minimises, without copying
the library: for the length of one `update_with_detections` call the tracker's `matching` module is
seen through a proxy whose `iou_distance`, when it is asked for tracks against this frame's new
detections, returns

- 1 (no match) for a pair whose colour distance is above `gate` (0 = no gate), and
- the lower of 1 - IoU and the colour distance for a pair closer than `fuse` in colour whose
  1 - IoU is under `near` (BoT-SORT's fusion: a person who moved further than their box overlaps
  is still taken by their own track when their clothes match; 0 = no fusion).

A track's colour is the running mean of the detections it was given (video/appearance.Appearance),
kept by its tracker id; a detection or track with no colour (too small a box) keeps its box cost.
Other calls of `iou_distance` (ByteTrack's removal of duplicate tracks) are left as they are. The
swap is guarded by a lock, so trackers in other threads wait rather than see another frame's colours.
It relies on supervision 0.30's ByteTrack calling `matching.iou_distance` through its module
(`supervision.tracker.byte_tracker.core`), which the pin `supervision>=0.30,<0.31` holds still; the
tests check that the colours change the matching and that the module is put back.

The `trackers` package (Roboflow, Apache-2.0, 2.6) was looked at for this: its trackers (SORT,
ByteTrack, OC-SORT, BoT-SORT, C-BIoU, McByte) take no appearance features, and it needs the full
`opencv-python`, which cannot sit beside the headless OpenCV 4 of the HOG detector (video/tracking.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from video import appearance as colour

_SWAP = threading.Lock()


class _Matching:
    """supervision's `matching` module with a colour-aware `iou_distance`."""

    def __init__(self, module, gate: ColourGate) -> None:
        self._module = module
        self._gate = gate

    def __getattr__(self, name: str):
        return getattr(self._module, name)

    def iou_distance(self, atracks, btracks):
        cost = self._module.iou_distance(atracks, btracks)
        return self._gate.adjust(cost, atracks, btracks)


class ColourGate:
    def __init__(self, gate: float = 0.0, fuse: float = 0.0, near: float = 0.9) -> None:
        if gate < 0 or fuse < 0 or not 0 < near <= 1:
            raise ValueError(
                f"colour gate {gate}, fusion {fuse} and near {near} must be >= 0, >= 0 and in (0, 1]"
            )
        self.gate, self.fuse, self.near = gate, fuse, near
        self.looks: dict[int, colour.Appearance] = {}  # by tracker id
        self._boxes = np.empty((0, 4), np.float32)
        self._descriptors: Sequence[np.ndarray | None] = ()

    @contextmanager
    def frame(self, boxes: np.ndarray, descriptors: Sequence[np.ndarray | None]) -> Iterator[None]:
        """Colour-aware matching, inside, for a frame whose detections (as given to ByteTrack) are
        `boxes` and whose colours are `descriptors`."""
        from supervision.tracker.byte_tracker import core

        with _SWAP:
            self._boxes, self._descriptors = np.asarray(boxes, np.float32).reshape(-1, 4), descriptors
            plain = core.matching
            core.matching = _Matching(plain, self)
            try:
                yield
            finally:
                core.matching = plain
                self._boxes, self._descriptors = np.empty((0, 4), np.float32), ()

    def learn(self, matched: list[tuple[int, np.ndarray | None]], tracker) -> None:
        """Each track's colour takes in the detection it was given; tracks ByteTrack no longer
        holds are forgotten."""
        for tid, descriptor in matched:
            self.looks.setdefault(tid, colour.Appearance()).update(descriptor)
        alive = {t.external_track_id for t in tracker.tracked_tracks + tracker.lost_tracks}
        for tid in [t for t in self.looks if t not in alive]:
            del self.looks[tid]

    def _detection(self, track) -> np.ndarray | None:
        """The colours of one of this frame's detections, found by its box (ByteTrack builds its
        own objects from the boxes, in their order, dropping some)."""
        if len(self._boxes) == 0:
            return None
        gap = np.abs(self._boxes - np.asarray(track.tlbr, np.float32)).max(axis=1)
        index = int(np.argmin(gap))
        return self._descriptors[index] if gap[index] < 0.05 else None

    def adjust(self, cost: np.ndarray, tracks, detections) -> np.ndarray:
        if cost.size == 0 or not detections or isinstance(detections[0], np.ndarray):
            return cost
        # new detections have no track id yet; two lists of tracks are ByteTrack's duplicate removal
        no_id = detections[0].internal_id_counter.NO_ID
        if any(d.internal_track_id != no_id for d in detections):
            return cost
        cost = np.array(cost, dtype=np.float32)
        looks = [self.looks.get(int(t.external_track_id)) for t in tracks]
        found = [self._detection(d) for d in detections]
        for i, look in enumerate(looks):
            if look is None or look.histogram is None:
                continue
            for j, descriptor in enumerate(found):
                d = colour.distance(look.histogram, descriptor)
                if d is None:
                    continue
                if self.gate > 0 and d > self.gate:
                    cost[i, j] = 1.0
                elif self.fuse > 0 and d < self.fuse and cost[i, j] < self.near:
                    cost[i, j] = min(cost[i, j], d)
        return cost
