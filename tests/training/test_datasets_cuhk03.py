"""CUHK03 from cuhk-03.mat (MATLAB v7.3 / HDF5) with the new-protocol config (MATLAB v5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.training.dataset_fixtures import (
    CUHK03_IMAGE_SIZE,
    CUHK03_PERSONS,
    cuhk03_pixels,
    write_cuhk03_config,
    write_cuhk03_mat,
)
from training.datasets import DatasetError, load_dataset
from training.datasets import cuhk03 as cuhk03_module

TRAIN = [(0, 0), (0, 1), (1, 0)]
TEST = [(0, 2), (1, 1), (1, 2)]


def make_cuhk03(root, split="labeled", **config_options):
    write_cuhk03_mat(root / "cuhk03_release" / "cuhk-03.mat")
    return write_cuhk03_config(
        root / f"cuhk03_new_protocol_config_{split}.mat", TRAIN, TEST, **config_options
    )


def test_cuhk03_labeled_extracts_images_and_follows_the_protocol(tmp_path):
    expected = make_cuhk03(tmp_path)
    ds = load_dataset("cuhk03", tmp_path)

    assert ds.info["split"] == "labeled"
    assert sorted(r.path.name for r in ds.train) == sorted(expected["train"])
    assert sorted(r.path.name for r in ds.query) == sorted(expected["query"])
    assert sorted(r.path.name for r in ds.gallery) == sorted(expected["gallery"])
    assert ds.num_train_pids == 3 and sorted({r.pid for r in ds.train}) == [0, 1, 2]
    assert {r.pid for r in ds.query} == {expected["labels"][n] for n in expected["query"]}  # original labels
    # camera = view within the pair, 0-based
    assert {(r.path.name.split("_")[2], r.camid) for r in ds.train + ds.query + ds.gallery} == {
        ("1", 0),
        ("2", 1),
    }
    # one query per view per test person (each test person here has both views)
    assert len(ds.query) == 2 * len(TEST)

    # images extracted as PNG in the official cache folder, pixels in the right orientation
    record = next(r for r in ds.gallery if r.path.name == "2_003_2_07.png")
    assert record.path.parent == tmp_path / "images_labeled"
    with Image.open(record.path) as image:
        assert image.size == (CUHK03_IMAGE_SIZE[1], CUHK03_IMAGE_SIZE[0])
        np.testing.assert_array_equal(np.asarray(image), cuhk03_pixels("labeled", 1, 2, 6))
    # every non-empty cell was extracted, nothing for empty cells
    extracted = sorted(p.name for p in (tmp_path / "images_labeled").iterdir())
    assert len(extracted) == sum(v1 + v2 for v1, v2 in CUHK03_PERSONS.values())
    assert not any(name.endswith(".partial") for name in extracted)


def test_cuhk03_reuses_extracted_images(tmp_path, monkeypatch):
    make_cuhk03(tmp_path)
    first = load_dataset("cuhk03", tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(cuhk03_module, "extract_images", fail)
    second = load_dataset("cuhk03", tmp_path)
    assert [r.path for r in second.gallery] == [r.path for r in first.gallery]


def test_cuhk03_detected_split_and_cache_dir(tmp_path):
    make_cuhk03(tmp_path / "cuhk03", split="detected")
    cache = tmp_path / "cache"
    ds = load_dataset("cuhk03", tmp_path, split="detected", cache_dir=cache)
    assert ds.root == tmp_path / "cuhk03"
    record = next(r for r in ds.train if r.path.name == "1_001_1_01.png")
    assert record.path.parent == cache
    np.testing.assert_array_equal(np.asarray(Image.open(record.path)), cuhk03_pixels("detected", 0, 0, 0))


def test_cuhk03_config_may_sit_in_release_folder(tmp_path):
    write_cuhk03_mat(tmp_path / "cuhk03_release" / "cuhk-03.mat")
    write_cuhk03_config(tmp_path / "cuhk03_release" / "cuhk03_new_protocol_config_labeled.mat", TRAIN, TEST)
    assert len(load_dataset("cuhk03", tmp_path).train) > 0


def test_cuhk03_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="cuhk03_release/cuhk-03.mat"):
        load_dataset("cuhk03", tmp_path)
    write_cuhk03_mat(tmp_path / "cuhk03_release" / "cuhk-03.mat")
    with pytest.raises(DatasetError, match="cuhk03_new_protocol_config_detected.mat"):
        load_dataset("cuhk03", tmp_path, split="detected")


def test_cuhk03_config_lacking_a_key(tmp_path):
    make_cuhk03(tmp_path, drop=("query_idx",))
    with pytest.raises(DatasetError, match="lacks query_idx"):
        load_dataset("cuhk03", tmp_path)


def test_cuhk03_config_naming_an_unknown_image(tmp_path):
    make_cuhk03(tmp_path, extra_names=["2_009_1_01.png"])
    with pytest.raises(
        DatasetError, match=r"names 1 images that cuhk03_release/cuhk-03.mat does not hold.*2_009_1_01"
    ):
        load_dataset("cuhk03", tmp_path)


def test_cuhk03_config_with_malformed_name(tmp_path):
    make_cuhk03(tmp_path, extra_names=["person9.jpg"])
    with pytest.raises(DatasetError, match="'person9.jpg' does not look like"):
        load_dataset("cuhk03", tmp_path)


def test_cuhk03_raw_mat_not_hdf5(tmp_path):
    make_cuhk03(tmp_path)
    (tmp_path / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DatasetError, match="not a MATLAB v7.3"):
        load_dataset("cuhk03", tmp_path)


def test_cuhk03_bad_split(tmp_path):
    with pytest.raises(DatasetError, match="split must be one of"):
        load_dataset("cuhk03", tmp_path, split="classic")
