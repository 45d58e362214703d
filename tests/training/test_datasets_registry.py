"""load_dataset: names and options."""

from __future__ import annotations

import pytest

from model.errors import ReidError
from training.datasets import DATASET_NAMES, DatasetError, load_dataset


def test_dataset_names():
    assert set(DATASET_NAMES) == {"market1501", "dukemtmc", "msmt17", "cuhk03", "cuhk03np", "synthetic"}


def test_unknown_dataset_lists_the_names(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'market'.*market1501"):
        load_dataset("market", tmp_path)


def test_unknown_option_lists_the_accepted_ones(tmp_path):
    with pytest.raises(DatasetError, match="takes no option colour.*split, cache_dir"):
        load_dataset("cuhk03", tmp_path, colour="red")
    with pytest.raises(DatasetError, match=r"takes no option split \(options: none\)"):
        load_dataset("market1501", tmp_path, split="labeled")


def test_dataset_error_is_a_user_error():
    assert issubclass(DatasetError, ReidError)
