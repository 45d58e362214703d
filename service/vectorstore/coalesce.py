"""Concurrent searches share one scan (group commit).

A scan of the whole store is memory-bound: four queries in one matrix product cost little more than
one. A caller that finds no scan running starts one at once with every query waiting so far (no
added latency when searches do not overlap); callers that arrive while a scan runs wait, and the
next scan takes all of them together. Each caller gets its own rows back, and an error reaches
exactly the callers whose scan failed.

Lingering: when the previous scan served several callers, they are likely to search again at once
(busy clients); the caller that starts the next scan then waits up to ``linger_s`` for as many
queries as the previous scan took, so that they share it instead of queueing behind a scan of one
(without it, 4 closed-loop clients settle into alternating scans of 1 and 3 queries: each search
waits about two scans). A search after a lone search never waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

Run = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class _Request:
    __slots__ = ("queries", "k", "result", "error", "done")

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        self.result: tuple[np.ndarray, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False


class Coalescer:
    """Run ``run(queries (q, dim), k) -> (scores (q, k), ids (q, k))`` over the queries of concurrent
    ``submit`` calls together, up to ``max_queries`` query rows per run."""

    def __init__(self, run: Run, max_queries: int = 64, linger_s: float = 0.0) -> None:
        self._run = run
        self._max_queries = max_queries
        self._linger = linger_s
        self._last_batch = 1  # callers the previous scan served
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._running = False
        self.runs = 0  # scans started (the batching, observable)
        self.requests = 0

    def submit(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        mine = _Request(queries, k)
        with self._cond:
            self._waiting.append(mine)
            self.requests += 1
            self._cond.notify_all()  # a lingering caller counts the arrivals
            while not mine.done and self._running:
                self._cond.wait()
            if mine.done:
                return self._answer(mine)
            self._running = True  # this caller runs the next scan, for everyone waiting
            self._linger_for_callers()
            batch = self._take(mine)
            self._last_batch = len(batch)
            self.runs += 1
        try:
            self._execute(batch)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
        return self._answer(mine)

    def _linger_for_callers(self) -> None:
        """Under the condition's lock: after a shared scan, wait up to linger_s for as many callers."""
        if self._last_batch < 2 or self._linger <= 0:
            return
        deadline = time.monotonic() + self._linger
        while len(self._waiting) < self._last_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take(self, mine: _Request) -> list[_Request]:
        batch, rows = [mine], len(mine.queries)
        self._waiting.remove(mine)
        for request in list(self._waiting):
            if rows + len(request.queries) > self._max_queries:
                break
            batch.append(request)
            rows += len(request.queries)
            self._waiting.remove(request)
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        k = max(request.k for request in batch)
        try:
            if len(batch) == 1:
                scores, ids = self._run(batch[0].queries, k)
            else:
                scores, ids = self._run(np.concatenate([r.queries for r in batch]), k)
        except BaseException as exc:
            for request in batch:
                request.error, request.done = exc, True
            return
        start = 0
        for request in batch:
            stop = start + len(request.queries)
            request.result = (scores[start:stop, : request.k], ids[start:stop, : request.k])
            request.done = True
            start = stop

    @staticmethod
    def _answer(request: _Request) -> tuple[np.ndarray, np.ndarray]:
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result
