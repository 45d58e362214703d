"""What every dataset reader returns: image records split into train / query / gallery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from model.errors import ReidError


class DatasetError(ReidError):
    """A dataset folder or file is missing or malformed; the message names which one and why."""


@dataclass(frozen=True)
class ImageRecord:
    """One person image.

    `camid` is 0-based. In `train`, `pid` is relabelled to 0..K-1; in `query` and `gallery` it keeps
    the dataset's own id (0 = distractor, kept in the gallery only).
    """

    path: Path
    pid: int
    camid: int
    captured_at: datetime | None = None


@dataclass
class ReIDDataset:
    """A re-ID benchmark as three lists of records."""

    name: str
    root: Path
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    info: dict = field(default_factory=dict)  # reader-specific facts (version, split, source folders)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def summary(self) -> str:
        """A small table of identities / images / cameras per split, for logs."""
        rows = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        lines = [f"{self.name} at {self.root}", "  subset  |   ids | images | cams"]
        for label, records in rows:
            ids = len({r.pid for r in records})
            cams = len({r.camid for r in records})
            lines.append(f"  {label:<7} | {ids:5d} | {len(records):6d} | {cams:4d}")
        return "\n".join(lines)


def relabel_train(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Map the original person ids of training records onto 0..K-1 (in increasing original-id order)."""
    records = list(records)
    label_of = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [ImageRecord(r.path, label_of[r.pid], r.camid, r.captured_at) for r in records]


def find_layout_root(root: Path, candidates: Iterable[str], required: Iterable[str], dataset: str) -> Path:
    """Return the first of `root/<candidate>` (`""` = root itself) that holds every `required` entry.

    Raises DatasetError naming what is missing where, so a user sees which folder was expected.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{dataset}: dataset root {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{dataset}: dataset root {root} is not a folder")
    required = list(required)
    best: tuple[int, Path, list[str]] | None = None
    for candidate in candidates:
        base = root / candidate if candidate else root
        if not base.is_dir():
            continue
        missing = [name for name in required if not (base / name).exists()]
        if not missing:
            return base
        found = len(required) - len(missing)
        if best is None or found > best[0]:
            best = (found, base, missing)
    if best is not None and best[0] > 0:
        _, base, missing = best
        raise DatasetError(f"{dataset}: {base} is missing {', '.join(missing)}")
    looked = ", ".join(str(root / c) if c else str(root) for c in candidates if (root / c).is_dir() or not c)
    raise DatasetError(
        f"{dataset}: no {dataset} layout under {root}: expected {', '.join(required)} (looked in {looked})"
    )
