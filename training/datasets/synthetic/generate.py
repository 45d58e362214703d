"""Write a synthetic dataset to disk in the Market-1501 layout, in parallel, safely.

    <out>/bounding_box_train/ query/ bounding_box_test/   JPEG crops, Market-style names
    <out>/timestamps.csv    file,split,pid,camid,captured_at  (camid 0-based, ISO 8601 UTC)
    <out>/dataset.json      generator, config (seed included), counts, near-duplicate pairs

The dataset is built in a sibling staging folder and moved into place when complete, so `out`
either holds a whole dataset or nothing of ours. Running again with the same config is a no-op;
a different config needs `force=True`, which replaces only a folder this generator wrote.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.device import usable_cpus
from training.datasets.base import DatasetError
from training.datasets.synthetic.appearance import identity_look, is_twin, one_off_look
from training.datasets.synthetic.camera import camera_look
from training.datasets.synthetic.config import SyntheticConfig
from training.datasets.synthetic.plan import SPLIT_FOLDERS, ImageSpec, plan_images, split_identities
from training.datasets.synthetic.render import encode_jpeg, render_crop

logger = logging.getLogger(__name__)

GENERATOR = "reid synth"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
TIMESTAMPS = "timestamps.csv"
TIMESTAMP_COLUMNS = ("file", "split", "pid", "camid", "captured_at")
OWN_ENTRIES = frozenset({*SPLIT_FOLDERS.values(), MANIFEST, TIMESTAMPS})
STAGING_MARKER = ".reid-synth-staging"
CHUNK = 64
JUNK_LOOK_OFFSET = 1_000_000  # junk fragments use looks apart from the distractors'


@dataclass(frozen=True)
class GenerationResult:
    out: Path
    num_images: int
    skipped: bool  # True when `out` already held this dataset
    seconds: float


def format_time(spec: ImageSpec) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-06-03T09:15:02.440Z."""
    return spec.captured_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{spec.captured_at.microsecond // 1000:03d}Z"


def render_spec(config: SyntheticConfig, spec: ImageSpec) -> np.ndarray:
    """The pixels of one planned image: (height, width, 3) uint8."""
    rng = np.random.default_rng([config.seed, 5, spec.serial])
    if spec.kind == "person":
        look = identity_look(config.seed, spec.pid, config.twin_fraction)
    elif spec.kind == "distractor":
        look = one_off_look(config.seed, spec.look_index)
    else:
        look = one_off_look(config.seed, JUNK_LOOK_OFFSET + spec.look_index) if rng.random() < 0.5 else None
    camera = camera_look(config.seed, spec.camid)
    return render_crop(
        look, camera, rng, view=spec.view, kind=spec.kind, height=config.height, width=config.width
    )


# worker state, set once per process by _init_worker
_worker_config: SyntheticConfig | None = None
_worker_root: Path | None = None


def _init_worker(config: SyntheticConfig, root: Path) -> None:
    global _worker_config, _worker_root
    _worker_config, _worker_root = config, root


def _write_chunk(specs: Sequence[ImageSpec]) -> int:
    assert _worker_config is not None and _worker_root is not None
    for spec in specs:
        data = encode_jpeg(render_spec(_worker_config, spec), _worker_config.jpeg_quality)
        (_worker_root / spec.file).write_bytes(data)
    return len(specs)


def _chunks(specs: Sequence[ImageSpec], size: int) -> Iterator[Sequence[ImageSpec]]:
    for start in range(0, len(specs), size):
        yield specs[start : start + size]


def _render_all(
    config: SyntheticConfig, specs: list[ImageSpec], root: Path, workers: int, progress: bool
) -> None:
    def progress_bar() -> tqdm:
        return tqdm(total=len(specs), unit="img", desc="reid synth", disable=None if progress else True)

    if workers <= 1:
        _init_worker(config, root)
        with progress_bar() as bar:
            for chunk in _chunks(specs, CHUNK):
                bar.update(_write_chunk(chunk))
        return
    # fork keeps start-up cheap (no re-import); workers only use numpy and PIL. The pool is made
    # before the progress bar starts its monitor thread.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with (
        context.Pool(workers, initializer=_init_worker, initargs=(config, root)) as pool,
        progress_bar() as bar,
    ):
        for done in pool.imap_unordered(_write_chunk, list(_chunks(specs, CHUNK))):
            bar.update(done)


def manifest(config: SyntheticConfig, specs: list[ImageSpec]) -> dict:
    """The dataset.json content: generator, config, counts and the near-duplicate pairs."""
    train_ids, test_ids = split_identities(config)
    counts = {split: sum(1 for s in specs if s.split == split) for split in SPLIT_FOLDERS}
    counts |= {
        "distractors": sum(1 for s in specs if s.kind == "distractor"),
        "junk": sum(1 for s in specs if s.kind == "junk"),
        "train_ids": len(train_ids),
        "test_ids": len(test_ids),
        "images": len(specs),
    }
    twins = [
        [pid - 1, pid]
        for pid in range(2, len(train_ids) + len(test_ids) + 1)
        if is_twin(config.seed, pid, config.twin_fraction)
    ]
    return manifest_record(config.seed, config.to_dict(), counts, twins)


