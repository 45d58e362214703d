"""Re-ID crops cut from rendered store scenes: `reid synth --preset store-reid`.

The `market` preset draws each person alone on a plain background at 128x64. What a store's gallery holds
is different: people 60-200 px tall cut out of a camera frame, with the floor, counters, pillars and
other people around them, light drifting and sensor noise, boxes that are not exact. A model trained
only on the first sees every store crop as alike (docs/video.md, "Unique visitors over all cameras").
This preset renders the `store-video` scenes (training/datasets/synthetic/video.py) frame by frame,
never writing the videos, and cuts each visible person's ground-truth box the way the ingest does
(video/crops.py: the same context padding), moved and resized a little as a detector's box would be.

    <out>/bounding_box_train/ query/ bounding_box_test/   JPEG crops, Market-style names
    <out>/timestamps.csv    file,split,pid,camid,captured_at
    <out>/dataset.json      generator, config, counts, near-duplicate pairs (the `reid synth` reader reads it)

Identities and cameras never repeat across scenes: scene k's person p is pid k * visitors + p, its
camera c is camid k * cameras + c. Training scenes and test scenes are disjoint, and all use scene
seeds from STORE_SEED_BASE up, so none shares people with the `store-video` scenes a benchmark renders
(seeds below it). The test split has, per pass of a person across a camera, one query crop (the middle
sample) and up to `gallery_per_pass` gallery crops of the other samples.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from model.device import usable_cpus
from training.datasets.base import DatasetError
from training.datasets.synthetic.appearance import is_twin
from training.datasets.synthetic.generate import (
    GENERATOR,
    MANIFEST,
    TIMESTAMP_COLUMNS,
    TIMESTAMPS,
    format_time,
    manifest_record,
)
from training.datasets.synthetic.plan import SPLIT_FOLDERS
from training.datasets.synthetic.render import encode_jpeg
from training.datasets.synthetic.video import render_frame
from training.datasets.synthetic.video_plan import VideoSceneConfig, plan_passes
from video.crops import CropPolicy, cut

logger = logging.getLogger(__name__)

STORE_SEED_BASE = 1_000_000  # scene seeds of this preset: far above any benchmark's --seed
STAGING_MARKER = ".reid-synth-staging"
CROP_SIZE = (128, 64)  # height, width of the written crops (the market preset's size)


@dataclass(frozen=True)
class StoreCropsConfig:
    """Which scenes, how often a person is sampled, and which crops are kept."""

    preset: str = "store-reid"
    seed: int = 0
    scene: str = "store-video"  # the video preset whose scenes are rendered
    train_scenes: int = 60
    test_scenes: int = 6
    every: int = 5  # sample every n-th frame (10 fps scenes: two samples a second)
    min_height: float = 40.0  # pixels; smaller boxes are not worth a crop
    min_visibility: float = 0.6  # share of the body not hidden by the border, a pillar or another person
    jitter: float = 0.08  # box edges moved by up to this share of the box's size
    gallery_per_pass: int = 4

    def __post_init__(self) -> None:
        problems = []
        if self.train_scenes < 1 or self.test_scenes < 1:
            problems.append("train_scenes and test_scenes must be >= 1")
        if self.every < 1 or self.gallery_per_pass < 1:
            problems.append("every and gallery_per_pass must be >= 1")
        if not (0 <= self.min_visibility <= 1 and 0 <= self.jitter < 0.5):
            problems.append("min_visibility must be in [0, 1] and jitter in [0, 0.5)")
        if problems:
            raise DatasetError("; ".join(problems))

    def scene_config(self, index: int) -> VideoSceneConfig:
        """Scene `index` (training scenes first, then test scenes)."""
        return VideoSceneConfig.from_preset(self.scene, seed=STORE_SEED_BASE + self.seed * 1000 + index)

    @property
    def num_scenes(self) -> int:
        return self.train_scenes + self.test_scenes

    def to_dict(self) -> dict:
        scene = self.scene_config(0)
        return dataclasses.asdict(self) | {"num_cameras": self.num_scenes * scene.num_cameras}


STORE_CROP_PRESETS = {
    "store-reid": StoreCropsConfig(),
    # two scenes of the small video preset: for tests on 2 CPU cores
    "store-reid-small": StoreCropsConfig(
        preset="store-reid-small", scene="store-video-small", train_scenes=1, test_scenes=1, every=4
    ),
}


@dataclass(frozen=True)
class _Crop:
    file: str
    split: str
    pid: int
    camid: int
    captured_at: datetime


def _jittered(box: tuple[float, float, float, float], rng: np.random.Generator, share: float):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx0, dx1 = rng.uniform(-share, share, 2) * w
    dy0, dy1 = rng.uniform(-share, share, 2) * h
    return x0 + dx0, y0 + dy0, x1 + dx1, y1 + dy1


def _cut(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """The ingest's crop of `box` (video/crops.py: the same context padding), resized to CROP_SIZE."""
    from PIL import Image

    pixels = cut(image, np.asarray(box), CropPolicy().padding)
    if pixels.shape[0] < 8 or pixels.shape[1] < 4:
        return None
    return np.asarray(Image.fromarray(pixels).resize((CROP_SIZE[1], CROP_SIZE[0]), Image.BILINEAR))


