"""`load_dataset(name, root, **options)`: one entry point over every reader."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from training.datasets.base import DatasetError, ReIDDataset
from training.datasets.cuhk03 import read_cuhk03
from training.datasets.cuhk03np import read_cuhk03np
from training.datasets.dukemtmc import read_dukemtmc
from training.datasets.market1501 import read_market1501
from training.datasets.msmt17 import read_msmt17
from training.datasets.synthetic.reader import read_synthetic

READERS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "msmt17": read_msmt17,
    "cuhk03": read_cuhk03,
    "cuhk03np": read_cuhk03np,
    "synthetic": read_synthetic,
}
DATASET_NAMES = tuple(READERS)


def load_dataset(name: str, root: str | Path, **options: object) -> ReIDDataset:
    """Read dataset `name` from `root`.

    Options: cuhk03 / cuhk03np `split="labeled"|"detected"`, cuhk03 `cache_dir=` (where images are
    extracted; default `<root>/images_<split>`), msmt17 `include_val=True`.
    Raises DatasetError for an unknown name or option, or a missing / malformed dataset.
    """
    reader = READERS.get(name)
    if reader is None:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise DatasetError(f"dataset {name!r} takes no option {', '.join(unknown)} (options: {allowed})")
    return reader(root, **options)
