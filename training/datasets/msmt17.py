"""MSMT17 (Wei et al., CVPR 2018): 1,041 training / 3,060 test identities, 15 cameras.

Layout, V1 (`MSMT17_V1/`) or V2 (`MSMT17_V2/`, faces blurred), which differ only in folder names:

    train/ or mask_train_v2/     <pid folder>/<image>
    test/  or mask_test_v2/      <pid folder>/<image>
    list_train.txt list_val.txt  lines `<path relative to the train folder> <pid>`
    list_query.txt list_gallery.txt   the same, relative to the test folder

The camera is the third `_` field of the file name: `0000_000_01_0303morning_0015_0.jpg` -> camera 01.
Training uses list_train + list_val (the usual practice); the test ids are numbered separately.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from training.datasets.base import DatasetError, ImageRecord, ReIDDataset, relabel_train

logger = logging.getLogger(__name__)

NAME = "msmt17"
NUM_CAMERAS = 15
VERSION_FOLDERS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
LIST_FILES = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
_NAME_PATTERN = re.compile(r"^\d+_\d+_(\d+)_")


def camera_from_name(name: str) -> int:
    """`0000_000_01_0303morning_0015_0.jpg` -> 1 (the 1-based camera). Raises ValueError if it does not parse."""
    match = _NAME_PATTERN.match(name)
    if match is None:
        raise ValueError(f"file name {name!r} does not look like <pid>_<index>_<camera>_<...>")
    return int(match.group(1))


def _find_root(root: Path) -> tuple[Path, str]:
    if not root.exists():
        raise DatasetError(f"{NAME}: dataset root {root} does not exist")
    bases = [root, *(root / v for v in VERSION_FOLDERS), *(root / "msmt17" / v for v in VERSION_FOLDERS)]
    partial: list[str] = []
    for base in bases:
        if not base.is_dir():
            continue
        for version, (train_dir, test_dir) in VERSION_FOLDERS.items():
            wanted = (f"{train_dir}/", f"{test_dir}/", *LIST_FILES)
            missing = [w for w in wanted if not (base / w.rstrip("/")).exists()]
            if not missing:
                return base, version
            if len(missing) < len(wanted) and (base / train_dir).is_dir():
                partial.append(f"{base} ({version} layout) is missing {', '.join(missing)}")
    if partial:
        raise DatasetError(f"{NAME}: {partial[0]}")
    raise DatasetError(
        f"{NAME}: no MSMT17 layout under {root}: expected train/ + test/ (V1) or mask_train_v2/ + "
        f"mask_test_v2/ (V2) next to {', '.join(LIST_FILES)}"
    )


def read_list(list_path: Path, image_dir: Path) -> list[ImageRecord]:
    """Parse one list file into records (original pids, camid 0-based); every listed image must exist."""
    records: list[ImageRecord] = []
    missing: list[str] = []
    text = list_path.read_text(encoding="utf-8", errors="replace")
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise DatasetError(
                f"{NAME}: {list_path}:{line_number}: expected '<image path> <pid>', got {line!r}"
            )
        relative, pid = fields[0], int(fields[1])
        try:
            camera = camera_from_name(Path(relative).name)
        except ValueError as exc:
            raise DatasetError(f"{NAME}: {list_path}:{line_number}: {exc}") from None
        if not 1 <= camera <= NUM_CAMERAS:
            raise DatasetError(
                f"{NAME}: {list_path}:{line_number}: camera {camera} is outside 1..{NUM_CAMERAS}"
            )
        path = image_dir / relative
        if not path.is_file():
            missing.append(relative)
        records.append(ImageRecord(path=path, pid=pid, camid=camera - 1))
    if missing:
        raise DatasetError(
            f"{NAME}: {len(missing)} images listed in {list_path.name} are missing from {image_dir} "
            f"(first: {', '.join(missing[:3])})"
        )
    if not records:
        raise DatasetError(f"{NAME}: {list_path} lists no images")
    return records


def read_msmt17(root: str | Path, include_val: bool = True) -> ReIDDataset:
    """Read MSMT17 V1 or V2; train = list_train (+ list_val when `include_val`), relabelled 0..K-1."""
    base, version = _find_root(Path(root).expanduser())
    train_dir, test_dir = (base / d for d in VERSION_FOLDERS[version])
    train = read_list(base / "list_train.txt", train_dir)
    if include_val:
        train += read_list(base / "list_val.txt", train_dir)
    query = read_list(base / "list_query.txt", test_dir)
    gallery = read_list(base / "list_gallery.txt", test_dir)
    logger.debug("%s: %s layout at %s", NAME, version, base)
    return ReIDDataset(NAME, base, relabel_train(train), query, gallery, info={"version": version})
