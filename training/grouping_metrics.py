"""How a grouping of sightings into visitors compares with the known identities (footfall accuracy).

Pure functions over label arrays, beside the retrieval metrics (training.retrieval_metrics): the
footfall benchmark (bench/footfall.py) and the tests score the service's grouping rules
(service.footfall) with them; the service itself never needs them.

- ``pairwise_precision_recall``: over all pairs of sightings, precision and recall of "same visitor".
- ``count_error``: signed relative error of the number of visitors.
"""

from __future__ import annotations

import numpy as np


def pairwise_precision_recall(pred_labels: np.ndarray, true_labels: np.ndarray) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping.

    Over all pairs of items: precision = pairs grouped together that truly belong together / pairs
    grouped together; recall = the same / pairs that truly belong together. 1.0 when the denominator is 0.
    """
    pred = np.asarray(pred_labels).reshape(-1)
    true = np.asarray(true_labels).reshape(-1)
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predicted labels for {len(true)} true labels")
    _, pred_codes = np.unique(pred, return_inverse=True)
    _, true_codes = np.unique(true, return_inverse=True)
    _, joint = np.unique(np.stack([pred_codes, true_codes], axis=1), axis=0, return_counts=True)

    def pairs(counts: np.ndarray) -> float:
        counts = counts.astype(np.float64)
        return float((counts * (counts - 1) / 2).sum())

    together = pairs(joint)
    predicted = pairs(np.bincount(pred_codes))
    actual = pairs(np.bincount(true_codes))
    precision = together / predicted if predicted else 1.0
    recall = together / actual if actual else 1.0
    return precision, recall


def count_error(pred, true) -> float:
    """Signed relative error of the visitor count: (predicted - true) / true.

    ``pred`` / ``true`` are label arrays (their number of distinct labels is counted) or counts.
    """
    predicted = _count(pred)
    actual = _count(true)
    if actual == 0:
        raise ValueError("the true visitor count is 0: relative error undefined")
    return (predicted - actual) / actual


def _count(value) -> int:
    if np.ndim(value) == 0:
        return int(value)
    return int(np.unique(np.asarray(value)).size)
