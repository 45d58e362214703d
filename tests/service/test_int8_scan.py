"""The int8 scan kernel (service/vectorstore/_int8scan.c through int8.py) against numpy, its error bound,
and the int8 storage's fallback to bf16 when the kernel is not built."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from service.vectorstore import FaissVectorStore, int8
from service.vectorstore.scan import int8_topc

needs_kernel = pytest.mark.skipif(not int8.available(), reason="the int8 scan kernel is not built")
ISAS = [
    pytest.param(name, marks=pytest.mark.skipif(not int8.has_isa(name), reason=f"this CPU lacks {name}"))
    for name in ("c", "avx2", "avx512vnni")
]


def test_the_kernel_is_built():
    """`pip install -e .` (make venv) builds it wherever a C compiler exists: CI fails without it."""
    if not int8.available():
        message = "the int8 scan kernel is not built (pip install -e . with gcc and the Python headers)"
        if os.environ.get("CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert int8.best_isa() in int8.ISAS and int8.has_isa("c")


def expected(rows: int8.Int8Rows, queries: int8.QueryCodes) -> np.ndarray:
    """The kernel's result computed in numpy: exact integer dot products, then the same float32 steps."""
    n = len(rows)
    dots = (queries.shifted.astype(np.int64) - 128) @ rows.codes[:n].astype(np.int64).T
    return (dots.astype(np.float32) * queries.scales[:, None]) * rows.scales[None, :n]


