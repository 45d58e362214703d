"""Scores of tracks against ground truth, per camera: motmetrics for MOTA / IDF1 / recall / identity
switches / fragmentations, and the unique-visitor count error.

Ground truth is what `reid synth --preset store-video` writes (boxes.csv, ground_truth.json); tracks
are what `reid ingest-video --dry-run` writes (tracks.jsonl) or the pipeline returns. Only frames
the pipeline processed are scored (frame skipping would otherwise count as misses).

motmetrics' own IoU helper uses an API numpy 2 removed (`np.asfarray`), so the IoU distance matrix
is computed here and handed to its accumulator.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from video.errors import VideoError


@dataclass(frozen=True)
class TrackBox:
    frame: int
    track_id: int
    box: tuple[float, float, float, float]


def iou_distance(truth: np.ndarray, predicted: np.ndarray, max_distance: float = 0.5) -> np.ndarray:
    """(N, M) 1 - IoU of xyxy boxes; pairs with 1 - IoU > max_distance are NaN (may not match)."""
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    predicted = np.asarray(predicted, np.float64).reshape(-1, 4)
    if len(truth) == 0 or len(predicted) == 0:
        return np.empty((len(truth), len(predicted)))
    x0 = np.maximum(truth[:, None, 0], predicted[None, :, 0])
    y0 = np.maximum(truth[:, None, 1], predicted[None, :, 1])
    x1 = np.minimum(truth[:, None, 2], predicted[None, :, 2])
    y1 = np.minimum(truth[:, None, 3], predicted[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_t = (truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])
    area_p = (predicted[:, 2] - predicted[:, 0]) * (predicted[:, 3] - predicted[:, 1])
    distance = 1.0 - inter / np.maximum(area_t[:, None] + area_p[None, :] - inter, 1e-9)
    distance[distance > max_distance] = np.nan
    return distance


def read_truth_boxes(root: str | Path, camera_id: str, min_visibility: float = 0.0) -> list[TrackBox]:
    path = Path(root) / "boxes.csv"
    if not path.is_file():
        raise VideoError(f"{path}: no such file (ground truth from `reid synth --preset store-video`)")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["camera_id"] != camera_id or float(row["visibility"]) < min_visibility:
                continue
            box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            rows.append(TrackBox(int(row["frame"]), int(row["track_id"]), box))  # type: ignore[arg-type]
    return rows


def read_truth(root: str | Path) -> dict:
    path = Path(root) / "ground_truth.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VideoError(f"{path}: cannot read ground truth ({exc})") from exc


def score_tracks(
    truth: Iterable[TrackBox],
    predicted: Iterable[TrackBox],
    frames: Iterable[int],
    iou_threshold: float = 0.5,
) -> dict:
    """MOT scores over `frames` (the processed ones): mota, idf1, recall, precision, switches,
    fragmentations, mostly tracked / lost, and the number of true / predicted tracks."""
    import motmetrics as mm

    by_frame_t: Mapping[int, list[TrackBox]] = defaultdict(list)
    by_frame_p: Mapping[int, list[TrackBox]] = defaultdict(list)
    for row in truth:
        by_frame_t[row.frame].append(row)
    for row in predicted:
        by_frame_p[row.frame].append(row)
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(set(frames)):
        t, p = by_frame_t.get(frame, []), by_frame_p.get(frame, [])
        accumulator.update(
            [r.track_id for r in t],
            [r.track_id for r in p],
            iou_distance([r.box for r in t], [r.box for r in p], 1.0 - iou_threshold),
            frameid=frame,
        )
    names = [
        "mota",
        "idf1",
        "recall",
        "precision",
        "num_switches",
        "num_fragmentations",
        "mostly_tracked",
        "mostly_lost",
        "num_unique_objects",
    ]
    summary = mm.metrics.create().compute(accumulator, metrics=names, name="camera")
    row = summary.loc["camera"]
    return {
        "mota": float(row["mota"]),
        "idf1": float(row["idf1"]),
        "recall": float(row["recall"]),
        "precision": float(row["precision"]),
        "id_switches": int(row["num_switches"]),
        "fragmentations": int(row["num_fragmentations"]),
        "mostly_tracked": int(row["mostly_tracked"]),
        "mostly_lost": int(row["mostly_lost"]),
        "true_tracks": int(row["num_unique_objects"]),
        "predicted_tracks": len({r.track_id for rows in by_frame_p.values() for r in rows}),
    }


def count_error(predicted: int, truth: int) -> float:
    """Relative error of a visitor count: (predicted - truth) / truth (0 when both are 0)."""
    if truth == 0:
        return 0.0 if predicted == 0 else float("inf")
    return (predicted - truth) / truth
