"""Retrieval (ranking) metrics for re-ID: CMC, mAP and mINP from a query x gallery distance matrix.

Protocol (Market-1501 / CUHK03 / the official RGA evaluation): for each query, gallery entries with the
same identity AND the same camera as the query are removed; a query left with no gallery entry of its
identity is skipped (counted in ``num_skipped_queries``) and the means run over the remaining queries.

Ranking and ties:
- mAP: each query's AP is what ``sklearn.metrics.average_precision_score(y_true, -distance)`` returns
  over its valid gallery entries (the official code calls sklearn). sklearn treats entries with equal
  scores as one block: every positive in a block of tied distances gets the precision measured at the end
  of the block, i.e. AP = sum over distinct distances d of (positives at d / all positives) *
  (positives with distance <= d / entries with distance <= d). The order within a tie does not matter.
- CMC (first-match break) and mINP use one ranking, sorted by distance with ties kept in gallery order
  (stable sort). The official code's ``np.argsort`` leaves the order of ties unspecified.
- mINP (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", the AGW baseline):
  per query, INP = (number of positives) / (rank of the last positive), mean over queries.

Everything is vectorised with NumPy and processed in chunks of queries, so memory stays at about
``80 bytes * chunk_size * num_gallery`` whatever the number of queries.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from model.errors import ReidError

logger = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 20


class EvaluationError(ReidError, ValueError):
    """Evaluation inputs that cannot give a result (no query has a valid match, mismatched lengths, NaN)."""


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1 and name != "distmat":
        raise EvaluationError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """CMC, mAP and mINP under the standard re-ID protocol (see the module docstring).

    Args:
        distmat: (Q, G) distances, smaller = more similar (NumPy array or torch tensor; no NaN).
        q_pids, q_camids: (Q,) identity and camera of each query.
        g_pids, g_camids: (G,) identity and camera of each gallery entry.
        max_rank: length of the CMC curve.
        chunk_size: queries per vectorised chunk (default: about 1M distance entries per chunk).

    Returns:
        dict with ``cmc`` (max_rank,) float64, ``cmc[k]`` = fraction of valid queries whose first correct
        match is within the top k + 1; ``mAP`` and ``mINP`` floats in [0, 1]; ``ap`` (Q,) float64 per-query
        AP (NaN for skipped queries); ``num_valid_queries`` and ``num_skipped_queries`` ints.

    Raises:
        EvaluationError: shapes that do not agree, NaN distances, or no query with a valid match.
    """
    dist = _as_array(distmat, "distmat")
    q_pids, g_pids = _as_array(q_pids, "q_pids"), _as_array(g_pids, "g_pids")
    q_camids, g_camids = _as_array(q_camids, "q_camids"), _as_array(g_camids, "g_camids")
    if dist.ndim != 2:
        raise EvaluationError(f"distmat must be (num_query, num_gallery), got shape {dist.shape}")
    num_q, num_g = dist.shape
    if len(q_pids) != num_q or len(q_camids) != num_q:
        raise EvaluationError(
            f"distmat has {num_q} query rows but q_pids/q_camids have {len(q_pids)}/{len(q_camids)} entries"
        )
    if len(g_pids) != num_g or len(g_camids) != num_g:
        raise EvaluationError(
            f"distmat has {num_g} gallery columns but g_pids/g_camids have {len(g_pids)}/{len(g_camids)} entries"
        )
    if max_rank < 1:
        raise EvaluationError(f"max_rank must be >= 1, got {max_rank}")
    if num_q == 0 or num_g == 0:
        raise EvaluationError(f"nothing to evaluate: {num_q} queries, {num_g} gallery entries")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // num_g)
    if chunk_size < 1:
        raise EvaluationError(f"chunk_size must be >= 1, got {chunk_size}")

    ap = np.full(num_q, np.nan)
    inp = np.full(num_q, np.nan)
    first_rank = np.full(num_q, -1, dtype=np.int64)  # 0-based rank of the first correct match
    positions = np.arange(num_g)
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        block = dist[start:stop]
        if np.isnan(block).any():
            bad = start + int(np.argwhere(np.isnan(block))[0, 0])
            raise EvaluationError(f"distmat has NaN values (first in query row {bad})")
        order = np.argsort(block, axis=1, kind="stable")
        sorted_dist = np.take_along_axis(block, order, axis=1)
        same_pid = g_pids[order] == q_pids[start:stop, None]
        valid = ~(same_pid & (g_camids[order] == q_camids[start:stop, None]))
        match = same_pid & valid
        cum_valid = np.cumsum(valid, axis=1)
        cum_match = np.cumsum(match, axis=1)
        num_pos = cum_match[:, -1]
        has_match = num_pos > 0
        if not has_match.any():
            continue

        # last position of each block of tied distances, for every position
        is_block_end = np.ones(block.shape, dtype=bool)
        is_block_end[:, :-1] = sorted_dist[:, 1:] != sorted_dist[:, :-1]
        end = np.where(is_block_end, positions, num_g)
        end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
        precision = np.take_along_axis(cum_match, end, axis=1) / np.maximum(
            np.take_along_axis(cum_valid, end, axis=1), 1
        )
        rows = np.nonzero(has_match)[0]
        ap[start + rows] = (precision * match).sum(axis=1)[rows] / num_pos[rows]

        first = np.argmax(match[rows], axis=1)
        last = num_g - 1 - np.argmax(match[rows, ::-1], axis=1)
        first_rank[start + rows] = cum_valid[rows, first] - 1
        inp[start + rows] = num_pos[rows] / cum_valid[rows, last]

    valid_queries = ~np.isnan(ap)
    num_valid = int(valid_queries.sum())
    if num_valid == 0:
        raise EvaluationError(
            "no query has a valid match in the gallery (same identity seen from another camera); "
            "check that query and gallery identities and camera ids are right"
        )
    if num_valid < num_q:
        logger.info("%d of %d queries have no valid gallery match and were skipped", num_q - num_valid, num_q)
    hits = np.bincount(first_rank[valid_queries], minlength=max_rank)[:max_rank]
    cmc = np.cumsum(hits) / num_valid
    return {
        "cmc": cmc,
        "mAP": float(np.mean(ap[valid_queries])),
        "mINP": float(np.mean(inp[valid_queries])),
        "ap": ap,
        "num_valid_queries": num_valid,
        "num_skipped_queries": num_q - num_valid,
    }
