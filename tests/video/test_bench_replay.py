"""bench.video --save-detections / --detections: a replay of the saved detector output gives the
bench run's tracks and scores, and a replay of another video or other settings is refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import video as bench

BASE = ["--preset", "store-video-small", "--detector", "motion", "--fps", "5", "--min-person-height", "30"]


@pytest.fixture
def data(store_video, tmp_path):
    """A data folder holding the rendered small store (the bench keeps a render of the same config)."""
    shutil.copytree(store_video, tmp_path / "data" / "store-video-small")
    return tmp_path / "data"


def _rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def _scores(rows):
    keys = ("camera", "tracks", "mota", "idf1", "recall", "id_switches", "stitched", "cut", "count_error")
    return [{k: r[k] for k in keys} for r in rows]


def test_a_replay_of_saved_detections_gives_the_bench_run(data, tmp_path, capsys):
    saved = tmp_path / "dets"
    assert bench.main([*BASE, "--data", str(data), "--save-detections", str(saved)]) == 0
    run = _rows(capsys)
    files = sorted((saved / "store-video-small").glob("*.json"))
    assert [f.stem for f in files] == [r["camera"] for r in run] and len(run) == 2
    header = json.loads(files[0].read_text())
    assert header["detector"] == {
        "name": "motion",
        "weights": None,
        "hog_upscale": None,
        "min_person_height": 30,
    }
    assert header["fps"] == 5 and len(header["frames"]) == run[0]["frames"]
    assert sum(len(boxes) for _, boxes in header["frames"]) > 0

    assert bench.main([*BASE, "--data", str(data), "--detections", str(saved)]) == 0
    assert _scores(_rows(capsys)) == _scores(run)
    # tracker settings may differ from the saved run's: that is what a replay is for
    assert bench.main([*BASE, "--data", str(data), "--detections", str(saved), "--no-stitch"]) == 0
    assert sum(r["stitched"] for r in _rows(capsys)) == 0


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_a_replay_of_other_settings_or_another_video_is_refused(data, tmp_path, capsys):
    saved = tmp_path / "dets"
    bench.main([*BASE, "--data", str(data), "--save-detections", str(saved), "--cameras", "1"])
    capsys.readouterr()
    replay = ["--data", str(data), "--detections", str(saved)]
    other_fps = [*BASE[:5], "8", *BASE[6:], *replay]
    assert "fps=5.0" in _refused(other_fps, capsys) and "fps=8.0" in _refused(other_fps, capsys)
    other_height = [*BASE[:-1], "40", *replay]
    assert "min_person_height" in _refused(other_height, capsys)
    assert "no saved detections" in _refused([*BASE, *replay], capsys)  # cam2 was not saved
    # the same name but another video: its content hash differs
    path = saved / "store-video-small" / "cam1.json"
    saved_data = json.loads(path.read_text())
    path.write_text(json.dumps({**saved_data, "source_key": "0123456789ab"}))
    assert "source_key" in _refused([*BASE, *replay, "--cameras", "1"], capsys)
    # the same video but fewer frames saved than it has
    path.write_text(json.dumps({**saved_data, "frames": saved_data["frames"][:-3]}))
    assert "not the same video" in _refused([*BASE, *replay, "--cameras", "1"], capsys)
    longer = [*saved_data["frames"], [10**6, []]]  # a frame more than the video has
    path.write_text(json.dumps({**saved_data, "frames": longer}))
    assert f"{len(longer)} frames saved" in _refused([*BASE, *replay, "--cameras", "1"], capsys)
    path.write_text("{not json")
    assert "unreadable" in _refused([*BASE, *replay, "--cameras", "1"], capsys)
    with pytest.raises(SystemExit):  # one or the other
        bench.main([*BASE, *replay, "--save-detections", str(saved)])
