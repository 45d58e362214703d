"""reid synth: the generated files, their determinism, timestamps, safety on re-runs, the reader."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from reid.cli import main as reid_main
from training.datasets import DatasetError, load_dataset
from training.datasets.bbox_layout import parse_person_camera
from training.datasets.synthetic import PRESETS, SyntheticConfig, generate
from training.datasets.synthetic.plan import plan_images

SMALL = SyntheticConfig.from_preset("small", seed=7)


def file_digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "small"
    result = generate(SMALL, out, workers=2)
    return out, result


def test_layout_names_and_counts(small_dataset):
    out, result = small_dataset
    assert not result.skipped
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["seed"] == 7 and manifest["config"] == SMALL.to_dict()
    images = [p for p in out.rglob("*.jpg")]
    assert len(images) == result.num_images == manifest["counts"]["images"]
    assert sorted(p.name for p in out.iterdir()) == [
        "bounding_box_test",
        "bounding_box_train",
        "dataset.json",
        "query",
        "timestamps.csv",
    ]
    for path in images:
        pid, camera = parse_person_camera(path.name)
        assert 1 <= camera <= SMALL.num_cameras
        assert (pid in (-1, 0)) == (path.parent.name == "bounding_box_test" and pid < 1)
        assert path.name.endswith(".jpg") and len(path.stem.split("_")) == 4
    with open(images[0], "rb") as handle:
        assert handle.read(3) == b"\xff\xd8\xff"  # JPEG
    from PIL import Image

    with Image.open(images[0]) as image:
        assert image.size == (64, 128) and image.mode == "RGB"
    counts = manifest["counts"]
    assert counts["distractors"] == SMALL.num_distractors and counts["junk"] == SMALL.num_junk


def test_reader_gives_records_with_timestamps(small_dataset):
    out, _ = small_dataset
    ds = load_dataset("synthetic", out)
    assert ds.num_train_pids == SMALL.num_train_ids and sorted({r.pid for r in ds.train}) == list(range(12))
    assert len({r.pid for r in ds.query}) == SMALL.num_test_ids
    assert ds.num_train_cams == SMALL.num_cameras
    assert all(
        isinstance(r.captured_at, datetime) and r.captured_at.utcoffset() == timedelta(0)
        for r in ds.train + ds.query + ds.gallery
    )
    # one query per identity per camera it was seen at; the rest of its images are in the gallery
    seen = defaultdict(set)
    for r in ds.query + ds.gallery:
        if r.pid > 0:
            seen[r.pid].add(r.camid)
    query_pairs = [(r.pid, r.camid) for r in ds.query]
    assert len(query_pairs) == len(set(query_pairs)) == sum(len(c) for c in seen.values())
    assert all(len(cams) >= 2 for cams in seen.values())  # every query has a cross-camera match
    assert sum(1 for r in ds.gallery if r.pid == 0) == SMALL.num_distractors
    assert not any(r.pid == -1 for r in ds.gallery)  # junk dropped by the reader
    assert ds.info["seed"] == 7


def test_timestamps_csv_covers_every_file(small_dataset):
    out, _ = small_dataset
    with open(out / "timestamps.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "split", "pid", "camid", "captured_at"]
    assert {row["file"] for row in rows} == {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for row in rows:
        assert row["file"].startswith(folders[row["split"]] + "/")
        pid, camera = parse_person_camera(row["file"].split("/")[1])
        assert (int(row["pid"]), int(row["camid"])) == (pid, camera - 1)
        assert row["captured_at"].endswith("Z")


def test_timestamps_are_plausible_visits():
    """Arrivals inside opening hours; a visit passes >= 2 cameras within its window of minutes."""
    config = PRESETS["market"]
    specs = plan_images(config)
    opens = datetime(2024, 6, 3, config.opening_hours[0], tzinfo=UTC)
    closes = datetime(2024, 6, 3, config.opening_hours[1], tzinfo=UTC)
    assert all(opens <= s.captured_at < closes for s in specs)
    by_pid = defaultdict(list)
    for spec in specs:
        if spec.pid > 0:
            by_pid[spec.pid].append(spec)
    hours = defaultdict(int)
    longest = timedelta(minutes=config.visit_minutes[1]) + timedelta(seconds=config.images_per_track[1] * 1.6)
    for sightings in by_pid.values():
        sightings.sort(key=lambda s: s.captured_at)
        visits, current = [], [sightings[0]]
        for spec in sightings[1:]:
            if spec.captured_at - current[-1].captured_at > timedelta(minutes=45):
                visits.append(current)
                current = []
            current.append(spec)
        visits.append(current)
        for visit in visits:
            assert visit[-1].captured_at - visit[0].captured_at <= longest
            assert len({s.camid for s in visit}) >= 2
            hours[visit[0].captured_at.hour] += 1
    assert len(hours) >= 10  # arrivals spread over the opening hours
    # Market-like counts
    counts = defaultdict(int)
    for spec in specs:
        counts[spec.split] += 1
    assert 11_000 <= counts["train"] <= 15_000
    assert len({s.pid for s in specs if s.split == "train"}) == 751
    assert len({s.pid for s in specs if s.split == "query"}) == 750


def test_store_visits_enter_first_and_leave_last():
    config = PRESETS["store"]
    specs = plan_images(config)
    by_pid = defaultdict(list)
    for spec in specs:
        if spec.pid > 0:
            by_pid[spec.pid].append(spec)
    revisits = 0
    for sightings in by_pid.values():
        sightings.sort(key=lambda s: s.captured_at)
        assert sightings[0].camid == 0 and sightings[-1].camid == config.num_cameras - 1
        entries = [
            s for i, s in enumerate(sightings) if s.camid == 0 and (i == 0 or sightings[i - 1].camid != 0)
        ]
        revisits += len(entries) > 1
    assert revisits > 0  # some people come back later the same day


def test_same_seed_gives_identical_files_in_any_process_layout(small_dataset, tmp_path):
    out, _ = small_dataset
    again = generate(SMALL, tmp_path / "again", workers=1)
    assert not again.skipped
    assert file_digests(tmp_path / "again") == file_digests(out)


def test_another_seed_gives_other_images(small_dataset, tmp_path):
    out, _ = small_dataset
    other = SyntheticConfig.from_preset("small", seed=8)
    generate(other, tmp_path / "other", workers=1)
    first, second = file_digests(out), file_digests(tmp_path / "other")
    assert first["dataset.json"] != second["dataset.json"]
    common = set(first) & set(second)
    assert not any(first[name] == second[name] for name in common if name.endswith(".jpg"))


def test_rerun_with_same_config_is_skipped(tmp_path):
    out = tmp_path / "synth"
    generate(SMALL, out, workers=1)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = generate(SMALL, out, workers=1)
    assert result.skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_rerun_with_other_config_needs_force(tmp_path):
    out = tmp_path / "synth"
    generate(SMALL, out, workers=1)
    other = SyntheticConfig.from_preset("small", seed=9)
    with pytest.raises(DatasetError, match=r"different config \(differs in: seed\).*--force"):
        generate(other, out, workers=1)
    assert json.loads((out / "dataset.json").read_text())["seed"] == 7  # untouched
    result = generate(other, out, workers=1, force=True)
    assert not result.skipped and json.loads((out / "dataset.json").read_text())["seed"] == 9
    assert not list(tmp_path.glob(".*staging*"))


def test_incomplete_dataset_is_reported(tmp_path):
    out = tmp_path / "synth"
    generate(SMALL, out, workers=1)
    next(out.glob("query/*.jpg")).unlink()
    with pytest.raises(DatasetError, match="incomplete"):
        generate(SMALL, out, workers=1)
    assert not generate(SMALL, out, workers=1, force=True).skipped


def test_foreign_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "market"
    (out / "bounding_box_train").mkdir(parents=True)
    (out / "bounding_box_train" / "0002_c1s1_000451_00.jpg").write_bytes(b"real data")
    for force in (False, True):
        with pytest.raises(DatasetError, match="not written by reid synth"):
            generate(SMALL, out, workers=1, force=force)
    assert (out / "bounding_box_train" / "0002_c1s1_000451_00.jpg").read_bytes() == b"real data"


def test_reader_errors(tmp_path, small_dataset):
    out, _ = small_dataset
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("synthetic", tmp_path / "none")
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    lines = (copy / "timestamps.csv").read_text().splitlines()
    (copy / "timestamps.csv").write_text("\n".join(lines[:-1]) + "\n")  # one image lost its row
    with pytest.raises(DatasetError, match=r"timestamps.csv has no row for " + lines[-1].split(",")[0]):
        load_dataset("synthetic", copy)
    (copy / "timestamps.csv").write_text(lines[0] + "\n" + lines[1].replace("Z", "") + "\n")
    with pytest.raises(DatasetError, match="has no time zone"):
        load_dataset("synthetic", copy)
    (copy / "timestamps.csv").unlink()
    with pytest.raises(DatasetError, match="timestamps.csv is missing"):
        load_dataset("synthetic", copy)
    (copy / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset("synthetic", copy)


def test_invalid_configs_are_explained():
    with pytest.raises(DatasetError, match="num_cameras must be 2..9"):
        SyntheticConfig.from_preset("small", num_cameras=12)
    with pytest.raises(DatasetError, match="unknown synthetic preset 'huge'"):
        SyntheticConfig.from_preset("huge")
    with pytest.raises(DatasetError, match="day must be an ISO date"):
        SyntheticConfig.from_preset("small", day="3 June")
    assert SyntheticConfig.from_dict(SMALL.to_dict()) == SMALL


def test_cli_synth_writes_then_skips_and_refuses_foreign(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--preset", "small", "--seed", "7", "--workers", "1", "--no-progress"]
    assert reid_main(args) == 0
    assert (out / "dataset.json").is_file()
    stamp = (out / "dataset.json").stat().st_mtime_ns
    assert reid_main(args) == 0
    assert (out / "dataset.json").stat().st_mtime_ns == stamp
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert reid_main(["synth", "--out", str(foreign), "--preset", "small", "--no-progress"]) == 2
    assert "not written by reid synth" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
