"""Several batches at once on the CPU, one core each, instead of one batch over torch's OpenMP threads.

    with batch_workers(embedder, requested, n_batches) as run:
        for result in run(embedder.embed, chunks):   # results in input order
            ...

torch splits each operator of a forward pass over its intra-op (OpenMP) threads, which meet at a barrier
after every operator, hundreds of times per forward. On the 2-core build machine that costs more than
it gains as soon as anything else runs: a thread that loses its core stalls its partner, which spins
(BENCHMARKS.md, "reid embed: batches in parallel"): `reid embed --precision bf16` on 192 crops at load ~5
took 30 s of network with 2 intra-op threads against 7 s with 1. Here each worker thread runs whole
batches with one intra-op thread (the GIL is released inside torch's operators), so the cores never wait
for each other; with one core free it is one thread's speed, never the stall.

Only for the torch runtime on the CPU: ONNX Runtime's own pool (spinning off, model.onnx_network) and the
GPU are left as they are. torch's thread count is process-wide: it is set for the run and put back after.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from model.device import usable_cpus

logger = logging.getLogger(__name__)


def _serial(fn: Callable, items: Sequence) -> Iterator:
    return map(fn, items)


@contextlib.contextmanager
def batch_workers(embedder, requested: int | None, batches: int):
    """A `run(fn, items)` that maps in input order: in parallel threads (torch on the CPU) or serially.

    requested: None = one worker per usable CPU; 1 = serial on torch's own thread pool (the old behaviour).
    """
    if requested is not None and requested < 1:
        raise ValueError(f"workers must be >= 1, got {requested}")
    cpus = usable_cpus()
    workers = cpus if requested is None else requested
    workers = min(workers, max(batches, 1))
    if embedder.runtime != "torch" or embedder.device_type != "cpu" or workers <= 1:
        yield _serial
        return
    import torch

    before = torch.get_num_threads()
    threads = max(1, cpus // workers)
    torch.set_num_threads(threads)
    logger.info("embedding %d batches at once, %d intra-op thread(s) each", workers, threads)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
            yield lambda fn, items: pool.map(fn, items)
    finally:
        torch.set_num_threads(before)
