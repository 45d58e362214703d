"""The Market-1501 folder layout, shared by Market-1501, DukeMTMC-reID, CUHK03-NP and the synthetic set.

    <root>/bounding_box_train/  training images
    <root>/query/               query images
    <root>/bounding_box_test/   gallery images

File names start with the person id and camera: Market `0002_c1s1_000451_00.jpg`, Duke
`0001_c2_f0046182.jpg`, CUHK03-NP `0001_c1_1.png`. Standard junk rules: pid -1 (junk) is dropped
everywhere; pid 0 (distractors) is kept in the gallery only.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from training.datasets.base import DatasetError, ImageRecord, relabel_train

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JUNK_PID = -1
DISTRACTOR_PID = 0

_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")


def parse_person_camera(name: str) -> tuple[int, int]:
    """`0002_c1s1_000451_00.jpg` -> (2, 1): the person id and the 1-based camera number.

    Raises ValueError when the name does not start with `<pid>_c<camera>`.
    """
    match = _NAME_PATTERN.match(name)
    if match is None:
        raise ValueError(f"file name {name!r} does not start with <person id>_c<camera>")
    return int(match.group(1)), int(match.group(2))


def read_split_folder(
    folder: Path, *, max_camera: int | None, keep_distractors: bool, dataset: str
) -> list[ImageRecord]:
    """Read one split folder into records (camid 0-based, original pids), applying the junk rules.

    Raises DatasetError if the folder holds no images, a name does not parse, or a camera number
    is outside 1..max_camera.
    """
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"{dataset}: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    records: list[ImageRecord] = []
    junk = distractors = 0
    for path in paths:
        try:
            pid, camera = parse_person_camera(path.name)
        except ValueError as exc:
            raise DatasetError(f"{dataset}: {path}: {exc}") from None
        if pid < JUNK_PID:
            raise DatasetError(f"{dataset}: {path}: person id {pid} is negative (only -1, junk, is allowed)")
        if camera < 1 or (max_camera is not None and camera > max_camera):
            limit = f"1..{max_camera}" if max_camera is not None else ">= 1"
            raise DatasetError(f"{dataset}: {path}: camera c{camera} is outside {limit}")
        if pid == JUNK_PID:
            junk += 1
            continue
        if pid == DISTRACTOR_PID and not keep_distractors:
            distractors += 1
            continue
        records.append(ImageRecord(path=path, pid=pid, camid=camera - 1))
    if junk or distractors:
        logger.debug(
            "%s: %s: dropped %d junk and %d distractor images", dataset, folder.name, junk, distractors
        )
    if not records:
        raise DatasetError(f"{dataset}: {folder} holds only junk/distractor images")
    return records


def read_bbox_layout(
    root: Path, *, max_camera: int | None, dataset: str
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """Read the three split folders under `root` -> (train relabelled 0..K-1, query, gallery)."""
    for folder in SPLIT_FOLDERS.values():
        if not (root / folder).is_dir():
            raise DatasetError(f"{dataset}: {root} is missing the folder {folder}/")
    train = read_split_folder(
        root / SPLIT_FOLDERS["train"], max_camera=max_camera, keep_distractors=False, dataset=dataset
    )
    query = read_split_folder(
        root / SPLIT_FOLDERS["query"], max_camera=max_camera, keep_distractors=False, dataset=dataset
    )
    gallery = read_split_folder(
        root / SPLIT_FOLDERS["gallery"], max_camera=max_camera, keep_distractors=True, dataset=dataset
    )
    return relabel_train(train), query, gallery
