"""CUHK03 (Li et al., CVPR 2014) as the official RGA code prepares it, with the 767/700 new protocol.

Layout (the root may also be a parent holding `cuhk03/`):

    cuhk03_release/cuhk-03.mat                  MATLAB v7.3 (HDF5): cell arrays `labeled`, `detected`
    cuhk03_new_protocol_config_labeled.mat      MATLAB v5: train_idx, query_idx, gallery_idx (1-based),
    cuhk03_new_protocol_config_detected.mat     labels, filelist (image names), camId
    (the config files may also sit inside cuhk03_release/)

`labeled` / `detected` hold one cell per camera pair (5); each pair is a (persons x 10) cell of
images, the first 5 from view 1 and the last 5 from view 2, some empty. Images are extracted once
as PNG into a cache folder (default `<root>/images_<split>`, the official code's folder, so an
existing extraction is reused) named `<pair>_<person:03d>_<view>_<image:02d>.png`, the names the
config's filelist uses. The camera id is the view (0 or 1 after making it 0-based).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from training.datasets.base import DatasetError, ImageRecord, ReIDDataset, relabel_train

logger = logging.getLogger(__name__)

NAME = "cuhk03"
SPLITS = ("labeled", "detected")
RAW_MAT = "cuhk03_release/cuhk-03.mat"
CONFIG_KEYS = ("train_idx", "query_idx", "gallery_idx", "labels", "filelist")
IMAGES_PER_PERSON = 10  # per camera pair: 5 per view
_FILE_PATTERN = re.compile(r"^(\d+)_(\d{3})_([12])_(\d{2})\.png$")


def config_name(split: str) -> str:
    return f"cuhk03_new_protocol_config_{split}.mat"


def image_name(pair: int, person: int, image: int) -> str:
    """0-based camera pair, person within the pair and image slot (0..9) -> `1_001_1_01.png`."""
    view = 1 if image < IMAGES_PER_PERSON // 2 else 2
    return f"{pair + 1}_{person + 1:03d}_{view}_{image + 1:02d}.png"


def _find_root(root: Path, split: str) -> tuple[Path, Path]:
    if not root.exists():
        raise DatasetError(f"{NAME}: dataset root {root} does not exist")
    for base in (root, root / "cuhk03"):
        if (base / RAW_MAT).is_file():
            for config in (base / config_name(split), base / "cuhk03_release" / config_name(split)):
                if config.is_file():
                    return base, config
            raise DatasetError(
                f"{NAME}: {base} has {RAW_MAT} but not {config_name(split)} (looked in {base} and "
                f"{base / 'cuhk03_release'})"
            )
    raise DatasetError(f"{NAME}: {root} is missing {RAW_MAT} (also looked in {root / 'cuhk03'})")


def _load_config(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        raw = loadmat(str(path))
    except NotImplementedError:
        raise DatasetError(
            f"{NAME}: {path} is a MATLAB v7.3 file; the protocol config must be MATLAB v5"
        ) from None
    except Exception as exc:  # scipy raises assorted errors on a corrupt file
        raise DatasetError(f"{NAME}: {path} is not a readable MATLAB file ({exc})") from None
    missing = [k for k in CONFIG_KEYS if k not in raw]
    if missing:
        raise DatasetError(f"{NAME}: {path} lacks {', '.join(missing)}")
    config = {k: np.asarray(raw[k]).ravel() for k in CONFIG_KEYS}
    config["filelist"] = np.array([_cell_string(item) for item in config["filelist"]], dtype=object)
    n = len(config["filelist"])
    if len(config["labels"]) != n:
        raise DatasetError(f"{NAME}: {path}: labels has {len(config['labels'])} entries, filelist {n}")
    for key in ("train_idx", "query_idx", "gallery_idx"):
        idx = config[key].astype(np.int64)
        if idx.size == 0:
            raise DatasetError(f"{NAME}: {path}: {key} is empty")
        if idx.min() < 1 or idx.max() > n:
            raise DatasetError(f"{NAME}: {path}: {key} holds indices outside 1..{n} (it is 1-based)")
        config[key] = idx - 1
    return config


def _cell_string(item: object) -> str:
    """A MATLAB cell entry as loadmat returns it (nested arrays of str) -> str."""
    while isinstance(item, np.ndarray):
        if item.size != 1:
            raise DatasetError(f"{NAME}: filelist entry {item!r} is not a single file name")
        item = item.ravel()[0]
    return str(item)


def extract_images(raw_mat: Path, split: str, out_dir: Path) -> int:
    """Write every image of the `labeled` or `detected` cell array of cuhk-03.mat as PNG into `out_dir`.

    Each file is written under a temporary name and renamed, so an interrupted run never leaves a
    truncated image that looks complete. Returns the number of images written.
    """
    import h5py

    try:
        mat = h5py.File(raw_mat, "r")
    except OSError as exc:
        raise DatasetError(f"{NAME}: {raw_mat} is not a MATLAB v7.3 (HDF5) file ({exc})") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        mat.close()
        raise DatasetError(
            f"{NAME}: cannot create the image cache {out_dir} ({exc}); pass cache_dir="
        ) from None
    written = 0
    with mat:
        if split not in mat:
            raise DatasetError(
                f"{NAME}: {raw_mat} has no '{split}' cell array (it holds {', '.join(mat.keys())})"
            )
        pair_refs = np.asarray(mat[split]).ravel()
        for pair, pair_ref in enumerate(pair_refs):
            # MATLAB stores arrays column-major, so h5py sees them transposed: (10, persons) here
            cells = np.asarray(mat[pair_ref]).T
            if cells.ndim != 2 or cells.shape[1] != IMAGES_PER_PERSON:
                raise DatasetError(
                    f"{NAME}: {raw_mat}: {split} camera pair {pair + 1} is a {cells.shape} cell, "
                    f"expected (persons, {IMAGES_PER_PERSON})"
                )
            for person in range(cells.shape[0]):
                for image in range(IMAGES_PER_PERSON):
                    pixels = np.asarray(mat[cells[person, image]]).T  # (3, W, H) stored -> (H, W, 3)
                    if pixels.ndim != 3 or pixels.size == 0:
                        continue  # an empty cell: this person has fewer images in that view
                    target = out_dir / image_name(pair, person, image)
                    partial = target.with_name(target.name + ".partial")
                    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(partial, format="PNG")
                    os.replace(partial, target)
                    written += 1
    logger.info("%s: extracted %d %s images into %s", NAME, written, split, out_dir)
    return written


def _records(
    config: dict[str, np.ndarray], key: str, image_dir: Path, config_path: Path
) -> list[ImageRecord]:
    records = []
    for index in config[key]:
        name = config["filelist"][index]
        match = _FILE_PATTERN.match(name)
        if match is None:
            raise DatasetError(
                f"{NAME}: {config_path}: filelist entry {name!r} does not look like <pair>_<person>_<view>_<image>.png"
            )
        view = int(match.group(3))
        records.append(ImageRecord(path=image_dir / name, pid=int(config["labels"][index]), camid=view - 1))
    return records


def read_cuhk03(root: str | Path, split: str = "labeled", cache_dir: str | Path | None = None) -> ReIDDataset:
    """Read CUHK03 (`labeled` or `detected`) under the new protocol, extracting images on first use."""
    if split not in SPLITS:
        raise DatasetError(f"{NAME}: split must be one of {', '.join(SPLITS)}, not {split!r}")
    base, config_path = _find_root(Path(root).expanduser(), split)
    config = _load_config(config_path)
    image_dir = Path(cache_dir).expanduser() if cache_dir is not None else base / f"images_{split}"
    train = _records(config, "train_idx", image_dir, config_path)
    query = _records(config, "query_idx", image_dir, config_path)
    gallery = _records(config, "gallery_idx", image_dir, config_path)
    needed = {r.path.name for r in (*train, *query, *gallery)}
    absent = [n for n in needed if not (image_dir / n).is_file()]
    if absent:
        logger.info("%s: %d images not in %s yet; extracting from %s", NAME, len(absent), image_dir, RAW_MAT)
        extract_images(base / RAW_MAT, split, image_dir)
        still = sorted(n for n in absent if not (image_dir / n).is_file())
        if still:
            raise DatasetError(
                f"{NAME}: {config_path.name} names {len(still)} images that {RAW_MAT} does not hold "
                f"(first: {', '.join(still[:3])})"
            )
    return ReIDDataset(
        NAME, base, relabel_train(train), query, gallery, info={"split": split, "image_dir": str(image_dir)}
    )
