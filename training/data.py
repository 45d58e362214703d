"""DataLoaders for training (P x K batches, recipe augmentation) and evaluation (the embedder's resize).

Augmentation is a pure function of ``(seed, epoch, batch number, slot in the batch)``: each item gets a
generator seeded from those four numbers, so the images of a batch do not depend on the number of
workers, and a run resumed at any iteration sees exactly the images it would have seen without stopping.

Bad data is reported by file name, not by a traceback from inside a worker: an image that cannot be
decoded comes back from the worker as a ``BadImage`` record, the collate function turns a batch holding
any into a ``BadBatch``, and ``check_batch`` raises a DataError (a ReidError) that names the files.
Missing or empty files, identities without images and too few identities are found before training starts
(``check_train_records``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from model.errors import ReidError
from model.images import load_image, resize_to_input
from training.datasets.base import ImageRecord
from training.sampler import RandomIdentityBatchSampler
from training.transforms import build_train_transform

logger = logging.getLogger(__name__)


class DataError(ReidError):
    """Training or evaluation data that cannot be used; the message names the files."""


@dataclass(frozen=True)
class BadImage:
    path: Path
    reason: str


@dataclass(frozen=True)
class BadBatch:
    bad: list[BadImage]


@dataclass(frozen=True)
class TrainBatch:
    images: torch.Tensor  # (B, 3, H, W) float32, normalised
    pids: torch.Tensor  # (B,) int64 training labels
    camids: torch.Tensor  # (B,) int64

    def pin_memory(self) -> TrainBatch:
        return TrainBatch(self.images.pin_memory(), self.pids.pin_memory(), self.camids.pin_memory())


@dataclass(frozen=True)
class EvalBatch:
    pixels: list[np.ndarray]  # (H, W, 3) uint8 each, already at the network's input size
    indices: list[int]


def _describe(bad: Sequence[BadImage]) -> str:
    shown = "; ".join(f"{b.path}: {b.reason}" for b in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    return f"{shown}{more}"


def check_batch(batch: Any) -> Any:
    """Pass a good batch through; raise DataError naming the files of a BadBatch."""
    if isinstance(batch, BadBatch):
        raise DataError(f"cannot read {len(batch.bad)} image(s): {_describe(batch.bad)}")
    return batch


def _reason(exc: Exception) -> str:
    return str(exc).split("\n")[0] or type(exc).__name__


def check_train_records(records: Sequence[ImageRecord], ids_per_batch: int, num_instances: int) -> int:
    """Pre-flight checks of a training split; returns the number of identities (classifier size).

    Raises DataError for: no images; missing or empty files (named); labels that are not 0..K-1
    (an identity without images); fewer identities than one batch needs.
    """
    if not records:
        raise DataError("the training split has no images")
    missing = [r.path for r in records if not Path(r.path).is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DataError(
            f"{len(missing)} training image(s) not found: {shown}{' ...' if len(missing) > 5 else ''}"
        )
    empty = [r.path for r in records if Path(r.path).stat().st_size == 0]
    if empty:
        shown = ", ".join(str(p) for p in empty[:5])
        raise DataError(f"{len(empty)} training image(s) are empty (0 bytes): {shown}")
    labels = sorted({r.pid for r in records})
    num_ids = labels[-1] + 1 if labels and labels[0] >= 0 else 0
    if labels[0] < 0 or len(labels) != num_ids:
        absent = sorted(set(range(max(num_ids, 0))) - set(labels))[:10]
        raise DataError(
            f"training labels must be 0..K-1 with images for every identity; labels without images: {absent}"
            if labels[0] >= 0
            else f"training labels must be >= 0, got {labels[0]}"
        )
    if num_ids < ids_per_batch:
        raise DataError(
            f"the training split has {num_ids} identities, fewer than one batch of {ids_per_batch} "
            f"(data.ids_per_batch); lower it or use a larger dataset"
        )
    return num_ids


def _item_seed(seed: int, epoch: int, batch: int, slot: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch, slot]).generate_state(1, np.uint64)[0] >> 1)


class TrainImages(Dataset):
    """Training images. Items are keyed ``(index, epoch, batch, slot)`` (see ``SeededBatches``) and come
    back as ``(image tensor, pid, camid)``, or a ``BadImage`` for a file that cannot be decoded."""

    def __init__(self, records: Sequence[ImageRecord], seed: int, transform_args: dict[str, Any]) -> None:
        self.records = list(records)
        self.seed = int(seed)
        self.transform_args = dict(transform_args)
        self._generator: torch.Generator | None = None
        self._transform = None

    def __len__(self) -> int:
        return len(self.records)

    def _ensure_transform(self) -> None:
        if self._transform is None:  # built lazily: inside each worker, never pickled
            self._generator = torch.Generator()
            self._transform = build_train_transform(generator=self._generator, **self.transform_args)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, int, int] | BadImage:
        index, epoch, batch, slot = key
        record = self.records[index]
        try:
            image = load_image(record.path)
        except ReidError as exc:
            return BadImage(Path(record.path), _reason(exc))
        self._ensure_transform()
        self._generator.manual_seed(_item_seed(self.seed, epoch, batch, slot))
        return self._transform(image), record.pid, record.camid


def collate_train(items: list[Any]) -> TrainBatch | BadBatch:
    bad = [item for item in items if isinstance(item, BadImage)]
    if bad:
        return BadBatch(bad)
    images = torch.stack([item[0] for item in items])
    pids = torch.tensor([item[1] for item in items], dtype=torch.int64)
    camids = torch.tensor([item[2] for item in items], dtype=torch.int64)
    return TrainBatch(images, pids, camids)


class SeededBatches(Sampler[list[tuple[int, int, int, int]]]):
    """Wraps the P x K sampler: yields the batches of the current epoch as ``(index, epoch, batch, slot)``
    keys, batches ``start`` to ``stop - 1`` (to resume inside an epoch, or cap its length). Under DDP a rank
    yields its share of each global batch, keyed by the batch number and the slot in the global batch, so
    the ranks together see exactly the images (and augmentations) one process would."""

    def __init__(self, sampler: RandomIdentityBatchSampler) -> None:
        self.sampler = sampler
        self.start = 0
        self.stop: int | None = None

    def set_epoch(self, epoch: int, start: int = 0, stop: int | None = None) -> None:
        self.sampler.set_epoch(epoch)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)

    def _range(self) -> range:
        stop = len(self.sampler) if self.stop is None else min(self.stop, len(self.sampler))
        return range(self.start, stop)

    def __len__(self) -> int:
        return len(self._range())

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        epoch = self.sampler.epoch
        batches = self.sampler.epoch_batches(epoch)
        offset = self.sampler.rank * self.sampler.share  # this rank's first slot in the global batch
        for number in self._range():
            yield [(index, epoch, number, offset + slot) for slot, index in enumerate(batches[number])]


def build_train_loader(
    records: Sequence[ImageRecord],
    *,
    input_size: Sequence[int],
    ids_per_batch: int = 16,
    num_instances: int = 4,
    workers: int = 4,
    seed: int = 0,
    augment: dict[str, Any] | None = None,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, SeededBatches]:
    """The training DataLoader and its batch sampler (call ``batches.set_epoch(epoch, start)`` each epoch).

    ``augment``: keyword arguments of ``build_train_transform`` (translate_p, flip_p, erasing_p, ...).
    Raises DataError when the records fail ``check_train_records``.
    """
    check_train_records(records, ids_per_batch, num_instances)
    sampler = RandomIdentityBatchSampler(
        [r.pid for r in records],
        batch_size=ids_per_batch * num_instances,
        num_instances=num_instances,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    batches = SeededBatches(sampler)
    transform_args = {"input_size": tuple(input_size), **(augment or {})}
    dataset = TrainImages(records, seed, transform_args)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_train,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    return loader, batches


class EvalImages(Dataset):
    """Images resized to the network's input size (bilinear, as the embedder does), as uint8 arrays."""

    def __init__(self, records: Sequence[ImageRecord], input_size: Sequence[int]) -> None:
        self.records = list(records)
        self.height, self.width = int(input_size[0]), int(input_size[1])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int] | BadImage:
        record = self.records[index]
        try:
            return resize_to_input(record.path, (self.height, self.width)), index
        except ReidError as exc:
            return BadImage(Path(record.path), _reason(exc))


def collate_eval(items: list[Any]) -> EvalBatch | BadBatch:
    bad = [item for item in items if isinstance(item, BadImage)]
    if bad:
        return BadBatch(bad)
    return EvalBatch([item[0] for item in items], [item[1] for item in items])


def build_eval_loader(
    records: Sequence[ImageRecord], input_size: Sequence[int], batch_size: int = 128, workers: int = 2
) -> DataLoader:
    """Query or gallery images in order, decoded (in workers) and resized; yields EvalBatch / BadBatch."""
    if not records:
        raise DataError("nothing to evaluate: the split has no images")
    return DataLoader(
        EvalImages(records, input_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_eval,
    )
