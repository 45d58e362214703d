"""Brute-force inner-product scan of a stored matrix (float32, float16 or bfloat16) with torch matrix products.

The scan is memory-bound: every query batch reads the whole matrix once, so a batch of queries costs
little more than one query, and 16-bit storage reads half the bytes. torch's CPU matrix product
handles float16 natively (numpy converts element by element: about 20x slower, measured) and
bfloat16 through oneDNN (AMX / AVX512-BF16 where the CPU has them), and splits the rows across the
cores. Scores are computed per block of rows and only the best ``c`` of each block are kept, so
memory stays at (queries x BLOCK_ROWS) scores whatever the gallery size.
"""

from __future__ import annotations

import numpy as np
import torch

from service.vectorstore.int8 import Int8Rows, QueryCodes
from service.vectorstore.topk import TopK

BLOCK_ROWS = 262_144

# unit roundoff of each storage precision: the scan's scores differ from float32's by at most
# score_error_bound(...) (see there)
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def as_tensor(matrix: np.ndarray | torch.Tensor) -> torch.Tensor:
    return matrix if isinstance(matrix, torch.Tensor) else torch.from_numpy(matrix)


def scan_topc(
    queries: np.ndarray,
    matrix: np.ndarray | torch.Tensor,
    row_ids: np.ndarray,
    c: int,
    row_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``c`` rows of ``matrix`` (n, dim) per query by inner product: (scores (q, c), ids (q, c)).

    ``matrix`` is a numpy array or a torch tensor (bfloat16 has no numpy type). ``row_ids`` (n,) names
    each row; ``row_mask`` (n,) bool, when given, keeps only the True rows. Scores are in the matrix's
    precision (16-bit storage: within ``score_error_bound`` of float32's; re-score the candidates when
    exact scores matter). Fewer than c rows: padded with id -1.
    """
    q = len(queries)
    best = TopK(q, c)
    matrix = as_tensor(matrix)
    if len(matrix) == 0:
        return best.result()
    query_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(matrix.dtype)
    with torch.inference_mode():
        for start in range(0, len(matrix), BLOCK_ROWS):
            block = matrix[start : start + BLOCK_ROWS]
            scores = product(query_tensor, block)  # (q, rows) in the storage precision
            if row_mask is not None:
                keep = torch.from_numpy(row_mask[start : start + BLOCK_ROWS])
                scores = scores.masked_fill(~keep, float("-inf"))
            kk = min(c, scores.shape[1])
            top_scores, top_rows = torch.topk(scores, kk, dim=1, sorted=False)
            ids = row_ids[start : start + BLOCK_ROWS][top_rows.numpy()]
            top = top_scores.float().numpy()
            best.push(top, np.where(np.isneginf(top), -1, ids))
    return best.result()


def int8_topc(
    queries: QueryCodes,
    matrix: Int8Rows,
    row_ids: np.ndarray,
    c: int,
    row_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``scan_topc`` over int8 rows with the compiled kernel: scores within ``int8.error_bound``."""
    best = TopK(queries.count, c)
    for start in range(0, len(matrix), BLOCK_ROWS):
        stop = min(len(matrix), start + BLOCK_ROWS)
        scores = matrix.scores(queries, start, stop)  # (q, rows) float32
        if row_mask is not None:
            scores[:, ~row_mask[start:stop]] = -np.inf
        best.push(*top_c(scores, row_ids[start:stop], c, ordered=False))
    return best.result()


def top_c(
    scores: np.ndarray, row_ids: np.ndarray, c: int, *, ordered: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The best c of scores (q, n) float32 with their ids ((n,) row_ids), best first unless not
    ``ordered``; -inf scores (masked rows) come back as id -1, missing ones padded."""
    if scores.shape[1] == 0:
        return TopK(len(scores), c).result()
    kk = min(c, scores.shape[1])
    top_scores, top_rows = torch.topk(torch.from_numpy(scores), kk, dim=1, sorted=False)
    top = top_scores.numpy()
    ids = np.where(np.isneginf(top), -1, row_ids[top_rows.numpy()])
    if not ordered:
        return top, ids
    best = TopK(len(scores), c)
    best.push(top, ids)
    return best.result()


def product(queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """queries (q, dim) x block (rows, dim) -> scores (q, rows).

    bfloat16 is fastest with the rows as the streamed operand (a matrix-vector product for one query,
    block @ queries.T for several); float16 is 2.4x slower that way and float32 no faster, so they
    keep queries @ block.T (interleaved A/B runs in BENCHMARKS.md)."""
    if block.dtype != torch.bfloat16:
        return queries @ block.T
    if len(queries) == 1:
        return torch.mv(block, queries[0])[None]
    return (block @ queries.T).T


def score_error_bound(
    dtype: torch.dtype, scores: np.ndarray, query_norms: np.ndarray, row_norm: float, dim: int
) -> np.ndarray:
    """An upper bound on |scan score - float32 score| for scan ``scores`` of a matrix in ``dtype``.

    Both factors are rounded to the storage precision (unit roundoff u: each product is off by at most
    (2u + u^2) |x_j q_j|, so the sum by at most (2u + u^2) |q| |x| by Cauchy-Schwarz), the products are
    accumulated in float32 (at most dim * 2^-24 |q| |x|), and the result is rounded to the storage
    precision once more (u |score|, the largest term near the top scores). A worst case: typical
    errors are about ten times smaller.
    """
    u = UNIT_ROUNDOFF[dtype]
    inputs = (2 * u + u * u + dim * 2.0**-24) * query_norms[:, None] * row_norm
    return (u * np.abs(scores) + inputs) * (1 + 2 * u)
