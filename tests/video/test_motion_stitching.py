"""The motion detector on synthetic frames with known boxes, track stitching, and their options."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from tests.video.replay import ReplayDetector
from video.detectors import build_detector
from video.detectors.motion import MotionDetector
from video.errors import VideoError
from video.evaluation import iou_distance
from video.pipeline import PipelineStats, track_source
from video.sources import Frame
from video.stitching import continuation_cost
from video.tracking import TrackerSettings

H, W = 240, 320


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A fixed camera's empty picture: a smooth gradient (noise is added per frame)."""
    ys = np.linspace(60, 160, H, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 30, W, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ys + xs, (H, W, 3)).copy()


def _frame(background, boxes, rng, gain=1.0):
    image = background.copy()
    for x0, y0, x1, y1 in boxes:
        image[int(y0) : int(y1), int(x0) : int(x1)] = (30.0, 40.0, 200.0)  # a person-sized patch
    image = image * gain + rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_motion_detector_finds_moving_people_where_they_are():
    rng = np.random.default_rng(0)
    background = _scene(rng)
    detector = MotionDetector(min_person_height=40, fps=10)
    for _ in range(15):  # the empty scene first: the background model learns it
        assert len(detector.detect([_frame(background, [], rng)])[0]) == 0
    hits = 0
    for step in range(10):
        truth = [[20 + 6 * step, 100, 44 + 6 * step, 170], [260 - 5 * step, 60, 280 - 5 * step, 115]]
        found = detector.detect([_frame(background, truth, rng, gain=1.0 + 0.01 * step)])[0]
        assert len(found) == 2, found.boxes
        d = iou_distance(truth, found.boxes, max_distance=0.5)
        hits += int(np.sum(~np.isnan(d).all(axis=1)))
        assert (found.scores > 0.5).all() and (found.scores <= 1).all()
    assert hits == 20


def test_a_4k_camera_is_worked_on_shrunk_and_its_people_found_where_they_are():
    """Frames over max_side (here a 3200x2400 camera) are shrunk for the background model; the boxes come
    back in the camera's pixels."""
    rng = np.random.default_rng(0)
    factor = 10  # the 320x240 scene, 10x larger
    background = np.kron(_scene(rng), np.ones((factor, factor, 1), np.float32))
    detector = MotionDetector(min_person_height=400, fps=10, max_side=800)
    for _ in range(15):
        assert len(detector.detect([_frame(background, [], rng)])[0]) == 0
    for step in range(5):
        truth = [[(20 + 6 * step) * factor, 1000, (44 + 6 * step) * factor, 1700]]
        found = detector.detect([_frame(background, truth, rng)])[0]
        assert len(found) == 1, found.boxes
        assert iou_distance(truth, found.boxes, max_distance=0.5)[0, 0] < 0.5  # IoU > 0.5, full-size pixels
    assert detector.work_min_height == pytest.approx(100.0)  # 400 px people looked for at a quarter size
    with pytest.raises(ValueError, match="max_side"):
        MotionDetector(max_side=10)


def test_motion_detector_splits_people_side_by_side_and_ignores_bands():
    rng = np.random.default_rng(1)
    background = _scene(rng)
    detector = MotionDetector(min_person_height=40, fps=10)
    for _ in range(15):
        detector.detect([_frame(background, [], rng)])
    # two people shoulder to shoulder (one blob, 2 people wide) and a flat band (a light change)
    found = detector.detect([_frame(background, [[100, 80, 170, 160], [10, 200, 300, 225]], rng)])[0]
    assert len(found) == 2
    widths = found.boxes[:, 2] - found.boxes[:, 0]
    assert (widths < 40).all() and found.boxes[:, 0].min() >= 98 and found.boxes[:, 2].max() <= 172


