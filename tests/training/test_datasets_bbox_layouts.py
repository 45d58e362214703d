"""Market-1501, DukeMTMC-reID and CUHK03-NP readers on tiny folders in the real layout."""

from __future__ import annotations

import pytest

from tests.training.dataset_fixtures import (
    CUHK03NP_FILES,
    DUKE_FILES,
    MARKET_FILES,
    write_bbox_layout,
    write_image,
)
from training.datasets import DatasetError, load_dataset


def test_market_reads_splits_relabels_train_and_applies_junk_rules(tmp_path):
    root = write_bbox_layout(tmp_path / "Market-1501-v15.09.15", MARKET_FILES)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # ships with Market

    ds = load_dataset("market1501", tmp_path)  # the parent folder is accepted too

    assert ds.root == root
    # train: original ids 2, 7, 10 -> 0, 1, 2 in order; cameras 0-based
    train = sorted((r.path.name, r.pid, r.camid) for r in ds.train)
    assert train == [
        ("0002_c1s1_000451_00.jpg", 0, 0),
        ("0002_c2s1_000301_01.jpg", 0, 1),
        ("0007_c3s1_000551_00.jpg", 1, 2),
        ("0007_c6s2_009551_00.jpg", 1, 5),
        ("0010_c1s1_002051_02.jpg", 2, 0),
    ]
    assert ds.num_train_pids == 3 and ds.num_train_cams == 4
    assert sorted((r.pid, r.camid) for r in ds.query) == [(1, 0), (3, 3)]  # original ids kept
    gallery = sorted((r.pid, r.camid) for r in ds.gallery)
    assert gallery == [(0, 0), (1, 1), (3, 4)]  # distractor kept, both junk images dropped
    assert all(r.captured_at is None for r in ds.train + ds.query + ds.gallery)
    assert all(r.path.is_file() for r in ds.gallery)


def test_market_root_itself_and_summary(tmp_path):
    write_bbox_layout(tmp_path, MARKET_FILES)
    ds = load_dataset("market1501", tmp_path)
    assert ds.root == tmp_path
    assert "train" in ds.summary() and " 5 " in ds.summary()


def test_market_missing_folder_is_named(tmp_path):
    files = {k: v for k, v in MARKET_FILES.items() if k != "query"}
    write_bbox_layout(tmp_path, files)
    with pytest.raises(DatasetError, match="missing query"):
        load_dataset("market1501", tmp_path)


def test_market_missing_root_and_unrelated_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("market1501", tmp_path / "nowhere")
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetError, match="bounding_box_train"):
        load_dataset("market1501", tmp_path)


def test_market_unparsable_name_is_named(tmp_path):
    write_bbox_layout(tmp_path, MARKET_FILES)
    write_image(tmp_path / "bounding_box_train" / "person2_cam1.jpg")
    with pytest.raises(DatasetError, match="person2_cam1.jpg"):
        load_dataset("market1501", tmp_path)


def test_market_camera_out_of_range_is_named(tmp_path):
    write_bbox_layout(tmp_path, MARKET_FILES)
    write_image(tmp_path / "query" / "0004_c7s1_000001_00.jpg")
    with pytest.raises(DatasetError, match=r"0004_c7s1_000001_00.jpg.*c7.*1\.\.6"):
        load_dataset("market1501", tmp_path)


def test_market_empty_split_folder(tmp_path):
    write_bbox_layout(tmp_path, {**MARKET_FILES, "query": []})
    with pytest.raises(DatasetError, match="query holds no images"):
        load_dataset("market1501", tmp_path)


def test_market_folder_with_only_junk(tmp_path):
    write_bbox_layout(tmp_path, {**MARKET_FILES, "query": ["-1_c1s1_000001_00.jpg"]})
    with pytest.raises(DatasetError, match="only junk"):
        load_dataset("market1501", tmp_path)


def test_duke_reads_eight_cameras(tmp_path):
    write_bbox_layout(tmp_path / "DukeMTMC-reID", DUKE_FILES)
    ds = load_dataset("dukemtmc", tmp_path)
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 1), (0, 4), (1, 7)]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 1)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(5, 6), (19, 0)]


def test_duke_rejects_camera_nine(tmp_path):
    write_bbox_layout(tmp_path, DUKE_FILES)
    write_image(tmp_path / "bounding_box_test" / "0020_c9_f0000001.jpg")
    with pytest.raises(DatasetError, match=r"c9 is outside 1\.\.8"):
        load_dataset("dukemtmc", tmp_path)


def test_cuhk03np_reads_labeled_and_detected(tmp_path):
    write_bbox_layout(tmp_path / "cuhk03-np" / "labeled", CUHK03NP_FILES)
    detected = {k: v[:1] for k, v in CUHK03NP_FILES.items()}
    write_bbox_layout(tmp_path / "cuhk03-np" / "detected", detected)

    labeled_ds = load_dataset("cuhk03np", tmp_path)
    assert labeled_ds.info["split"] == "labeled"
    assert len(labeled_ds.train) == 4 and labeled_ds.num_train_pids == 2 and labeled_ds.num_train_cams == 2
    assert sorted((r.pid, r.camid) for r in labeled_ds.query) == [(2, 0), (2, 1)]
    assert all(r.path.suffix == ".png" for r in labeled_ds.gallery)

    detected_ds = load_dataset("cuhk03np", tmp_path / "cuhk03-np", split="detected")
    assert len(detected_ds.train) == 1 and len(detected_ds.gallery) == 1


def test_cuhk03np_errors(tmp_path):
    with pytest.raises(DatasetError, match="split must be one of labeled, detected"):
        load_dataset("cuhk03np", tmp_path, split="both")
    write_bbox_layout(tmp_path / "cuhk03-np" / "labeled", CUHK03NP_FILES)
    write_image(tmp_path / "cuhk03-np" / "labeled" / "query" / "0009_c3_1.png")
    with pytest.raises(DatasetError, match=r"c3 is outside 1\.\.2"):
        load_dataset("cuhk03np", tmp_path)
