"""DukeMTMC-reID (Zheng et al., ICCV 2017): 702 training / 702 test identities, 8 cameras.

Layout (the root may also be a parent holding `DukeMTMC-reID/`): `bounding_box_train/`, `query/`,
`bounding_box_test/`, names like `0001_c2_f0046182.jpg`.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import ReIDDataset, find_layout_root
from training.datasets.bbox_layout import SPLIT_FOLDERS, read_bbox_layout

NAME = "dukemtmc"
NUM_CAMERAS = 8
FOLDER_CANDIDATES = ("", "DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID")


def read_dukemtmc(root: str | Path) -> ReIDDataset:
    """Read DukeMTMC-reID; raises DatasetError naming the missing folder or unparsable file."""
    base = find_layout_root(Path(root), FOLDER_CANDIDATES, SPLIT_FOLDERS.values(), NAME)
    train, query, gallery = read_bbox_layout(base, max_camera=NUM_CAMERAS, dataset=NAME)
    return ReIDDataset(NAME, base, train, query, gallery)
