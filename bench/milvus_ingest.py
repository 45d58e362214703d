"""Milvus insert throughput by method: how MilvusVectorStore.add used to insert against how it inserts now.

    python -m bench.milvus_ingest --record          # 3 rounds x 8,192 vectors per method, 3-6 min

Methods, each into a fresh collection (FLAT index, not loaded, so that index building and searching do not
compete), 2048-d unit vectors, rounds interleaved so that load changes hit every method alike:

- ``rows-1000``: the store before: pymilvus row inserts (a dict per row, the vector as a Python list),
  1,000 rows per request, each request preceded by an ``id in [...]`` query at Strong ("already held?").
- ``columns-1000`` / ``columns-4096``: ``milvus_store.insert_columns`` (column-wise, one list per field),
  1,000 or 4,096 rows per request, no held check.
- ``store-1000`` / ``store-4096``: ``MilvusVectorStore.add`` now, called with 1,000 / 4,096 rows: its held
  check (one range query at Strong) plus ``insert_columns``.
- ``upsert-1000``: ``MilvusVectorStore.upsert`` (what the service's ``GalleryIndex.add_new`` calls on Milvus:
  replace by id, no held check), 1,000 rows per call.

Milvus runs at ``--milvus-uri`` or as a throwaway local server (tests/milvus.py, time tick 20 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import time

import numpy as np

from bench.report import append_section, command_line, machine_description
from bench.scale import MilvusServerHandle

METHODS = ("rows-1000", "columns-1000", "columns-4096", "store-1000", "store-4096", "upsert-1000")
logger = logging.getLogger("bench.milvus_ingest")


def insert(method: str, uri: str, name: str, ids: np.ndarray, x: np.ndarray) -> float:
    """Seconds to insert (ids, x) into a fresh collection ``name`` by ``method``."""
    from pymilvus import Collection, MilvusClient

    from service.vectorstore.base import ItemAttributes
    from service.vectorstore.milvus_store import (
        MilvusVectorStore,
        create_collection,
        filter_expression,
        insert_columns,
    )

    cameras = [f"cam-{i % 10}" for i in ids.tolist()]
    times = [int(i) * 1_000_000 for i in ids.tolist()]
    client = MilvusClient(uri=uri, timeout=600)
    create_collection(client, name, x.shape[1], "FLAT", {})
    try:
        kind, batch = method.rsplit("-", 1)
        batch = int(batch)
        store = None
        if kind in ("store", "upsert"):
            store = MilvusVectorStore(x.shape[1], uri=uri, collection=name, index_type="FLAT")
        columns = Collection(name, using=client._using)
        start = time.perf_counter()
        for s in range(0, len(ids), batch):
            part = slice(s, s + batch)
            if kind == "rows":
                client.query(
                    name, filter=filter_expression(ids[part]), output_fields=["id"], consistency_level="Strong"
                )
                rows = [
                    {"id": int(i), "vector": v.tolist(), "camera_id": c, "captured_us": t}
                    for i, v, c, t in zip(ids[part], x[part], cameras[part], times[part], strict=True)
                ]
                client.insert(name, rows)
            elif kind == "columns":
                insert_columns(columns, ids[part], x[part], cameras[part], times[part])
            elif kind == "upsert":
                store.upsert(ids[part], x[part], ItemAttributes(tuple(cameras[part]), tuple(times[part])))
            else:
                store.add(ids[part], x[part], ItemAttributes(tuple(cameras[part]), tuple(times[part])))
        return time.perf_counter() - start
    finally:
        client.drop_collection(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--milvus-uri", help="a running Milvus (default: start a throwaway local one)")
    parser.add_argument("--n", type=int, default=8192, help="vectors per method and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = machine_description()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    run_id = dt.datetime.now(dt.UTC).strftime("%H%M%S")
    rates: dict[str, list[float]] = {m: [] for m in args.methods}
    loads: list[float] = []
    milvus = MilvusServerHandle(args.milvus_uri)
    try:
        uri = milvus.get()
        for r in range(args.rounds):
            for m in args.methods:
                seconds = insert(m, uri, f"ingest_{run_id}_{m.replace('-', '_')}_{r}", ids, x)
                rates[m].append(args.n / seconds)
                loads.append(os.getloadavg()[0])
                logger.info("round %d %s: %.0f vectors/s", r, m, rates[m][-1])
    finally:
        milvus.stop()
    lines = [
        f"\n## Milvus insert methods (bench/milvus_ingest.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine}. Command: `{command_line(argv)}`. {args.rounds} rounds x {args.n:,} vectors "
        f"({args.dim}-d) per method, interleaved; load average during the run {min(loads):.1f}-{max(loads):.1f}.\n",
        "| method | vectors/s (median) | min - max |",
        "|---|---:|---:|",
    ]
    for m in args.methods:
        lines.append(f"| {m} | {np.median(rates[m]):,.0f} | {min(rates[m]):,.0f} - {max(rates[m]):,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
