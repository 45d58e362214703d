"""int8 scan storage: per-row symmetric int8 codes scanned by a compiled kernel (``_int8scan.c``).

Row x is held as codes xhat = round(x / s_x) in [-127, 127] with s_x = max|x| / 127, a query q the same
way (per query). The kernel computes s_q s_x (qhat . xhat) with an exact integer dot product (AVX-512
VNNI, AVX2 or plain C, chosen at run time) over the rows split across threads; at 1 byte per value a
scan reads a quarter of float32's bytes.

Error bound (rigorous): with e_x = x - s_x xhat and e_q = q - s_q qhat,
q.x - (s_q qhat).(s_x xhat) = q.e_x + e_q.x - e_q.e_x, so by Cauchy-Schwarz the scan score is off by at
most |q| |e_x| + |e_q| |x| + |e_q| |e_x|, plus the kernel's three float32 roundings of the result and the
float32 reference's own accumulation (``error_bound``). |e_x| is bounded when a row is quantized
(``quantize``) and stored per row; the store keeps the largest.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from service.vectorstore import _int8scan
except ImportError:  # not built (no compiler at install): the store falls back to bf16
    _int8scan = None

ISAS = {"c": 1, "avx2": 2, "avx512vnni": 3}
QUANTIZE_CHUNK = 16_384  # rows quantized per call (bounded temporaries)
ROUNDOFF = 2.0**-24


def available() -> bool:
    return _int8scan is not None


def best_isa() -> str | None:
    return _int8scan.isa() if _int8scan is not None else None


def has_isa(name: str) -> bool:
    return _int8scan is not None and bool(_int8scan.has(ISAS[name]))


def quantize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 rows (n, dim) -> codes int8 (n, dim), scales float32 (n,), code sums int32 (n,) and an
    upper bound on each row's |x - s_x xhat| (float32, rounded up), in one pass of the kernel."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, dim = rows.shape
    codes = np.empty((n, dim), dtype=np.int8)
    scales = np.empty(n, dtype=np.float32)
    sums = np.empty(n, dtype=np.int32)
    errors = np.empty(n, dtype=np.float32)
    _int8scan.quantize(rows, codes, scales, sums, errors, n, dim, torch.get_num_threads())
    return codes, scales, sums, errors


class QueryCodes:
    """Queries quantized for the kernel: shifted codes (q, dim) uint8, scales, norms and error norms."""

    def __init__(self, queries: np.ndarray) -> None:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        codes, self.scales, _, self.errors = quantize(queries)
        self.shifted = (codes.astype(np.int16) + 128).astype(np.uint8)
        self.norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        self.count = len(queries)


def error_bound(queries: QueryCodes, row_norm: float, row_error: float, dim: int) -> np.ndarray:
    """(q,) upper bound on |int8 scan score - float32 score| for any row with |x| <= row_norm and
    |e_x| <= row_error (see the module doc)."""
    qn, qe = queries.norms, queries.errors.astype(np.float64)
    quantization = qn * row_error + qe * row_norm + qe * row_error
    rounding = 4 * ROUNDOFF * (qn + qe) * (row_norm + row_error)  # the kernel's float32 products
    reference = dim * ROUNDOFF * qn * row_norm  # float32 accumulation of the exact score
    return (quantization + rounding + reference) * (1 + 1e-6)


class Int8Rows:
    """The int8 scan copy of a store's rows: codes, scales and per-row code sums and error norms, with
    room to grow (rows [:len(self)] mirror the store's rows, in order)."""

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.dim = dim
        self.codes = np.empty((capacity, dim), dtype=np.int8)
        self.scales = np.empty(capacity, dtype=np.float32)
        self.sums = np.empty(capacity, dtype=np.int32)
        self.errors = np.empty(capacity, dtype=np.float32)
        self.rows = 0
        self.max_error = 0.0  # an upper bound on every held row's |e_x| (kept through removals)

    def __len__(self) -> int:
        return self.rows

    def reserve(self, total: int) -> None:
        """Room for ``total`` rows: the exact size when built (after a load or bulk add), a quarter
        more when grown."""
        if total > len(self.codes):
            self._resize(total if self.rows == 0 else max(total, (total * 5) // 4))

    def append(self, vectors: np.ndarray) -> None:
        self.reserve(self.rows + len(vectors))
        for start in range(0, len(vectors), QUANTIZE_CHUNK):  # bounded float32 temporaries
            codes, scales, sums, errors = quantize(vectors[start : start + QUANTIZE_CHUNK])
            at, stop = self.rows, self.rows + len(codes)
            self.codes[at:stop], self.scales[at:stop], self.sums[at:stop] = codes, scales, sums
            self.errors[at:stop] = errors
            self.rows = stop
            if len(errors):
                self.max_error = max(self.max_error, float(errors.max()))

    def _resize(self, capacity: int) -> None:
        for name in ("codes", "scales", "sums", "errors"):
            old = getattr(self, name)
            new = np.empty((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: self.rows] = old[: self.rows]
            setattr(self, name, new)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` (len(self),) is False, order kept."""
        for name in ("codes", "scales", "sums", "errors"):
            setattr(self, name, getattr(self, name)[: self.rows][mask])
        self.rows = int(mask.sum())

    def scores(self, queries: QueryCodes, start: int, stop: int, *, isa: str | None = None) -> np.ndarray:
        """float32 (q, stop - start) int8 scores of rows [start, stop) (threads: torch's setting)."""
        out = np.empty((queries.count, stop - start), dtype=np.float32)
        _int8scan.scan(
            self.codes[start:stop],
            self.scales[start:stop],
            self.sums[start:stop],
            queries.shifted,
            queries.scales,
            out,
            stop - start,
            self.dim,
            queries.count,
            torch.get_num_threads(),
            ISAS[isa] if isa else 0,
        )
        return out
