"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), computed in chunks so that large galleries fit in memory, on the CPU or a CUDA device.

The method, on the N = Q + G query and gallery features together:
  1. d(i, j) = squared euclidean distance, divided by the largest distance in row i.
  2. R(i, k) = the k + 1 nearest neighbours of i (itself included). The k-reciprocal set of i holds the
     j in R(i, k1) with i in R(j, k1). It is expanded by the k-reciprocal set of each member c, computed
     with k = round(k1 / 2), whenever more than 2/3 of that set lies in the set of i.
  3. V(i, j) = exp(-d(i, j)) over i's expanded set, normalised to sum to 1 (a sparse row).
  4. Query expansion: V(i) = mean of V(j) over the k2 nearest neighbours j of i (itself included).
  5. Jaccard distance J(q, g) = 1 - s / (2 - s), with s = sum over k of min(V(q, k), V(g, k)).
  6. Result: (1 - lambda) * J(q, g) + lambda * d(q, g), a (Q, G) matrix.
This follows the authors' released code, in float64 (the blended d(q, g) is held in the result's dtype
between steps 1 and 6). Ties in a neighbour ranking are broken arbitrarily
(by ``torch.topk``), so exactly duplicated features can order differently from another implementation.

Memory (never more than a chunk of the (N, N) matrix): features in float64, N * D * 8 bytes; pass over rows
of ``chunk_size`` (default about 64 MB worth, 8 * chunk_size * N bytes, plus about the same again for
``topk``); sparse V and its query expansion, about 24 * k2 * E * N bytes where E (typically 20-60) is the
size of an expanded set; the Jaccard step works on groups of queries with at most ~2M (query, gallery)
contributions; and the (Q, G) result in ``dtype``. For Q = 3,368, G = 20,000, D = 2,048 on the CPU that is
about 0.4 GB of features, ~0.1-0.2 GB of working chunks and sparse rows, and 0.27 GB of float32 output.
Measured (2-core CPU, contended): Q = 3,368, G = 20,000, D = 512 took ~66 s and raised peak RSS by ~0.6 GB
(0.26 GB of it the output); the time is the float64 distance pass, O(N^2 D).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 2**20
_PAIR_BUDGET = 2 * 2**20


def _to_tensor(features: Any, name: str) -> Tensor:
    tensor = features.detach() if isinstance(features, Tensor) else torch.as_tensor(np.asarray(features))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a (num, dim) array, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must hold floating-point features, got {tensor.dtype}")
    return tensor