def manifest_record(seed: int, config: dict, counts: dict, twins: list[list[int]]) -> dict:
    """dataset.json as the reader expects it (read_manifest): also written by the store-reid preset."""
    return {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "config": config,
        "counts": counts,
        "near_duplicate_pairs": twins,
        "timestamps": {"file": TIMESTAMPS, "columns": list(TIMESTAMP_COLUMNS), "camid": "0-based"},
    }


def timestamps_csv(specs: list[ImageSpec]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TIMESTAMP_COLUMNS)
    for spec in specs:
        writer.writerow((spec.file, spec.split, spec.pid, spec.camid, format_time(spec)))
    return buffer.getvalue()


def read_manifest(root: Path) -> dict | None:
    """dataset.json of a folder this generator wrote, or None if there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc})") from None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def _count_images(root: Path) -> int:
    return sum(
        1
        for folder in SPLIT_FOLDERS.values()
        if (root / folder).is_dir()
        for entry in os.scandir(root / folder)
        if entry.name.endswith(".jpg")
    )


def _check_existing(out: Path, config: SyntheticConfig, force: bool) -> bool:
    """True when `out` already holds exactly this dataset; raises if it holds something we must not touch."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder")
    entries = {entry.name for entry in os.scandir(out)}
    if not entries:
        return False
    existing = read_manifest(out)
    if existing is None:
        raise DatasetError(
            f"{out} is not empty and was not written by {GENERATOR} (no {MANIFEST}); choose an empty or new folder"
        )
    foreign = sorted(entries - OWN_ENTRIES)
    same_config = (
        existing.get("config") == config.to_dict() and existing.get("format_version") == FORMAT_VERSION
    )
    expected = existing.get("counts", {}).get("images")
    complete = same_config and expected == _count_images(out)
    if complete and not force:
        return True
    if not force:
        if same_config:
            raise DatasetError(
                f"{out} holds an incomplete copy of this dataset ({_count_images(out)} of "
                f"{expected} images); pass --force to regenerate it"
            )
        differing = sorted(k for k, v in config.to_dict().items() if existing.get("config", {}).get(k) != v)
        raise DatasetError(
            f"{out} holds a synthetic dataset made with a different config (differs in: "
            f"{', '.join(differing) or 'format version'}); pass --force to regenerate it"
        )
    if foreign:
        raise DatasetError(
            f"{out} also holds files {GENERATOR} did not write ({', '.join(foreign[:5])}); "
            "move them away before regenerating"
        )
    return False


def generate(
    config: SyntheticConfig,
    out: str | Path,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> GenerationResult:
    """Write the dataset described by `config` into `out` (see the module docstring).

    Skips the work when `out` already holds this exact dataset. Raises DatasetError when `out` holds
    anything else, unless `force` and the folder is one this generator wrote.
    """
    started = time.perf_counter()
    out = Path(out).expanduser()
    if _check_existing(out, config, force):
        logger.info("%s already holds this synthetic dataset; nothing to do (use --force to regenerate)", out)
        count = read_manifest(out)["counts"]["images"]  # type: ignore[index]
        return GenerationResult(out, count, True, time.perf_counter() - started)

    specs = plan_images(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.synth-staging"
    if staging.exists():
        if not (staging / STAGING_MARKER).exists():
            raise DatasetError(f"{staging} exists and was not made by {GENERATOR}; remove it")
        shutil.rmtree(staging)  # a run that was interrupted
    staging.mkdir()
    (staging / STAGING_MARKER).touch()
    for folder in SPLIT_FOLDERS.values():
        (staging / folder).mkdir()
    workers = usable_cpus() if workers is None else workers
    logger.info("rendering %d images with %d worker(s) into %s", len(specs), workers, out)
    _render_all(config, specs, staging, workers, progress)
    (staging / TIMESTAMPS).write_text(timestamps_csv(specs), encoding="utf-8")
    (staging / MANIFEST).write_text(json.dumps(manifest(config, specs), indent=2) + "\n", encoding="utf-8")
    (staging / STAGING_MARKER).unlink()

    if out.exists():  # empty, or a dataset of ours being replaced with force
        shutil.rmtree(out) if any(out.iterdir()) else out.rmdir()
    os.replace(staging, out)
    seconds = time.perf_counter() - started
    logger.info(
        "wrote %d images to %s in %.1f s (%.0f images/s)", len(specs), out, seconds, len(specs) / seconds
    )
    return GenerationResult(out, len(specs), False, seconds)
