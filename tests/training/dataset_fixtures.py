"""Tiny datasets written in the real on-disk layouts, for the reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (8, 4)) -> Path:
    """A tiny real JPEG/PNG (by suffix) at `path`; size is (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_bbox_layout(root: Path, files: dict[str, list[str]]) -> Path:
    """files: {"bounding_box_train": [names], "query": [...], "bounding_box_test": [...]}."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(names):
            write_image(root / folder / name, seed=index)
    return root


MARKET_FILES = {
    "bounding_box_train": [
        "0002_c1s1_000451_00.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c3s1_000551_00.jpg",
        "0007_c6s2_009551_00.jpg",
        "0010_c1s1_002051_02.jpg",
    ],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c4s2_033621_00.jpg"],
    "bounding_box_test": [
        "0001_c2s1_000976_01.jpg",
        "0003_c5s3_015240_00.jpg",
        "0000_c1s1_000151_01.jpg",  # distractor: kept in the gallery
        "-1_c1s1_000401_03.jpg",  # junk: dropped
        "-1_c3s1_000551_05.jpg",
    ],
}

DUKE_FILES = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0005_c8_f0103287.jpg"],
    "query": ["0005_c2_f0047107.jpg"],
    "bounding_box_test": ["0005_c7_f0105014.jpg", "0019_c1_f0056712.jpg"],
}

CUHK03NP_FILES = {
    "bounding_box_train": ["0001_c1_1.png", "0001_c2_2.png", "0003_c1_1.png", "0003_c2_1.png"],
    "query": ["0002_c1_1.png", "0002_c2_1.png"],
    "bounding_box_test": ["0002_c1_2.png", "0002_c2_3.png", "0004_c1_1.png"],
}


def write_msmt17(root: Path, version: str = "MSMT17_V1") -> Path:
    """An MSMT17 folder (`root/<version>`) with list files in the real `<path> <pid>` format."""
    base = root / version
    train_dir, test_dir = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2", "mask_test_v2")
    lists = {
        "list_train.txt": (
            train_dir,
            [
                ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
                ("0000/0000_001_05_0303morning_0036_1.jpg", 0),
                ("0004/0004_000_12_0303noon_0900_0.jpg", 4),
            ],
        ),
        "list_val.txt": (train_dir, [("0002/0002_000_15_0303afternoon_1103_1.jpg", 2)]),
        "list_query.txt": (test_dir, [("0000/0000_000_03_0303morning_0036_0.jpg", 0)]),
        "list_gallery.txt": (
            test_dir,
            [("0000/0000_003_11_0303afternoon_0821_0.jpg", 0), ("0001/0001_000_07_0303noon_1105_2.jpg", 1)],
        ),
    }
    for list_name, (folder, entries) in lists.items():
        for index, (relative, _) in enumerate(entries):
            write_image(base / folder / relative, seed=index)
        (base / list_name).parent.mkdir(parents=True, exist_ok=True)
        (base / list_name).write_text("".join(f"{rel} {pid}\n" for rel, pid in entries))
    return base


# CUHK03: 2 camera pairs x 3 persons; the number of images each person has in view 1 / view 2
CUHK03_PERSONS = {
    (0, 0): (2, 2),
    (0, 1): (3, 1),
    (0, 2): (1, 2),
    (1, 0): (2, 2),
    (1, 1): (1, 1),
    (1, 2): (2, 3),
}
CUHK03_IMAGE_SIZE = (10, 6)  # height, width: not square, so a transposition error shows


def cuhk03_pixels(split: str, pair: int, person: int, slot: int) -> np.ndarray:
    """The (H, W, 3) uint8 image stored for one cell, distinct for every cell and split."""
    seed = [0 if split == "labeled" else 1, pair, person, slot]
    return np.random.default_rng(seed).integers(0, 256, (*CUHK03_IMAGE_SIZE, 3), dtype=np.uint8)


def write_cuhk03_mat(path: Path) -> Path:
    """A cuhk-03.mat in the MATLAB v7.3 layout: `labeled` / `detected` are 1 x pairs cells of
    references to (10 x persons as stored) cells of references to images stored transposed (3, W, H);
    empty cells are MATLAB empties (a uint64 [0, 0] dataset)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = 1 + max(pair for pair, _ in CUHK03_PERSONS)
    persons = 1 + max(person for _, person in CUHK03_PERSONS)
    with h5py.File(path, "w") as mat:
        store = mat.create_group("#refs#")
        counter = iter(range(10**6))

        def put(data: np.ndarray) -> h5py.Reference:
            return store.create_dataset(f"r{next(counter)}", data=data).ref

        for split in ("labeled", "detected"):
            pair_refs = []
            for pair in range(pairs):
                cells = np.empty((persons, 10), dtype=h5py.ref_dtype)
                for person in range(persons):
                    view1, view2 = CUHK03_PERSONS[(pair, person)]
                    for slot in range(10):
                        present = slot < view1 if slot < 5 else slot - 5 < view2
                        if present:
                            cells[person, slot] = put(cuhk03_pixels(split, pair, person, slot).T)
                        else:
                            cells[person, slot] = put(np.zeros(2, dtype=np.uint64))
                pair_refs.append(put(cells.T))
            refs = np.empty((1, pairs), dtype=h5py.ref_dtype)
            refs[0, :] = pair_refs
            mat.create_dataset(split, data=refs)
    return path


def cuhk03_names(pair: int, person: int) -> list[str]:
    view1, view2 = CUHK03_PERSONS[(pair, person)]
    slots = list(range(view1)) + [5 + i for i in range(view2)]
    return [f"{pair + 1}_{person + 1:03d}_{1 if s < 5 else 2}_{s + 1:02d}.png" for s in slots]


def write_cuhk03_config(
    path: Path,
    train_persons: list[tuple[int, int]],
    test_persons: list[tuple[int, int]],
    extra_names: list[str] = (),
    drop: tuple[str, ...] = (),
) -> dict:
    """A cuhk03_new_protocol_config_*.mat (MATLAB v5) as scipy.io.savemat writes it: filelist a cell
    of names, labels / indices (1-based) as column vectors. Test persons give the first image of each
    view as queries. Returns {"train": names, "query": names, "gallery": names, "labels": {name: label}}."""
    from scipy.io import savemat

    filelist, labels, cams = [], [], []
    split = {"train": [], "query": [], "gallery": []}
    for label, key in enumerate(sorted(CUHK03_PERSONS), start=1):
        names = cuhk03_names(*key)
        for name in names:
            index = len(filelist) + 1
            filelist.append(name)
            labels.append(label)
            cams.append(int(name.split("_")[2]))
            if key in train_persons:
                split["train"].append(index)
            elif key in test_persons:
                first_of_view = name == next(n for n in names if n.split("_")[2] == name.split("_")[2])
                split["query" if first_of_view else "gallery"].append(index)
    for name in extra_names:
        filelist.append(name)
        labels.append(99)
        cams.append(1)
        split["gallery"].append(len(filelist))
    content = {
        "filelist": np.array(filelist, dtype=object).reshape(-1, 1),
        "labels": np.array(labels, dtype=np.float64).reshape(-1, 1),
        "camId": np.array(cams, dtype=np.float64).reshape(-1, 1),
        "train_idx": np.array(split["train"], dtype=np.float64).reshape(-1, 1),
        "query_idx": np.array(split["query"], dtype=np.float64).reshape(-1, 1),
        "gallery_idx": np.array(split["gallery"], dtype=np.float64).reshape(-1, 1),
    }
    for key in drop:
        del content[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), content)
    return {key: [filelist[i - 1] for i in split[key]] for key in split} | {
        "labels": dict(zip(filelist, labels, strict=True))
    }
