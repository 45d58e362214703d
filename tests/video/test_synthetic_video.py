"""reid synth --preset store-video: deterministic scenes whose ground truth matches the pixels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training.datasets.base import DatasetError
from training.datasets.synthetic.video import BOXES, generate_video, render_frame
from training.datasets.synthetic.video_plan import VideoSceneConfig, plan_passes


def test_same_seed_same_scene_other_seed_other_scene():
    config = VideoSceneConfig.from_preset("store-video-small")
    passes = plan_passes(config)
    assert passes == plan_passes(config)
    assert passes != plan_passes(VideoSceneConfig.from_preset("store-video-small", seed=1))
    frame = int(passes[0].t_enter * config.fps) + 10
    a, rows_a = render_frame(config, passes[0].camera, frame, passes)
    b, rows_b = render_frame(config, passes[0].camera, frame, passes)
    assert np.array_equal(a, b) and rows_a == rows_b
    assert rows_a, "a person is under way at this frame"


def test_ground_truth_is_consistent(store_video, truth):
    config = VideoSceneConfig.from_preset("store-video-small")
    with (store_video / BOXES).open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        x0, y0, x1, y1 = (float(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= config.width and 0 <= y0 < y1 <= config.height
        assert 0 < float(row["visibility"]) <= 1
    # every pass has boxes, on its own camera, only between its entry and exit
    passes = {(p["camera_id"], p["track_id"]): p for p in truth["passes"]}
    seen = {(r["camera_id"], int(r["track_id"])) for r in rows}
    assert seen == set(passes)
    for row in rows:
        p = passes[(row["camera_id"], int(row["track_id"]))]
        assert p["t_enter"] - 1e-6 <= int(row["frame"]) / config.fps <= p["t_exit"] + 1e-6
        assert int(row["pid"]) == p["pid"]
    per_camera = truth["truth"]["per_camera"]
    assert sum(c["passes"] for c in per_camera.values()) == len(truth["passes"])
    assert truth["truth"]["visitors"] == len({p["pid"] for p in truth["passes"]})
    for camera in truth["cameras"]:
        assert (store_video / camera["video"]).stat().st_size > 0


def test_pixels_show_the_people_where_the_boxes_are(truth):
    """Inside a fully visible person's box the frame differs from the empty scene; outside it does not."""
    config = VideoSceneConfig.from_preset("store-video-small")
    passes = plan_passes(config)
    p = passes[0]
    frame = int((p.t_enter + p.t_exit) / 2 * config.fps)
    image, rows = render_frame(config, p.camera, frame, passes)
    empty, _ = render_frame(config, p.camera, frame, [])
    diff = np.abs(image.astype(int) - empty.astype(int)).sum(axis=2) > 30
    mask = np.zeros_like(diff)
    for row in rows:
        mask[int(row["y0"]) : int(row["y1"]) + 1, int(row["x0"]) : int(row["x1"]) + 1] = True
    assert diff[mask].mean() > 0.3
    assert diff[~mask].mean() < 0.001


def test_rerun_keeps_the_folder_and_refuses_a_foreign_one(store_video, tmp_path):
    config = VideoSceneConfig.from_preset("store-video-small")
    before = (store_video / "ground_truth.json").stat().st_mtime_ns
    generate_video(config, store_video)
    assert (store_video / "ground_truth.json").stat().st_mtime_ns == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not written by"):
        generate_video(config, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_bad_config_is_one_clear_error():
    with pytest.raises(DatasetError, match="fps must be"):
        VideoSceneConfig.from_preset("store-video-small", fps=0)
    with pytest.raises(DatasetError, match="unknown video preset"):
        VideoSceneConfig.from_preset("nope")


def test_cli_knows_the_preset_and_protects_another_set(tmp_path, capsys):
    from reid.cli import main

    config = VideoSceneConfig.from_preset("store-video-small", num_cameras=1, num_visitors=1, duration_s=9.0)
    out = generate_video(config, tmp_path / "one")
    data = json.loads((out / "ground_truth.json").read_text())
    assert data["config"]["num_cameras"] == 1 and len(data["cameras"]) == 1
    # the preset differs from what the folder holds: refused without --force, nothing touched
    assert main(["synth", "--preset", "store-video-small", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert json.loads((out / "ground_truth.json").read_text()) == data
