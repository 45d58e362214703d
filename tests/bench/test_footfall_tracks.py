"""bench.footfall_tracks: visitors over all cameras from the true tracks (the re-ID model's part alone)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import footfall_tracks
from training.datasets.synthetic.video_plan import VideoSceneConfig, plan_passes

SCENE = "store-video-small"


@pytest.fixture(scope="module")
def crops():
    return footfall_tracks.true_track_crops(0, crops_per_track=3, preset=SCENE)


def test_crops_follow_the_true_tracks(crops):
    pixels, pids, cameras, tracks, times = crops
    passes = plan_passes(VideoSceneConfig.from_preset(SCENE, seed=0))
    assert len(pixels) == len(pids) == len(cameras) == len(tracks) == len(times)
    assert all(p.shape == (128, 64, 3) for p in pixels)
    truth = {(f"cam{p.camera + 1}", p.track_id): p.pid for p in passes}
    for camera, track, pid in zip(cameras, tracks, pids, strict=True):
        assert truth[(camera, int(track.rsplit("/", 1)[1]))] == pid  # the crop shows the pass's person
    _, per_track = np.unique(tracks, return_counts=True)
    assert per_track.max() <= 3
    assert len(per_track) >= 0.8 * len(passes)  # nearly every pass is seen well enough for a crop


def test_a_perfect_model_counts_every_visitor_and_a_blind_one_merges_them(crops):
    _, pids, cameras, tracks, times = crops
    perfect = np.eye(pids.max() + 1, dtype=np.float32)[pids]
    rows = footfall_tracks.evaluate(perfect, pids, cameras, tracks, times, [0.5], 3600.0)
    assert [r["rule"] for r in rows] == ["recluster", "online"]
    for row in rows:
        assert row["visitors"] == row["true_visitors"] == np.unique(pids).size
        assert row["error"] == 0 and row["precision"] == row["recall"] == 1.0
    blind = np.ones((len(pids), 4), np.float32) / 2.0  # every crop the same vector
    rows = footfall_tracks.evaluate(blind, pids, cameras, tracks, times, [0.5], 3600.0)
    for row in rows:
        assert row["visitors"] < row["true_visitors"] and row["precision"] < 1.0
        # what still keeps them apart is the cannot-link: two tracks of one camera at the same time
        assert row["visitors"] >= 2


def test_online_rule_decides_each_track_by_all_its_crops_and_keeps_the_cannot_link():
    # track a (cam1, 0-10 s); b (cam2, 20-21 s): one crop like a, one not; d (cam2, 30-31 s): both like a;
    # c (cam1, 5 s, overlapping a): like a too
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [1, 0], [1, 0], [0.9, 0.1]], np.float32)
    times = np.array([0.0, 10.0, 20.0, 21.0, 5.0, 30.0, 31.0])
    cameras = np.array(["cam1", "cam1", "cam2", "cam2", "cam1", "cam2", "cam2"], object)
    tracks = np.array(["a", "a", "b", "b", "c", "d", "d"], object)
    labels = footfall_tracks.online_by_track(vectors, times, cameras, tracks, 0.9, 3600.0)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[5] == labels[6]  # tracks whole
    assert labels[2] != labels[0]  # b's crops together (scores 1 and 0 to a: mean 0.5) do not reach 0.9
    assert labels[5] == labels[0]  # d's do
    assert labels[4] != labels[0]  # c overlaps a on cam1: never a's visitor, though it looks the same
    lenient = footfall_tracks.online_by_track(vectors, times, cameras, tracks, 0.5, 3600.0)
    assert lenient[2] == lenient[0]  # at 0.5, b is a


def test_command_writes_one_row_per_seed_and_threshold(tmp_path):
    out = tmp_path / "rows.jsonl"
    code = footfall_tracks.main(
        ["--random-init", "--scene", SCENE, "--seeds", "0", "--crops-per-track", "1", "--thresholds", "0.5", "0.9",
         "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["seed"], r["threshold"], r["rule"]) for r in rows] == [
        (0, 0.5, "recluster"), (0, 0.5, "online"), (0, 0.9, "recluster"), (0, 0.9, "online")
    ]  # fmt: skip
    assert all(r["model"] == "random-init" and r["true_visitors"] == 4 for r in rows)


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        footfall_tracks.parse_args(["--random-init", "--crops-per-track", "0"])
    with pytest.raises(SystemExit):
        footfall_tracks.parse_args([])  # a model is required
