"""service.vectorstore.coalesce.Coalescer: concurrent searches share one run, each gets its own rows."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.vectorstore.coalesce import Coalescer


class Recorder:
    """A run that answers query row r with ids r*10 .. r*10+k-1 (so each caller's rows are checkable);
    the first run blocks until released, so that the next callers queue behind it."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, queries: np.ndarray, k: int):
        self.batches.append(len(queries))
        if len(self.batches) == 1:
            assert self.release.wait(10)
        if self.fail_on is not None and len(self.batches) == self.fail_on:
            raise RuntimeError("scan failed")
        base = queries[:, 0].astype(np.int64)[:, None] * 10
        ids = base + np.arange(k)
        return -ids.astype(np.float32), ids


def submit_all(coalescer, values, k, out, errors):
    def one(value):
        try:
            out[value] = coalescer.submit(np.full((1, 4), value, np.float32), k + value % 3)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            errors[value] = exc

    return [threading.Thread(target=one, args=(v,)) for v in values]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_queued_searches_share_one_run_and_get_their_own_rows():
    run = Recorder()
    coalescer = Coalescer(run, max_queries=64)
    out, errors = {}, {}
    first = submit_all(coalescer, [1], 5, out, errors)[0]
    first.start()
    wait_for(lambda: run.batches == [1])  # the first run is in progress
    others = submit_all(coalescer, [2, 3, 4, 5], 5, out, errors)
    for thread in others:
        thread.start()
    wait_for(lambda: coalescer.requests == 5)
    run.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert not errors
    assert run.batches == [1, 4]  # four waiting searches, one scan
    for value, (scores, ids) in out.items():
        k = 5 + value % 3
        assert ids.shape == (1, k) and ids[0].tolist() == [value * 10 + j for j in range(k)]
        assert scores[0].tolist() == [-float(i) for i in ids[0]]


def test_max_queries_splits_the_queue():
    run = Recorder()
    coalescer = Coalescer(run, max_queries=2)
    out, errors = {}, {}
    first = submit_all(coalescer, [1], 3, out, errors)[0]
    first.start()
    wait_for(lambda: run.batches == [1])
    others = submit_all(coalescer, [2, 3, 4, 5, 6], 3, out, errors)
    for thread in others:
        thread.start()
    wait_for(lambda: coalescer.requests == 6)
    run.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert not errors and len(out) == 6
    assert max(run.batches) == 2 and sum(run.batches) == 6


def test_an_error_reaches_the_callers_of_that_run_only():
    run = Recorder(fail_on=2)
    coalescer = Coalescer(run)
    out, errors = {}, {}
    first = submit_all(coalescer, [1], 3, out, errors)[0]
    first.start()
    wait_for(lambda: run.batches == [1])
    others = submit_all(coalescer, [2, 3], 3, out, errors)
    for thread in others:
        thread.start()
    wait_for(lambda: coalescer.requests == 3)
    run.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert set(out) == {1} and set(errors) == {2, 3}
    assert all(isinstance(e, RuntimeError) for e in errors.values())
    # the coalescer is usable after a failed run
    scores, ids = coalescer.submit(np.full((1, 4), 7, np.float32), 2)
    assert ids[0].tolist() == [70, 71]


def test_store_search_from_many_threads_matches_single_searches():
    from service.vectorstore import FaissVectorStore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:40] + 0.05 * rng.standard_normal((40, 32)).astype(np.float32)
    for storage in ("fp32", "bf16", "fp16", "int8"):  # int8 without its kernel: bf16
        store = FaissVectorStore(32, storage=storage)
        store.add(np.arange(3000) + 100, vectors)
        alone = [store.search(q, 10)[1] for q in queries]
        results: dict[int, np.ndarray] = {}

        def client(rows, results=results, store=store):
            for row in rows:
                results[row] = store.search(queries[row], 10)[1]

        threads = [threading.Thread(target=client, args=(range(i, 40, 4),)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(np.array_equal(results[row], alone[row]) for row in range(40)), storage
        assert store._coalescer.runs <= store._coalescer.requests


@pytest.mark.parametrize("k", [1, 7])
def test_single_caller_runs_at_once(k):
    run = Recorder()
    run.release.set()
    coalescer = Coalescer(run)
    scores, ids = coalescer.submit(np.full((2, 4), 3, np.float32), k)
    assert ids.shape == (2, k) and run.batches == [2]


def test_after_a_shared_run_the_next_run_lingers_for_the_callers():
    """After a run of 2 callers, the next caller waits (up to linger_s) for a second one, which joins
    its run."""
    run = Recorder()
    coalescer = Coalescer(run, max_queries=64, linger_s=10.0)
    out, errors = {}, {}
    first = submit_all(coalescer, [1], 3, out, errors)[0]
    first.start()
    wait_for(lambda: run.batches == [1])
    pair = submit_all(coalescer, [2, 3], 3, out, errors)
    for thread in pair:
        thread.start()
    wait_for(lambda: coalescer.requests == 3)
    run.release.set()
    for thread in [first, *pair]:
        thread.join(10)
    assert run.batches == [1, 2]
    late = submit_all(coalescer, [4, 5], 3, out, errors)
    late[0].start()
    wait_for(lambda: coalescer.requests == 4)
    time.sleep(0.05)
    assert run.batches == [1, 2]  # lingering for a second caller
    late[1].start()
    for thread in late:
        thread.join(10)
    assert run.batches == [1, 2, 2] and not errors and set(out) == {1, 2, 3, 4, 5}


def test_lingering_ends_at_linger_s():
    run = Recorder()
    run.release.set()
    coalescer = Coalescer(run, linger_s=0.2)
    coalescer._last_batch = 3  # as after a run of three callers
    started = time.monotonic()
    scores, ids = coalescer.submit(np.full((1, 4), 2, np.float32), 2)
    assert time.monotonic() - started >= 0.2 and ids[0].tolist() == [20, 21]
    started = time.monotonic()
    coalescer.submit(np.full((1, 4), 2, np.float32), 2)
    assert time.monotonic() - started < 0.2  # the previous run was a lone one