def _expand_segments(ptr: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    """For CSR-style ``ptr`` and a 1-D tensor of segment ids, return (owner, position):
    one entry per element of every listed segment, ``owner`` indexing ``segments``."""
    starts = ptr[segments]
    lengths = ptr[segments + 1] - starts
    owner = torch.repeat_interleave(torch.arange(len(segments), device=ptr.device), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    offsets = torch.arange(int(lengths.sum()), device=ptr.device) - first[owner]
    return owner, starts[owner] + offsets


def _sq_dist_rows(x: Tensor, sq: Tensor, rows: slice) -> Tensor:
    """Squared euclidean distances of rows ``rows`` to all rows: (c, N) float64, exact 0 to themselves."""
    block = x[rows] @ x.T
    block.mul_(-2.0).add_(sq[rows, None]).add_(sq[None, :]).clamp_(min=0.0)
    local = torch.arange(rows.stop - rows.start, device=x.device)
    block[local, local + rows.start] = 0.0
    return block


def _sq_dist_pairs(x: Tensor, sq: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """Squared euclidean distance for each pair (i[p], j[p]), same formula as ``_sq_dist_rows``."""
    out = torch.empty(len(i), dtype=x.dtype, device=x.device)
    step = max(1, _PAIR_BUDGET // max(1, x.shape[1]))
    for start in range(0, len(i), step):
        a, b = i[start : start + step], j[start : start + step]
        out[start : start + step] = sq[a] + sq[b] - 2.0 * (x[a] * x[b]).sum(dim=1)
    out.clamp_(min=0.0)
    out[i == j] = 0.0
    return out


def k_reciprocal_rerank(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Re-ranked query-to-gallery distances.

    Args:
        query_features: (Q, D) float features (NumPy array or torch tensor, any device).
        gallery_features: (G, D) float features.
        k1, k2, lambda_value: the method's parameters (defaults are the paper's 20, 6, 0.3).
        device: where to compute ("cuda", "cuda:1", "cpu"); default: the query tensor's device, else CPU.
        chunk_size: rows of the (N, N) distance matrix held at once (default: ~64 MB worth).
        dtype: NumPy dtype of the result (float32 or float64); the computation is float64 throughout.

    Returns:
        (Q, G) NumPy array of re-ranked distances (smaller = more similar), each in [0, 1].

    Raises:
        ValueError: empty or mismatched feature arrays, or parameters out of range (k1 >= Q + G,
            k2 outside [1, k1 + 1], lambda_value outside [0, 1]).
    """
    q = _to_tensor(query_features, "query_features")
    g = _to_tensor(gallery_features, "gallery_features")
    if len(q) == 0 or len(g) == 0:
        raise ValueError(f"need at least one query and one gallery feature, got {len(q)} and {len(g)}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery feature sizes differ: {q.shape[1]} vs {g.shape[1]}")
    num_q, num_g = len(q), len(g)
    n = num_q + num_g
    if not 1 <= k1 < n:
        raise ValueError(f"k1 must be in [1, {n - 1}] (fewer than the {n} query + gallery images), got {k1}")
    if not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2 must be in [1, k1 + 1 = {k1 + 1}], got {k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {out_dtype}")
    if device is None:
        device = q.device
    device = torch.device(device)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (8 * n))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    x = torch.cat([q.to(device, torch.float64), g.to(device, torch.float64)])
    sq = (x * x).sum(dim=1)
    k_half = int(round(k1 / 2)) + 1  # round half to even, as np.around in the reference code
    result = torch.empty(
        num_q, num_g, dtype=torch.float64 if out_dtype == np.float64 else torch.float32, device=device
    )

    # 1. neighbour ranks and row maxima; the query rows' distances to the gallery go into `result`
    ranks = torch.empty(n, k1 + 1, dtype=torch.long, device=device)
    row_max = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        block = _sq_dist_rows(x, sq, rows)
        row_max[rows] = block.max(dim=1).values
        ranks[rows] = torch.topk(block, k1 + 1, dim=1, largest=False, sorted=True).indices
        if start < num_q:
            q_stop = min(rows.stop, num_q)
            scale = torch.where(row_max[start:q_stop] > 0, row_max[start:q_stop], 1.0)
            result[start:q_stop] = (block[: q_stop - start, num_q:] / scale[:, None]).to(result.dtype)
        del block
    row_max = torch.where(row_max > 0, row_max, torch.ones_like(row_max))

    # half-k reciprocal sets of every image: members ranks[c, :k_half] with mask half_recip[c]
    half = ranks[:, :k_half]
    half_recip = torch.empty(n, k_half, dtype=torch.bool, device=device)
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=device)
        half_recip[rows] = (half[half[rows]] == rows[:, None, None]).any(dim=-1)
    half_size = half_recip.sum(dim=1)

    # 2-3. expanded k-reciprocal sets and their weights, as sparse rows (v_rows, v_cols, v_vals)
    v_rows, v_cols, v_vals = [], [], []
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=device)
        forward = ranks[rows]  # (c, k1+1)
        recip = (ranks[forward] == rows[:, None, None]).any(dim=-1)
        members = torch.where(recip, forward, -1)  # k-reciprocal set of each row, -1 = absent
        cand_sets = half[forward]  # (c, k1+1, k_half): half-sets of each candidate
        cand_mask = half_recip[forward]
        in_members = (cand_sets[..., None] == members[:, None, None, :]).any(dim=-1) & cand_mask
        overlap = in_members.sum(dim=-1)
        qualifies = recip & (3 * overlap > 2 * half_size[forward])
        extra = torch.where(qualifies[..., None] & cand_mask, cand_sets, -1).flatten(1)
        expanded, _ = torch.sort(torch.cat([members, extra], dim=1), dim=1)
        duplicate = torch.zeros_like(expanded, dtype=torch.bool)
        duplicate[:, 1:] = expanded[:, 1:] == expanded[:, :-1]
        keep = (expanded >= 0) & ~duplicate
        local, slot = torch.nonzero(keep, as_tuple=True)
        i, j = rows[local], expanded[local, slot]
        weight = torch.exp(-_sq_dist_pairs(x, sq, i, j) / row_max[i])
        total = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(0, local, weight)
        v_rows.append(i)
        v_cols.append(j)
        v_vals.append(weight / total[local])
    v_row = torch.cat(v_rows)  # sorted by row, then column (from the sorted `expanded`)
    v_col = torch.cat(v_cols)
    v_val = torch.cat(v_vals)
    del v_rows, v_cols, v_vals
    v_ptr = torch.zeros(n + 1, dtype=torch.long, device=device)
    v_ptr[1:] = torch.cumsum(torch.bincount(v_row, minlength=n), 0)

    # 4. query expansion: row i <- mean of the rows of its k2 nearest neighbours
    if k2 > 1:
        qe_rows, qe_cols, qe_vals = [], [], []
        for start in range(0, n, chunk_size):
            rows = torch.arange(start, min(start + chunk_size, n), device=device)
            neighbours = ranks[rows, :k2].reshape(-1)
            owner, pos = _expand_segments(v_ptr, neighbours)
            local = owner // k2
            key = local * n + v_col[pos]
            unique_key, inverse = torch.unique(key, sorted=True, return_inverse=True)
            summed = torch.zeros(len(unique_key), dtype=torch.float64, device=device)
            summed.index_add_(0, inverse, v_val[pos])
            qe_rows.append(rows[unique_key // n])
            qe_cols.append(unique_key % n)
            qe_vals.append(summed / k2)
        v_row, v_col, v_val = torch.cat(qe_rows), torch.cat(qe_cols), torch.cat(qe_vals)
        del qe_rows, qe_cols, qe_vals
        v_ptr = torch.zeros(n + 1, dtype=torch.long, device=device)
        v_ptr[1:] = torch.cumsum(torch.bincount(v_row, minlength=n), 0)
    logger.debug("re-ranking: %d sparse weights for %d images", len(v_val), n)

    # gallery rows of V by column: for each column k, the gallery images j with V(j, k) > 0
    is_gallery = v_row >= num_q
    by_column = torch.argsort(v_col[is_gallery], stable=True)
    g_row = (v_row[is_gallery] - num_q)[by_column]
    g_val = v_val[is_gallery][by_column]
    g_ptr = torch.zeros(n + 1, dtype=torch.long, device=device)
    g_ptr[1:] = torch.cumsum(torch.bincount(v_col[is_gallery], minlength=n), 0)

    # 5-6. Jaccard distance for groups of queries, blended into `result`
    q_entries_end = int(v_ptr[num_q])
    entry_len = g_ptr[v_col[:q_entries_end] + 1] - g_ptr[v_col[:q_entries_end]]
    work = torch.zeros(num_q, dtype=torch.long, device=device)
    work.index_add_(0, v_row[:q_entries_end], entry_len)
    cum_work = torch.cumsum(work, 0).cpu().numpy()
    max_group = max(1, _PAIR_BUDGET // num_g)
    start = 0
    while start < num_q:
        before = cum_work[start - 1] if start else 0
        stop = int(np.searchsorted(cum_work, before + _PAIR_BUDGET, side="right"))
        stop = min(max(stop, start + 1), start + max_group, num_q)
        queries = torch.arange(start, stop, device=device)
        owner, pos = _expand_segments(v_ptr, queries)
        columns, q_vals = v_col[pos], v_val[pos]
        inner_owner, g_pos = _expand_segments(g_ptr, columns)
        shared = torch.minimum(q_vals[inner_owner], g_val[g_pos])
        overlap = torch.zeros((stop - start) * num_g, dtype=torch.float64, device=device)
        overlap.index_add_(0, owner[inner_owner] * num_g + g_row[g_pos], shared)
        overlap = overlap.view(stop - start, num_g)
        jaccard = 1.0 - overlap / (2.0 - overlap)
        blended = lambda_value * result[start:stop].double() + (1.0 - lambda_value) * jaccard
        result[start:stop] = blended.to(result.dtype)
        start = stop
    return result.cpu().numpy()
