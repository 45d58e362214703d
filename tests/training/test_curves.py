"""training/curves.py: log.jsonl -> curves.png (loss, accuracy, mAP per epoch)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from training.curves import plot_curves, read_log, write_curves


def _write_log(path, records, broken_line=False):
    lines = [json.dumps(r) for r in records]
    if broken_line:
        lines.append('{"kind": "epoch", "ste')  # a line cut by a crash
    path.write_text("\n".join(lines) + "\n")


EPOCHS = [
    {"kind": "iter", "step": 1, "epoch": 0, "loss": 5.0},
    {
        "kind": "epoch",
        "step": 4,
        "epoch": 0,
        "loss": 4.0,
        "cross_entropy": 3.0,
        "triplet": 1.0,
        "accuracy": 0.1,
    },
    {
        "kind": "epoch",
        "step": 8,
        "epoch": 1,
        "loss": 3.0,
        "cross_entropy": 2.2,
        "triplet": 0.8,
        "accuracy": 0.3,
    },
    {
        "kind": "eval",
        "step": 8,
        "epoch": 2,
        "mAP": 0.25,
        "rank1": 0.4,
        "rank5": 0.6,
        "rank10": 0.7,
        "mINP": 0.1,
    },
    {
        "kind": "epoch",
        "step": 12,
        "epoch": 2,
        "loss": 2.5,
        "cross_entropy": 1.9,
        "triplet": 0.6,
        "accuracy": 0.5,
    },
]


def test_read_log_groups_by_kind_and_skips_a_cut_line(tmp_path):
    _write_log(tmp_path / "log.jsonl", EPOCHS, broken_line=True)
    records = read_log(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in records["epoch"]] == [0, 1, 2]
    assert [r["mAP"] for r in records["eval"]] == [0.25]
    assert len(records["iter"]) == 1


def _panels(path):
    image = np.asarray(Image.open(path).convert("L"), dtype=np.int16)
    thirds = np.array_split(image, 3, axis=1)
    return image.shape, [int((t < 200).sum()) for t in thirds]


def test_curves_png_has_three_drawn_panels(tmp_path):
    _write_log(tmp_path / "log.jsonl", EPOCHS)
    path = write_curves(tmp_path)
    assert path == tmp_path / "curves.png"
    shape, inked = _panels(path)
    assert shape == (400, 1300) and all(n > 500 for n in inked)
    # different numbers draw a different picture
    other = [dict(r, loss=r.get("loss", 0) * 3, mAP=0.9) if r["kind"] != "iter" else r for r in EPOCHS]
    _write_log(tmp_path / "other.jsonl", other)
    plot_curves(tmp_path / "other.jsonl", tmp_path / "other.png")
    assert not np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "other.png")))


def test_a_run_shorter_than_an_epoch_is_plotted_per_step(tmp_path):
    steps = [
        {"kind": "iter", "step": s, "epoch": 0, "loss": 6 - s, "accuracy": 0.01 * s} for s in range(1, 6)
    ]
    _write_log(tmp_path / "log.jsonl", steps)
    path = plot_curves(tmp_path / "log.jsonl", tmp_path / "curves.png")
    shape, inked = _panels(path)
    assert all(n > 500 for n in inked)


def test_no_log_no_picture(tmp_path):
    assert write_curves(tmp_path) is None
    assert not (tmp_path / "curves.png").exists()