def test_a_clipped_wall_swinging_with_the_light_makes_no_detections():
    """A near-white wall that the camera clips more or less as the light swings (+-15 %): what a
    single gain cannot undo, since clipped pixels do not scale. People still show."""
    rng = np.random.default_rng(3)
    ys = np.linspace(90, 140, H, dtype=np.float32)[:, None, None]
    scene = np.broadcast_to(ys, (H, W, 3)).copy()
    # a pale yellow wall, brighter towards the top: as the light rises, more of it clips
    scene[: H // 2, :, 0] = 150.0
    scene[: H // 2, :, 1] = np.linspace(250, 205, H // 2, dtype=np.float32)[:, None]
    scene[: H // 2, :, 2] = np.linspace(240, 195, H // 2, dtype=np.float32)[:, None]
    detector = MotionDetector(min_person_height=40, fps=10)

    def shot(gain, people=()):
        image = scene.copy()
        for x0, y0, x1, y1 in people:
            image[y0:y1, x0:x1] = (30.0, 40.0, 200.0)
        # the sensor clips, then noise (and compression) leave clipped areas a few levels under 255
        image = np.clip(image * gain, 0, 255) + rng.normal(0, 2.0, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)

    for _ in range(20):
        detector.detect([shot(1.0)])
    gains = 1.0 + 0.15 * np.sin(np.linspace(0, 4 * np.pi, 60))
    assert max(len(detector.detect([shot(g)])[0]) for g in gains) == 0
    found = detector.detect([shot(1.12, [(60, 80, 90, 170)])])[0]  # a person in front of the wall
    assert len(found) == 1 and found.boxes[0][0] == pytest.approx(60, abs=3)


def test_motion_detector_forgets_the_background_for_a_new_source():
    rng = np.random.default_rng(2)
    detector = MotionDetector(min_person_height=40, fps=10)
    first = _scene(rng)
    for _ in range(15):
        detector.detect([_frame(first, [], rng)])
    detector.start_source(10)
    assert detector.frames == 0 and detector.reference_level is None


def test_detector_options_are_checked():
    with pytest.raises(VideoError, match="--min-person-height must be 8..4096"):
        build_detector("motion", min_person_height=2)
    with pytest.raises(VideoError, match="--hog-upscale must be 0.25..4"):
        build_detector("hog", hog_upscale=0)
    with pytest.raises(ValueError, match="history_seconds"):
        MotionDetector(history_seconds=0)
    # HOG enlarges frames so the smallest expected people fill its window (~96 px)
    assert build_detector("hog", min_person_height=60).upscale == pytest.approx(1.6)
    assert build_detector("hog", min_person_height=150).upscale == 1.0
    assert build_detector("hog", min_person_height=60, hog_upscale=1.2).upscale == 1.2
    assert build_detector("motion", min_person_height=50).min_person_height == 50


def test_continuation_cost_follows_the_heading():
    steps = [1, 2, 3, 4, 5]
    boxes = [[10 + 10 * s, 100, 40 + 10 * s, 200] for s in steps]  # walking right, 10 px a step
    ahead = [10 + 10 * 8, 100, 40 + 10 * 8, 200]  # where it is 3 steps later
    assert continuation_cost(5, steps, boxes, 8, ahead) == pytest.approx(0.0)
    behind = [10, 100, 40, 200]  # back where it started: another person
    assert continuation_cost(5, steps, boxes, 8, behind) is None
    assert continuation_cost(5, steps, boxes, 8, [90, 150, 105, 200]) is None  # half the height
    assert continuation_cost(5, steps, boxes, 5, ahead) is None  # same step: two people


def _walk(jump_at: int, jump: float):
    """One person walking right; at `jump_at` the box jumps `jump` px ahead after 3 missed frames
    (hidden, then seen further on), which breaks the tracker's overlap gate."""
    out = []
    for i in range(40):
        x = 20 + 4 * i + (jump if i >= jump_at else 0)
        if jump_at - 3 <= i < jump_at:
            out.append((np.zeros((0, 4)), np.zeros(0)))
        else:
            out.append((np.array([[x, 60, x + 30, 160]]), np.array([0.9])))
    return out


@pytest.mark.parametrize("stitch, expected", [(False, 2), (True, 1)])
def test_a_lost_track_is_continued_by_the_new_one_when_stitching(stitch, expected):
    start = datetime(2024, 6, 3, 10, tzinfo=datetime.now().astimezone().tzinfo)
    image = np.zeros((H, 400, 3), np.uint8)
    frames = [Frame(i, i / 10, start + timedelta(seconds=i / 10), image) for i in range(40)]
    stats = PipelineStats()
    tracks = list(
        track_source(
            iter(frames),
            camera_id="cam",
            source_key="k",
            detector=ReplayDetector(_walk(20, 35)),
            fps=10,
            tracker_settings=TrackerSettings(stitch=stitch),
            stats=stats,
        )
    )
    assert len(tracks) == expected
    assert stats.stitched == (1 if stitch else 0)
    assert sorted(t.track_id for t in tracks) == list(range(1, expected + 1))


def test_min_seconds_drops_short_tracks():
    start = datetime(2024, 6, 3, 10, tzinfo=datetime.now().astimezone().tzinfo)
    image = np.zeros((H, 400, 3), np.uint8)
    # a person walking 8 px a frame (a still box would be dropped as never moving)
    per_frame = [(np.array([[50 + 8 * i, 60, 80 + 8 * i, 160]]), np.array([0.9])) for i in range(8)] + [
        (np.zeros((0, 4)), np.zeros(0))
    ] * 30
    frames = [Frame(i, i / 10, start + timedelta(seconds=i / 10), image) for i in range(len(per_frame))]

    def count(settings):
        return len(
            list(
                track_source(
                    iter(frames),
                    camera_id="c",
                    source_key="k",
                    detector=ReplayDetector(per_frame),
                    fps=10,
                    tracker_settings=settings,
                )
            )
        )

    assert count(TrackerSettings()) == 1  # 8 frames >= 3
    assert count(TrackerSettings(min_seconds=1.0)) == 0  # 0.8 s < 1 s


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--min-person-height", "3"], "--min-person-height must be 8..4096"),
        (["--min-track-seconds", "-1"], "--min-track-seconds must be >= 0"),
        (["--hog-upscale", "9"], "--hog-upscale must be 0.25..4"),
    ],
)
def test_ingest_video_options_give_one_line(flags, message, tmp_path, capsys):
    from reid.cli import main

    source = tmp_path / "in.avi"
    source.write_bytes(b"not read: the options are checked first")
    code = main(["ingest-video", "--camera", "cam1", "--dry-run", str(tmp_path / "out"), *flags, str(source)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_scene_light_drifts_and_counters_are_checked():
    from training.datasets.base import DatasetError
    from training.datasets.synthetic.video import light_gain
    from training.datasets.synthetic.video_plan import VideoSceneConfig

    config = VideoSceneConfig.from_preset("store-video")
    gains = [light_gain(config, 0, t) for t in np.arange(0, 60, 0.5)]
    assert max(gains) - min(gains) > 0.1 and all(0.84 <= g <= 1.16 for g in gains)
    assert light_gain(VideoSceneConfig(light_drift=0.0), 0, 12.0) == 1.0
    with pytest.raises(DatasetError, match="light_drift"):
        VideoSceneConfig(light_drift=0.7)
    with pytest.raises(DatasetError, match="counter_fraction"):
        VideoSceneConfig(counter_fraction=1.5)
