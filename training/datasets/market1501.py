"""Market-1501 (Zheng et al., ICCV 2015): 751 training / 750 test identities, 6 cameras.

Layout (the root may also be a parent holding `Market-1501-v15.09.15/` or `market1501/`):
`bounding_box_train/`, `query/`, `bounding_box_test/`, names like `0002_c1s1_000451_00.jpg`.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import ReIDDataset, find_layout_root
from training.datasets.bbox_layout import SPLIT_FOLDERS, read_bbox_layout

NAME = "market1501"
NUM_CAMERAS = 6
FOLDER_CANDIDATES = (
    "",
    "Market-1501-v15.09.15",
    "market1501",
    "market1501/Market-1501-v15.09.15",
    "Market-1501",
)


def read_market1501(root: str | Path) -> ReIDDataset:
    """Read Market-1501; raises DatasetError naming the missing folder or unparsable file."""
    base = find_layout_root(Path(root), FOLDER_CANDIDATES, SPLIT_FOLDERS.values(), NAME)
    train, query, gallery = read_bbox_layout(base, max_camera=NUM_CAMERAS, dataset=NAME)
    return ReIDDataset(NAME, base, train, query, gallery)
