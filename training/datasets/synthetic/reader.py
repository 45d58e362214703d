"""Read a dataset written by `reid synth`: the Market-1501 reader plus per-image capture times."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from training.datasets.base import DatasetError, ImageRecord, ReIDDataset
from training.datasets.bbox_layout import SPLIT_FOLDERS, read_bbox_layout
from training.datasets.synthetic.generate import MANIFEST, TIMESTAMP_COLUMNS, TIMESTAMPS, read_manifest

NAME = "synthetic"


def read_timestamps(path: Path) -> dict[str, datetime]:
    """timestamps.csv -> {file relative to the root: timezone-aware capture time}."""
    if not path.is_file():
        raise DatasetError(f"{NAME}: {path} is missing (written by `reid synth` next to the image folders)")
    times: dict[str, datetime] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != TIMESTAMP_COLUMNS:
            raise DatasetError(f"{NAME}: {path}: header must be {','.join(TIMESTAMP_COLUMNS)}, got {header}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(TIMESTAMP_COLUMNS):
                raise DatasetError(
                    f"{NAME}: {path}:{line_number}: expected {len(TIMESTAMP_COLUMNS)} fields, got {row}"
                )
            try:
                captured_at = datetime.fromisoformat(row[4])
            except ValueError:
                raise DatasetError(
                    f"{NAME}: {path}:{line_number}: {row[4]!r} is not an ISO 8601 time"
                ) from None
            if captured_at.tzinfo is None:
                raise DatasetError(
                    f"{NAME}: {path}:{line_number}: {row[4]!r} has no time zone (expected UTC)"
                )
            times[row[0]] = captured_at
    return times


def _with_times(
    records: list[ImageRecord], root: Path, times: dict[str, datetime], source: Path
) -> list[ImageRecord]:
    timed = []
    for record in records:
        key = record.path.relative_to(root).as_posix()
        if key not in times:
            raise DatasetError(f"{NAME}: {source} has no row for {key}")
        timed.append(ImageRecord(record.path, record.pid, record.camid, times[key]))
    return timed


def read_synthetic(root: str | Path) -> ReIDDataset:
    """Read a `reid synth` folder; records carry `captured_at`. Raises DatasetError naming what is wrong."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{NAME}: dataset root {root} does not exist or is not a folder")
    missing = [f"{name}/" for name in SPLIT_FOLDERS.values() if not (root / name).is_dir()]
    if missing:
        raise DatasetError(f"{NAME}: {root} is missing {', '.join(missing)}")
    manifest = read_manifest(root)
    if manifest is None:
        raise DatasetError(f"{NAME}: {root} has no {MANIFEST} written by `reid synth`")
    num_cameras = manifest.get("config", {}).get("num_cameras")
    train, query, gallery = read_bbox_layout(root, max_camera=num_cameras, dataset=NAME)
    times = read_timestamps(root / TIMESTAMPS)
    source = root / TIMESTAMPS
    return ReIDDataset(
        NAME,
        root,
        _with_times(train, root, times, source),
        _with_times(query, root, times, source),
        _with_times(gallery, root, times, source),
        info={
            "seed": manifest.get("seed"),
            "config": manifest.get("config"),
            "near_duplicate_pairs": manifest.get("near_duplicate_pairs", []),
        },
    )
