"""One top-k helper for every exact scan: merge scored candidates into the best k, best first.

Ties are broken by the smaller id, so exact answers are deterministic whatever the storage order.
Missing entries (fewer than k candidates) are id -1 with score -inf.
"""

from __future__ import annotations

import numpy as np


def empty(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)


def pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad (q, m <= k) results to k columns; entries with id -1 get score -inf."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    scores = np.where(ids < 0, np.float32(-np.inf), scores)
    return scores, ids


def best_k(
    scores: np.ndarray, ids: np.ndarray, k: int, *, ordered: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row of scores (q, n) with their ids ((n,) shared by all rows, or (q, n)).

    Returns (q, min(k, n)) arrays, best first (ties: smaller id first) unless ``ordered`` is False.
    """
    q, n = scores.shape
    if ids.ndim == 1:
        ids = np.broadcast_to(ids, (q, n))
    kk = min(k, n)
    if kk < n:
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        scores = np.take_along_axis(scores, top, axis=1)
        ids = np.take_along_axis(ids, top, axis=1)
    if ordered and scores.size:
        order = np.lexsort((ids, -scores), axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    return scores, ids


class TopK:
    """A running top-k over candidate chunks: ``push`` each (scores (q, m), ids) chunk, then ``result``."""

    def __init__(self, q: int, k: int) -> None:
        self.k = k
        self.scores = np.full((q, 0), -np.inf, dtype=np.float32)
        self.ids = np.empty((q, 0), dtype=np.int64)

    def push(self, scores: np.ndarray, ids: np.ndarray) -> None:
        q = len(scores)
        if ids.ndim == 1:
            ids = np.broadcast_to(ids, (q, ids.size))
        merged_scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)], axis=1)
        merged_ids = np.concatenate([self.ids, ids], axis=1)
        self.scores, self.ids = best_k(merged_scores, merged_ids, self.k, ordered=False)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = best_k(self.scores, self.ids, self.k)
        return pad(scores, ids, self.k)


def topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one scored block, best first, padded to k columns."""
    best_scores, best_ids = best_k(scores, ids, k)
    return pad(best_scores, best_ids, k)
