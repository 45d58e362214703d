"""One micro-batcher for all embedding work.

Concurrent requests put their images on an asyncio queue; a single worker coalesces them
until `batch_size` images are waiting or `batch_wait_ms` has passed since the first one,
runs the model once in a worker thread (off the event loop), and hands each caller its own
rows. If a coalesced batch fails, each request in it is retried alone, so an error reaches
only the caller whose input caused it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    items: Sequence[Any]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Coalesces `submit` calls into batches for `fn(items) -> (n, d) array`."""

    def __init__(
        self,
        fn: Callable[[list[Any]], np.ndarray],
        batch_size: int = 32,
        batch_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.fn = fn
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Request | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is None:
            return
        await self._queue.put(None)
        await self._worker
        self._worker = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        """Embed `items`; returns their rows in order. Raises what the model raised for these items."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("the micro-batcher is not running")
        items = list(items)
        if not items:
            raise ValueError("nothing to embed")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(items, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            count = len(first.items)
            deadline = loop.time() + self.batch_wait_s
            while count < self.batch_size:
                timeout = deadline - loop.time()
                try:
                    nxt = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
                count += len(nxt.items)
            await self._process(loop, batch)
        # Anyone still queued after stop gets an error rather than waiting forever.
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(RuntimeError("the service is shutting down"))

    async def _process(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        items = [item for request in batch for item in request.items]
        started = time.perf_counter()
        try:
            vectors = await loop.run_in_executor(self._executor, self.fn, items)
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], exc=exc)
                return
            logger.debug("batch of %d requests failed (%s); retrying them one by one", len(batch), exc)
            for request in batch:
                await self._process(loop, [request])
            return
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - started)
        start = 0
        for request in batch:
            _resolve(request, result=vectors[start : start + len(request.items)])
            start += len(request.items)


def _resolve(request: _Request, result: np.ndarray | None = None, exc: BaseException | None = None) -> None:
    if request.future.done():  # the caller went away (cancelled)
        return
    if exc is not None:
        request.future.set_exception(exc)
    else:
        request.future.set_result(result)
