"""Brute-force inner-product scan of a stored matrix (float32 or float16) with torch matrix products.

The scan is memory-bound: every query batch reads the whole matrix once, so a batch of queries costs
little more than one query, and float16 storage reads half the bytes. torch's CPU matrix product
handles float16 natively (numpy converts element by element: about 20x slower, measured) and splits
the rows across the cores. Scores are computed per block of rows and only the best ``c`` of each
block are kept, so memory stays at (queries x BLOCK_ROWS) scores whatever the gallery size.
"""

from __future__ import annotations

import numpy as np
import torch

from service.vectorstore.topk import TopK

BLOCK_ROWS = 262_144


def scan_topc(
    queries: np.ndarray, matrix: np.ndarray, row_ids: np.ndarray, c: int, row_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``c`` rows of ``matrix`` (n, dim) per query by inner product: (scores (q, c), ids (q, c)).

    ``row_ids`` (n,) names each row; ``row_mask`` (n,) bool, when given, keeps only the True rows.
    Scores are in the matrix's precision (float16 storage: float16 products, about 3 decimal digits;
    re-score the candidates when exact scores matter). Fewer than c rows: padded with id -1.
    """
    q = len(queries)
    best = TopK(q, c)
    if len(matrix) == 0:
        return best.result()
    query_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=matrix.dtype))
    with torch.inference_mode():
        for start in range(0, len(matrix), BLOCK_ROWS):
            block = torch.from_numpy(matrix[start : start + BLOCK_ROWS])
            scores = query_tensor @ block.T  # (q, rows) in the storage precision
            if row_mask is not None:
                keep = torch.from_numpy(row_mask[start : start + BLOCK_ROWS])
                scores = scores.masked_fill(~keep, float("-inf"))
            kk = min(c, scores.shape[1])
            top_scores, top_rows = torch.topk(scores, kk, dim=1, sorted=False)
            ids = row_ids[start : start + BLOCK_ROWS][top_rows.numpy()]
            top = top_scores.float().numpy()
            best.push(top, np.where(np.isneginf(top), -1, ids))
    return best.result()
