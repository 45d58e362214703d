"""A track that lasts for minutes (a person standing or pacing on a live stream) keeps a bounded
colour memory and is cut and stitched exactly as with every box's colours kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from tests.video.test_track_rules import GREEN_YELLOW, RED_BLUE, _dets, _run
from video import appearance as colour
from video import pipeline
from video.crops import CropPolicy, TrackCrops
from video.identity_change import change_point

BINS = 40
START = datetime(2024, 6, 3, 10, tzinfo=UTC)


def _look(rng, top: int, bottom: int) -> np.ndarray:
    look = np.stack([np.eye(BINS)[top], np.eye(BINS)[bottom]]) + rng.uniform(0, 0.01, (2, BINS))
    return (look / look.sum(axis=1, keepdims=True)).astype(np.float32)


def test_a_long_track_keeps_a_bounded_colour_memory_and_cuts_where_the_full_one_does():
    rng = np.random.default_rng(0)
    memory, n_first, n_second = 99, 5000, 20
    descriptors = [None if i % 97 == 0 else _look(rng, 3, 7) for i in range(n_first)]
    descriptors += [_look(rng, 20, 30) for _ in range(n_second)]

    def first_cut(add):  # (box, cut) of the first box after which the track is cut
        for i in range(len(descriptors)):
            at = change_point(add(i), history=10, window=10, threshold=0.5)
            if at is not None:
                return i, at
        return None

    full, full_at = first_cut(lambda i: descriptors[: i + 1])
    entry = pipeline._Open(1, TrackCrops(CropPolicy()), memory=memory)

    def add(i):
        box = (i, i / 10, (0.0, 0.0, 10.0, 20.0), 0.9)
        entry.add(box, START + timedelta(seconds=i / 10), i + 1, descriptors[i])
        assert len(entry.descriptors) == len(entry.times) == len(entry.steps) == min(i + 1, memory)
        return entry.descriptors

    # the same cut as on every box's colours, found on the same box, where the clothes change
    i, at = first_cut(add)
    assert i == full and entry.dropped + at == full_at == n_first
    rest = entry.cut(at, 2)
    assert len(entry.boxes) == n_first and len(rest.boxes) == i + 1 - n_first  # every box kept, none lost
    assert entry.first_time == START and rest.first_time == START + timedelta(seconds=n_first / 10)
    assert rest.first_step == n_first + 1 and entry.last_step == n_first
    # each part's colours as rebuilt from all of its boxes
    for part, own in ((entry, descriptors[:n_first]), (rest, descriptors[n_first : i + 1])):
        full = colour.Appearance()
        for descriptor in own:
            full.update(descriptor)
        assert part.looks.count == full.count
        np.testing.assert_allclose(part.looks.histogram, full.histogram, atol=1e-5)


def _pacing(length: int, gap: tuple[int, int], change: int):
    """A person pacing left and right across the picture for `length` frames, unseen in frames
    `gap` (hidden: the track is lost and must be stitched), the box going on with someone else's
    clothes from frame `change`."""
    scenes, detections = [], []
    for i in range(length):
        x = 20 + abs((4 * i) % 600 - 300)  # a triangle wave over 300 px
        box = [x, 60, x + 30, 160]
        scenes.append([(box, RED_BLUE if i < change else GREEN_YELLOW)])
        detections.append(_dets([] if gap[0] <= i < gap[1] else [box]))
    return scenes, detections


def _track(monkeypatch, unbounded: bool):
    """The pacing person's tracks, the stats and the longest colour memory a track held."""
    held = [0]  # the most colour histograms a track held
    memory = []

    class Recorded(pipeline._Open):
        def add(self, *args):
            super().add(*args)
            held[0] = max(held[0], len(self.descriptors))
            memory.append(self.memory)

    monkeypatch.setattr(pipeline, "_Open", Recorded)
    monkeypatch.setattr(pipeline, "LOOKS_MEMORY", 1 << 40 if unbounded else 64)
    scenes, detections = _pacing(1200, gap=(700, 725), change=1100)
    stats = pipeline.PipelineStats()
    tracks = sorted(_run(scenes, detections, stats=stats), key=lambda t: t.first_seen)
    return tracks, stats, held[0], memory[0]


def test_a_pacing_person_is_stitched_and_cut_as_with_every_box_kept(monkeypatch):
    tracks, stats, longest, memory = _track(monkeypatch, unbounded=False)
    assert longest == memory < 200
    assert stats.stitched == 1 and stats.cut == 1 and len(tracks) == 2
    first, second = tracks
    assert first.boxes[0][0] == 0 and first.boxes[-1][0] == 1099
    assert second.boxes[0][0] == 1100 and second.boxes[-1][0] == 1199
    assert first.first_seen == START and second.last_seen == START + timedelta(seconds=119.9)
    assert all(c.frame < 1100 for c in first.crops) and all(c.frame >= 1100 for c in second.crops)
    # the same as with every box's colours, times and steps kept
    full, full_stats, full_longest, _ = _track(monkeypatch, unbounded=True)
    assert full_longest > 1000 and full_stats == stats
    for mine, theirs in zip(tracks, full, strict=True):
        assert mine.summary() == theirs.summary()
