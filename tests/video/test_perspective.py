"""The per-camera perspective model (video/perspective.py) and the rule built on it: a moving blob
far smaller than a person at its foot row is not counted."""

from __future__ import annotations

import numpy as np
import pytest

from tests.video.test_track_rules import RED_BLUE, _dets, _run
from video.perspective import Perspective
from video.pipeline import PipelineStats
from video.tracking import TrackerSettings

W, H = 768, 576


def _person(x: float, foot: float, height: float, width: float = 0.4) -> list[float]:
    return [x - width * height / 2, foot - height, x + width * height / 2, foot]


def _true_height(foot: float) -> float:
    return 0.4 * foot - 60.0  # 100 px at row 400, 160 px at row 550


def _walk(foot0: float, foot1: float, n: int = 20, scale: float = 1.0) -> list[list[float]]:
    return [
        _person(200 + 10 * i, f, scale * _true_height(f)) for i, f in enumerate(np.linspace(foot0, foot1, n))
    ]


def test_the_line_is_learned_from_people_and_survives_outliers():
    model = Perspective(W, H, min_tracks=4)
    rng = np.random.default_rng(0)
    assert model.expected_height(400) is None  # nothing seen yet
    for _ in range(12):  # people with heights +-8%, walking between rows 330 and 560
        model.add_track(_walk(*rng.uniform(330, 560, 2), scale=rng.uniform(0.92, 1.08)))
    for _ in range(4):  # merged blobs (1.6x) and people behind a counter (0.55x)
        model.add_track(_walk(*rng.uniform(330, 560, 2), scale=1.6))
        model.add_track(_walk(*rng.uniform(330, 560, 2), scale=0.55))
    for row in (350, 450, 550):
        assert model.expected_height(row) == pytest.approx(_true_height(row), rel=0.06)
    assert model.height_ratio(_walk(400, 500)) == pytest.approx(1.0, abs=0.06)
    assert model.height_ratio(_walk(400, 500, scale=0.3)) == pytest.approx(0.3, abs=0.03)


def test_the_model_stays_silent_when_it_cannot_know():
    few = Perspective(W, H, min_tracks=8)
    for _ in range(7):
        few.add_track(_walk(350, 550))
    assert few.expected_height(450) is None  # too few tracks
    flat = Perspective(W, H, min_tracks=4)
    for _ in range(10):
        flat.add_track(_walk(450, 452))  # everyone at one depth: no line to fit
    assert flat.expected_height(450) is None
    noisy = Perspective(W, H, min_tracks=4)
    rng = np.random.default_rng(1)
    for _ in range(20):  # heights unrelated to rows (a camera looking straight down, stairs)
        f = float(rng.uniform(330, 560))
        noisy.add_track([_person(300, f, float(rng.uniform(40, 300)))])
    assert noisy.expected_height(450) is None
    cut = Perspective(W, H, min_tracks=1)
    cut.add_track([[0, 100, 40, 200], [700, 400, 767, 575]])  # every box touches the border
    assert len(cut.samples) == 0 and cut.tracks == 0


def _scene(small_size: float):
    """Ten people walking down the picture one after the other (the model learns from them), then
    a person and, beside them, a moving blob of `small_size` x a person's height at its row."""
    scenes, detections = [], []
    for p in range(10):
        for i in range(20):
            foot = 340 + 10 * i
            box = _person(150 + 40 * p, foot, _true_height(foot))
            scenes.append([(box, RED_BLUE)])
            detections.append(_dets([box]))
        scenes += [[]] * 25  # each one is over (and counted) before the next
        detections += [_dets([])] * 25
    for i in range(25):
        foot = 380 + 6 * i
        person = _person(200 + 12 * i, foot, _true_height(foot))
        blob = _person(560 + 6 * i, foot, small_size * _true_height(foot), width=1.0)
        scenes.append([(person, RED_BLUE), (blob, RED_BLUE)])
        detections.append(_dets([person, blob]))
    return scenes, detections


@pytest.mark.parametrize("size, counted", [(0.3, 11), (0.6, 12), (1.0, 12)])
def test_a_blob_too_small_for_a_person_where_it_walks_is_not_counted(size, counted, monkeypatch):
    import tests.video.test_track_rules as rules

    monkeypatch.setattr(rules, "H", H)
    monkeypatch.setattr(rules, "W", W)
    stats = PipelineStats()
    tracks = _run(*_scene(size), stats=stats)
    assert len(tracks) == counted and stats.dropped_small == 12 - counted
    # off: every moving blob is counted
    assert len(_run(*_scene(size), TrackerSettings(min_height_ratio=0.0))) == 12
