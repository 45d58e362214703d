from __future__ import annotations

import pytest

from training.datasets.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """The `small` synthetic preset (12 train ids, 165 train images, 3 cameras), generated once."""
    root = tmp_path_factory.mktemp("synthetic-small")
    generate(SyntheticConfig.from_preset("small", seed=0), root, workers=1)
    return root
