"""CUHK03-NP (Zhong et al., CVPR 2017): the CUHK03 new protocol (767 / 700 identities) as folders.

Layout: `<root>/labeled/` and `<root>/detected/` (the root may also be a parent holding `cuhk03-np/`),
each with `bounding_box_train/`, `query/`, `bounding_box_test/`; names like `0001_c1_1.png`, where the
camera is the view (1 or 2) within the identity's camera pair.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import DatasetError, ReIDDataset, find_layout_root
from training.datasets.bbox_layout import SPLIT_FOLDERS, read_bbox_layout

NAME = "cuhk03np"
SPLITS = ("labeled", "detected")
NUM_VIEWS = 2


def read_cuhk03np(root: str | Path, split: str = "labeled") -> ReIDDataset:
    """Read the `labeled` or `detected` half of CUHK03-NP."""
    if split not in SPLITS:
        raise DatasetError(f"{NAME}: split must be one of {', '.join(SPLITS)}, not {split!r}")
    candidates = (split, f"cuhk03-np/{split}", f"CUHK03-NP/{split}", "")
    base = find_layout_root(Path(root), candidates, SPLIT_FOLDERS.values(), NAME)
    train, query, gallery = read_bbox_layout(base, max_camera=NUM_VIEWS, dataset=NAME)
    return ReIDDataset(NAME, base, train, query, gallery, info={"split": split})