@needs_kernel
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "n, dim, q",
    [(1, 1, 1), (17, 63, 1), (1003, 2048, 7), (4099, 130, 3), (6001, 64, 1), (9, 200, 64)],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_numpy(isa, n, dim, q, threads, monkeypatch):
    """Odd sizes: rows not a multiple of 4 / 16 / 64 (tails of each thread's share), dims not a multiple
    of 16 / 64 (masked tails), 1 and 7 queries; with 2 threads once the rows are many enough to split."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    rng = np.random.default_rng(n + dim + q)
    rows = int8.Int8Rows(dim)
    rows.append(rng.standard_normal((n, dim)).astype(np.float32))
    queries = int8.QueryCodes(rng.standard_normal((q, dim)).astype(np.float32))
    np.testing.assert_array_equal(rows.scores(queries, 0, n, isa=isa), expected(rows, queries))
    # a row range (the scan's blocks)
    np.testing.assert_array_equal(
        rows.scores(queries, n // 3, n, isa=isa), expected(rows, queries)[:, n // 3 :]
    )


@needs_kernel
@pytest.mark.parametrize("isa", ISAS)
def test_kernel_extreme_codes_do_not_overflow(isa):
    """Every code at +-127 against queries at +-127 (the largest integer sums) over 4096 dims."""
    dim = 4096
    x = np.ones((8, dim), np.float32)
    x[1::2] *= -1
    rows = int8.Int8Rows(dim)
    rows.append(x)
    queries = int8.QueryCodes(np.stack([np.ones(dim, np.float32), -np.ones(dim, np.float32)]))
    got = rows.scores(queries, 0, 8, isa=isa)
    assert np.array_equal(np.abs(rows.codes[:8]), np.full((8, dim), 127))
    np.testing.assert_array_equal(got, expected(rows, queries))
    np.testing.assert_allclose(got, queries_signs() * dim, rtol=1e-6)


def queries_signs():
    return np.array([[1, -1] * 4, [-1, 1] * 4], dtype=np.float32)


@needs_kernel
def test_kernel_rejects_short_buffers():
    from service.vectorstore import _int8scan

    codes = np.zeros((4, 8), np.int8)
    out = np.empty((1, 3), np.float32)  # one score short
    args = (codes, np.ones(4, np.float32), np.zeros(4, np.int32), np.zeros((1, 8), np.uint8))
    with pytest.raises(ValueError, match="out holds 12 bytes, needs 16"):
        _int8scan.scan(*args, np.ones(1, np.float32), out, 4, 8, 1, 1, 0)
    with pytest.raises(ValueError, match="instruction set 9"):
        _int8scan.scan(*args, np.ones(1, np.float32), np.empty((1, 4), np.float32), 4, 8, 1, 1, 9)


@needs_kernel
def test_quantize_matches_numpy_and_bounds_the_true_error():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 77)).astype(np.float32) * rng.uniform(1e-3, 10, (300, 1)).astype(np.float32)
    x[5] = 0  # a zero row: scale 0, codes 0, error ~0
    codes, scales, sums, errors = int8.quantize(x)
    want_scales = np.abs(x).max(axis=1) / np.float32(127)
    np.testing.assert_array_equal(scales, want_scales)
    safe = np.where(want_scales > 0, want_scales, 1)
    np.testing.assert_array_equal(codes, np.clip(np.rint(x / safe[:, None]), -127, 127))
    np.testing.assert_array_equal(sums, codes.sum(axis=1))
    true = np.linalg.norm(x.astype(np.float64) - scales.astype(np.float64)[:, None] * codes, axis=1)
    assert np.all(errors >= true) and np.all(errors <= true * (1 + 1e-6) + 1e-40)
    assert np.abs(codes).max() == 127 and codes[5].tolist() == [0] * 77 and errors[5] < 1e-40


@needs_kernel
def test_scores_within_error_bound():
    """The int8 scores differ from float32's by no more than int8.error_bound, which is what makes the
    store's widening decision safe (and is not absurdly loose: within 200x of the worst seen)."""
    rng = np.random.default_rng(2)
    dim = 256
    x = rng.standard_normal((5000, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.05 * rng.standard_normal((20, dim)).astype(np.float32)
    rows = int8.Int8Rows(dim)
    rows.append(x)
    queries = int8.QueryCodes(q)
    error = np.abs(rows.scores(queries, 0, len(x)) - q @ x.T).max(axis=1)
    bound = int8.error_bound(queries, float(np.linalg.norm(x, axis=1).max()), rows.max_error, dim)
    assert np.all(error <= bound) and np.all(bound < 200 * error)


@needs_kernel
def test_int8_topc_with_mask_and_blocks(monkeypatch):
    from service.vectorstore import scan

    monkeypatch.setattr(scan, "BLOCK_ROWS", 333)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 40)).astype(np.float32)
    rows = int8.Int8Rows(40)
    rows.append(x)
    queries = int8.QueryCodes(x[:3])
    ids = np.arange(1000, dtype=np.int64) * 7
    mask = rng.random(1000) < 0.5
    scores, found = int8_topc(queries, rows, ids, 25, mask)
    want = np.where(mask, expected(rows, queries), -np.inf)
    order = np.argsort(-want, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(scores, np.take_along_axis(want, order, 1))
    assert np.isin(found, ids[mask]).all()


def test_int8_without_kernel_falls_back_to_bf16(monkeypatch, caplog):
    monkeypatch.setattr(int8, "_int8scan", None)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.permutation(10**6)[:2000].astype(np.int64)
    with caplog.at_level(logging.WARNING, logger="service.vectorstore.faiss_store"):
        index = FaissVectorStore(48, storage="int8")
    assert "not built" in caplog.text and "bfloat16" in caplog.text
    index.add(ids, x)
    exact = FaissVectorStore(48)
    exact.add(ids, x)
    scores, found = index.search(x[:9] + 0.01, 10)
    want_scores, want_ids = exact.search(x[:9] + 0.01, 10)
    assert np.array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert index.storage == "int8" and index._int8_copy is None and index._scan_copy is not None


@needs_kernel
@pytest.mark.parametrize("kept_scores", [None, 0])
@pytest.mark.parametrize("first_candidates", [None, 12])
def test_int8_widening_is_exact_with_and_without_kept_scores(kept_scores, first_candidates, monkeypatch):
    """400 near-duplicate crops per person: far more rows within int8's error bound of the 10th than
    first candidates. With the scores kept (the default), the rows within the bound are re-scored
    without a second scan; with none kept (INT8_KEPT_SCORES 0: large stores), the scan is repeated
    with more candidates. Both give float32's answer."""
    from service.vectorstore import faiss_store
    from tests.service.test_index import brute, people

    if kept_scores is not None:
        monkeypatch.setattr(faiss_store, "INT8_KEPT_SCORES", kept_scores)
    if first_candidates is not None:
        monkeypatch.setattr(faiss_store, "rescore_candidates", lambda k, storage: first_candidates)
    rng = np.random.default_rng(9)
    vectors = people(rng, 10, 400, 96, spread=0.3)
    ids = rng.permutation(10**6)[: len(vectors)].astype(np.int64)
    queries = np.concatenate([people(rng, 1, 5, 96, spread=0.3), vectors[::800] + 0.0])
    index = FaissVectorStore(96, storage="int8")
    index.add(ids, vectors)
    scanned = []
    real_scores = int8.Int8Rows.scores
    monkeypatch.setattr(int8.Int8Rows, "scores", lambda *a, **kw: scanned.append(1) or real_scores(*a, **kw))
    want_scores, want_ids = brute(queries, ids, vectors, 10)
    scores, found = index.search(queries, 10)
    assert np.array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert index.widened > 0
    assert len(scanned) == (1 if kept_scores is None else 1 + index.widened)