def scene_samples(
    scene: VideoSceneConfig,
    *,
    every: int,
    min_height: float,
    min_visibility: float,
    jitter: float,
    rng: np.random.Generator,
) -> dict[tuple[int, int], list[tuple[int, int, np.ndarray]]]:
    """Crops of every visible person in every `every`-th frame of `scene`, by (camera, track id): lists of
    (frame, identity, 128x64 RGB pixels) in frame order. Rendered with numpy alone (no video, no OpenCV)."""
    passes = plan_passes(scene)
    samples: dict[tuple[int, int], list[tuple[int, int, np.ndarray]]] = {}
    for camera in range(scene.num_cameras):
        for frame in range(0, scene.num_frames, every):
            image, rows = render_frame(scene, camera, frame, passes)
            for row in rows:
                box = (row["x0"], row["y0"], row["x1"], row["y1"])
                if row["visibility"] < min_visibility or box[3] - box[1] < min_height:
                    continue
                pixels = _cut(image, _jittered(box, rng, jitter))
                if pixels is not None:
                    samples.setdefault((camera, row["track_id"]), []).append((frame, row["pid"], pixels))
    return samples


def _scene_crops(config: StoreCropsConfig, index: int, staging: Path) -> tuple[list[_Crop], list[list[int]]]:
    """Render scene `index`, write its crops into `staging`; (crops, near-duplicate pid pairs)."""
    scene = config.scene_config(index)
    split = "train" if index < config.train_scenes else "test"
    start = datetime.fromisoformat(scene.start)
    samples = scene_samples(
        scene,
        every=config.every,
        min_height=config.min_height,
        min_visibility=config.min_visibility,
        jitter=config.jitter,
        rng=np.random.default_rng([scene.seed, 31]),
    )
    crops: list[_Crop] = []
    for (camera, track), sampled in sorted(samples.items()):
        pid = index * scene.num_visitors + sampled[0][1]
        taken = [(frame, pixels) for frame, _, pixels in sampled]
        camid = index * scene.num_cameras + camera
        if split == "train":
            chosen = [("train", frame, pixels) for frame, pixels in taken]
        else:
            middle = len(taken) // 2
            rest = [t for i, t in enumerate(taken) if i != middle]
            keep = (
                np.linspace(0, len(rest) - 1, num=min(config.gallery_per_pass, len(rest))).round().astype(int)
            )
            chosen = [("query", *taken[middle])] + [("gallery", *rest[i]) for i in sorted(set(keep.tolist()))]
        for part, frame, pixels in chosen:
            name = f"{pid:04d}_c{camid + 1}s1_{frame:06d}_{track % 100:02d}.jpg"
            file = f"{SPLIT_FOLDERS[part]}/{name}"
            (staging / file).write_bytes(encode_jpeg(pixels))
            crops.append(_Crop(file, part, pid, camid, start + timedelta(seconds=frame / scene.fps)))
    twins = [
        [index * scene.num_visitors + p - 1, index * scene.num_visitors + p]
        for p in range(2, scene.num_visitors + 1)
        if is_twin(scene.seed, p, scene.twin_fraction)
    ]
    return crops, twins


def _existing(out: Path, config: StoreCropsConfig, force: bool) -> bool:
    """True when `out` already holds this dataset; raises when it holds something else (unless `force`)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    path = out / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("generator") != GENERATOR:
        raise DatasetError(
            f"{out} is not empty and was not written by {GENERATOR}; choose an empty or new folder"
        )
    if data.get("config") == config.to_dict() and not force:
        return True
    if not force:
        raise DatasetError(
            f"{out} holds a synthetic dataset made with another config; pass --force to replace it"
        )
    return False


def _scene_job(job: tuple[StoreCropsConfig, int, Path]) -> tuple[list[_Crop], list[list[int]]]:
    return _scene_crops(*job)


def generate_store_crops(
    config: StoreCropsConfig, out: str | Path, *, force: bool = False, workers: int | None = None
) -> Path:
    """Write the dataset into `out` (built in a staging folder, moved into place whole); scenes are rendered
    by `workers` processes (default: the usable cores), with the same files whatever their number."""
    out = Path(out).expanduser()
    if _existing(out, config, force):
        logger.info("%s already holds this store crop dataset; kept", out)
        return out
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.synth-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / STAGING_MARKER).touch()
    for folder in SPLIT_FOLDERS.values():
        (staging / folder).mkdir()
    crops: list[_Crop] = []
    twins: list[list[int]] = []
    workers = max(1, min(usable_cpus() if workers is None else workers, config.num_scenes))
    logger.info("rendering %d scenes with %d worker(s) into %s", config.num_scenes, workers, out)
    jobs = [(config, index, staging) for index in range(config.num_scenes)]
    if workers == 1:
        results = map(_scene_job, jobs)
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_scene_job, jobs)  # in scene order: the same files as one worker writes
    try:
        for index, (scene_crops, scene_twins) in enumerate(results):
            crops += scene_crops
            twins += scene_twins
            logger.info("scene %d of %d: %d crops", index + 1, config.num_scenes, len(scene_crops))
    finally:
        if workers > 1:
            pool.terminate()
    lines = [",".join(TIMESTAMP_COLUMNS)]
    for c in crops:
        lines.append(f"{c.file},{c.split},{c.pid},{c.camid},{format_time(c)}")
    (staging / TIMESTAMPS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = {split: sum(c.split == split for c in crops) for split in SPLIT_FOLDERS}
    counts |= {
        "images": len(crops),
        "train_ids": len({c.pid for c in crops if c.split == "train"}),
        "test_ids": len({c.pid for c in crops if c.split != "train"}),
    }
    manifest = manifest_record(config.seed, config.to_dict(), counts, twins)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (staging / STAGING_MARKER).unlink()
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    logger.info(
        "wrote %d crops of %d training and %d test identities to %s in %.1f s",
        len(crops),
        counts["train_ids"],
        counts["test_ids"],
        out,
        time.perf_counter() - started,
    )
    return out
