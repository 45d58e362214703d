"""`reid synth --preset store-reid`: re-ID crops cut from rendered store scenes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from training.datasets.base import DatasetError
from training.datasets.synthetic.reader import read_synthetic
from training.datasets.synthetic.store_crops import (
    STORE_CROP_PRESETS,
    STORE_SEED_BASE,
    StoreCropsConfig,
    generate_store_crops,
)

SMALL = STORE_CROP_PRESETS["store-reid-small"]


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    return generate_store_crops(SMALL, tmp_path_factory.mktemp("store") / "reid")


def test_reader_reads_it_and_splits_are_disjoint_identities(crops):
    dataset = read_synthetic(crops)
    train_ids = {r.pid for r in dataset.train}
    test_ids = {r.pid for r in dataset.query} | {r.pid for r in dataset.gallery}
    assert train_ids and test_ids and not train_ids & test_ids
    assert all(r.captured_at is not None for r in dataset.train + dataset.query + dataset.gallery)
    # scenes never share cameras: training cameras and test cameras are different camids
    assert not {r.camid for r in dataset.train} & {r.camid for r in dataset.query + dataset.gallery}


def test_one_query_per_pass_and_bounded_gallery(crops):
    dataset = read_synthetic(crops)
    passes = {(r.pid, r.camid) for r in dataset.query}
    assert len(passes) == len(dataset.query)  # one query crop per (person, camera) pass
    for pid, camid in passes:
        gallery = [r for r in dataset.gallery if (r.pid, r.camid) == (pid, camid)]
        assert len(gallery) <= SMALL.gallery_per_pass
    # every gallery crop belongs to a pass that has a query
    assert {(r.pid, r.camid) for r in dataset.gallery} <= passes


def test_crops_are_people_cut_from_the_frame(crops):
    manifest = json.loads((crops / "dataset.json").read_text())
    assert manifest["counts"]["images"] == sum(1 for _ in crops.rglob("*.jpg"))
    for path in sorted((crops / "bounding_box_train").glob("*.jpg"))[:5]:
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (128, 64, 3)
        assert pixels.std() > 10  # a person on the floor, not a blank box


def test_scenes_are_not_the_benchmark_scenes():
    config = StoreCropsConfig()
    seeds = [config.scene_config(i).seed for i in range(config.num_scenes)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= STORE_SEED_BASE


def test_same_config_is_kept_and_another_needs_force(crops):
    before = (crops / "timestamps.csv").read_text()
    assert generate_store_crops(SMALL, crops) == crops  # kept, not rewritten
    assert (crops / "timestamps.csv").read_text() == before
    other = dataclasses.replace(SMALL, every=3)
    with pytest.raises(DatasetError, match="--force"):
        generate_store_crops(other, crops)
    assert (crops / "timestamps.csv").read_text() == before  # nothing lost


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not written by"):
        generate_store_crops(SMALL, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_bad_config_is_a_clear_error():
    with pytest.raises(DatasetError, match="train_scenes"):
        StoreCropsConfig(train_scenes=0)


def test_workers_write_the_same_files_as_one(crops, tmp_path):
    parallel = generate_store_crops(SMALL, tmp_path / "parallel", workers=2)
    for path in sorted(crops.rglob("*")):
        twin = parallel / path.relative_to(crops)
        assert twin.exists(), twin
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes(), path.name
