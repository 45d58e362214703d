"""MSMT17 reader: V1 and V2 folder names, list files, camera from the file name."""

from __future__ import annotations

import pytest

from tests.training.dataset_fixtures import write_msmt17
from training.datasets import DatasetError, load_dataset


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_reads_both_versions(tmp_path, version):
    base = write_msmt17(tmp_path, version)
    ds = load_dataset("msmt17", tmp_path)
    assert ds.root == base and ds.info["version"] == version
    # list_train + list_val; original ids 0, 2, 4 -> 0, 1, 2; cameras 01, 05, 12, 15 -> 0-based
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 4), (1, 14), (2, 11)]
    assert [(r.pid, r.camid) for r in ds.query] == [(0, 2)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 10), (1, 6)]
    assert all(r.path.is_file() for r in ds.train + ds.query + ds.gallery)


def test_msmt17_without_val(tmp_path):
    write_msmt17(tmp_path)
    ds = load_dataset("msmt17", tmp_path / "MSMT17_V1", include_val=False)
    assert len(ds.train) == 3 and ds.num_train_pids == 2


def test_msmt17_missing_list_file_is_named(tmp_path):
    base = write_msmt17(tmp_path)
    (base / "list_gallery.txt").unlink()
    with pytest.raises(DatasetError, match="missing list_gallery.txt"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_no_layout(tmp_path):
    with pytest.raises(DatasetError, match="no MSMT17 layout"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_malformed_line_is_located(tmp_path):
    base = write_msmt17(tmp_path)
    with (base / "list_query.txt").open("a") as handle:
        handle.write("0003/0003_000_02_0303noon_0001_0.jpg\n")  # no pid
    with pytest.raises(DatasetError, match=r"list_query.txt:2: expected '<image path> <pid>'"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_bad_file_name_is_located(tmp_path):
    base = write_msmt17(tmp_path)
    (base / "list_val.txt").write_text("0002/img_0002.jpg 2\n")
    with pytest.raises(DatasetError, match=r"list_val.txt:1: file name 'img_0002.jpg'"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_listed_image_missing(tmp_path):
    base = write_msmt17(tmp_path)
    (base / "test" / "0001" / "0001_000_07_0303noon_1105_2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 images listed in list_gallery.txt are missing.*0001_000_07"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_camera_out_of_range(tmp_path):
    base = write_msmt17(tmp_path)
    (base / "list_query.txt").write_text("0000/0000_000_16_0303morning_0036_0.jpg 0\n")
    with pytest.raises(DatasetError, match=r"camera 16 is outside 1\.\.15"):
        load_dataset("msmt17", tmp_path)
