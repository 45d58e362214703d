"""Milvus at scale, vectors inserted directly (bench/scale.py's ``--direct`` stage; docs/scale.md).

    python -m bench.milvus_direct --n 1000000 --record      # the issue's target: filtered p99 <= 50 ms at 1M

What it bypasses, honestly: the service. The generated vectors (bench.index's clustered unit vectors, the same
data, cameras, capture times and queries as bench/scale.py) go straight into a collection with pymilvus'
column-wise insert (``milvus_store.insert_columns``, what ``MilvusVectorStore.add`` uses), created with the
store's schema but not loaded while it fills (a loaded collection keeps growing segments in the query node's
memory: 8 KiB per vector until they are indexed). No database, no "already held" check, no embedding. Then it
flushes, waits until Milvus has indexed every row, loads the collection, and searches through
``MilvusVectorStore.search`` (the service's own search path: filter inside Milvus, the never-short check, the
consistency level) for each ``--nprobe`` value: filtered p50 / p99 of single-query searches and recall@10
against the exact filtered top 10, computed in numpy chunk by chunk while inserting (each chunk is generated
once; the gallery is never held: ~400 MB of chunk and query state, not 8 GB).

Milvus runs at ``--milvus-uri`` or, without it, as a throwaway local server (tests/milvus.py: the PyPI
``milvus`` 2.3.5 binaries, time tick 20 ms), stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import time

import numpy as np

from bench.index import Gallery
from bench.report import append_json_line, append_section, command_line, machine_description
from bench.scale import WINDOW_DAYS, Metadata, MilvusServerHandle, latencies, make_queries, recall_at_k

logger = logging.getLogger("bench.milvus_direct")
EPOCH_US = 1_767_225_600 * 1_000_000  # 2026-01-01: capture times as the service stores them


class FilteredTruth:
    """Exact filtered top-k of every query, fed the gallery chunk by chunk (the chunk is not kept)."""

    def __init__(self, queries, k: int) -> None:
        self.queries, self.k = queries, k
        self.q = np.stack([query.vector for query in queries])
        self.best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.best_i = np.empty((len(queries), 0), dtype=np.int64)

    def push(self, meta: Metadata, ids: np.ndarray, x: np.ndarray) -> None:
        s = self.q @ x.T
        for row, query in enumerate(self.queries):
            s[row, ~query.mask(meta, ids)] = -np.inf
        s = np.concatenate([self.best_s, s], axis=1)
        i = np.concatenate([self.best_i, np.broadcast_to(ids, (len(self.q), len(ids)))], axis=1)
        top = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
        self.best_s, self.best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)

    def sets(self) -> list[set[int]]:
        return [set(i[np.isfinite(s)].tolist()) for s, i in zip(self.best_s, self.best_i, strict=True)]


class StoreEngine:
    """bench.scale's engine shape around a MilvusVectorStore opened on the filled collection."""

    def __init__(self, store) -> None:
        self.store = store

    def search(self, query, k: int, meta: Metadata, filtered: bool) -> np.ndarray:
        from service.vectorstore.base import ItemFilter

        where = None
        if filtered:
            where = ItemFilter((f"cam-{query.camera}",), EPOCH_US + query.start_us, EPOCH_US + query.end_us)
        return self.store.search(query.vector, k, where=where)[1][0]


def wait_indexed(client, name: str, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    progress: dict = {}
    while time.monotonic() < deadline:
        for index_name in client.list_indexes(name):
            progress = client.describe_index(name, index_name)
        # indexed_rows only: Milvus 2.3.5 kept reporting ~690,000 pending_index_rows for a 1M
        # collection minutes after all its 1,000,000 rows were indexed (compacted segments counted again?)
        if int(progress.get("indexed_rows", 0)) >= n:
            return
        time.sleep(2)
    raise TimeoutError(f"Milvus indexed {progress.get('indexed_rows')} of {n} rows in {timeout_s:.0f} s")


def run(args, uri: str, server) -> tuple[dict, list[dict]]:
    from pymilvus import Collection, MilvusClient

    from service.vectorstore.milvus_store import MilvusVectorStore, create_collection, insert_columns

    name = f"direct_{dt.datetime.now(dt.UTC):%H%M%S}"
    client = MilvusClient(uri=uri, timeout=600)
    index_params = {"nlist": args.nlist}
    create_collection(client, name, args.dim, "IVF_SQ8", index_params)
    build: dict = {"n": args.n, "index": f"IVF_SQ8 nlist {args.nlist}"}
    try:
        gallery = Gallery(args.n, args.dim, args.seed, args.noise, args.per_identity, args.group_spread)
        meta = Metadata.make(args.n, args.cameras, args.seed)
        queries = make_queries(gallery, args.queries, args.cameras, args.seed)
        truth = FilteredTruth(queries, args.k)
        columns = Collection(name, using=client._using)
        ingest = 0.0
        for ids, x in gallery.chunks():  # generating and the ground truth are not timed, only inserting
            truth.push(meta, ids, x)
            cameras = [f"cam-{c}" for c in meta.cameras[ids].tolist()]
            start = time.perf_counter()
            insert_columns(columns, ids, x, cameras, (EPOCH_US + meta.times_us[ids]).tolist())
            ingest += time.perf_counter() - start
            logger.info("inserted %d of %d (%.0f vectors/s)", ids[-1] + 1, args.n, (ids[-1] + 1) / ingest)
        build.update(ingest_s=ingest, ingest_per_s=args.n / ingest)
        start = time.perf_counter()
        client.flush(name)
        wait_indexed(client, name, args.n, args.index_timeout_s)
        build["indexed_after_s"] = time.perf_counter() - start
        start = time.perf_counter()
        client.load_collection(name)
        build["load_s"] = time.perf_counter() - start
        build["server_rss_mb"] = server.rss_mb() if server is not None else None
        truth_sets = truth.sets()
        build["qualifying_median"] = float(np.median([q.mask(meta, np.arange(args.n)).sum() for q in queries[:20]]))
        rows = []
        for consistency in args.consistency:
            for nprobe in args.nprobe:
                store = MilvusVectorStore(
                    args.dim,
                    uri=uri,
                    collection=name,
                    index_type="IVF_SQ8",
                    search_params={"nprobe": nprobe},
                    create=False,
                    consistency=consistency,
                )
                p50, p99, found = latencies(StoreEngine(store), queries, args.k, meta, filtered=True)
                row = {
                    "n": args.n,
                    "consistency": consistency,
                    "nprobe": nprobe,
                    "filtered_p50_ms": p50,
                    "filtered_p99_ms": p99,
                    "recall": recall_at_k(found, truth_sets, args.k),
                    "exact_fallbacks": store.exact_fallbacks,
                    "load": os.getloadavg()[0],
                }
                logger.info("%s", row)
                rows.append(row)
                append_json_line(args.json, {**build, **row})
        return build, rows
    finally:
        if not args.keep:
            client.drop_collection(name)


def table(build: dict, rows: list[dict]) -> str:
    lines = [
        f"{build['n']:,} vectors, {build['index']}: insert {build['ingest_per_s']:,.0f} vectors/s "
        f"({build['ingest_s']:.0f} s), indexed {build['indexed_after_s']:.0f} s after the last insert, "
        f"loaded in {build['load_s']:.0f} s; Milvus resident memory "
        f"{build['server_rss_mb'] or float('nan'):,.0f} MB; a filter qualifies about "
        f"{build['qualifying_median']:,.0f} items.",
        "",
        "| consistency | nprobe | filtered p50 / p99 (ms) | recall@10 | exact fallbacks | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['consistency']} | {r['nprobe']} | {r['filtered_p50_ms']:.1f} / {r['filtered_p99_ms']:.1f} | "
            f"{r['recall']:.3f} | {r['exact_fallbacks']} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--milvus-uri", help="a running Milvus (default: start a throwaway local one)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--nlist", type=int, default=256, help="IVF lists per segment (Milvus indexes each)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--consistency", nargs="+", default=["Session", "Strong"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.8)
    parser.add_argument("--per-identity", type=int, default=5)
    parser.add_argument("--group-spread", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-timeout-s", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the collection (with --milvus-uri)")
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = machine_description()
    started = time.perf_counter()
    milvus = MilvusServerHandle(args.milvus_uri)
    try:
        build, rows = run(args, milvus.get(), milvus.server)
    finally:
        milvus.stop()
    minutes = (time.perf_counter() - started) / 60
    text = (
        f"\n## Milvus at scale, inserted directly (bench/milvus_direct.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        f" UTC\n\nMachine: {machine}. Command: `{command_line(argv)}` ({minutes:.1f} min). Bypasses the service "
        f"(no database, no embedding); searches through MilvusVectorStore. Filter: 1 camera of {args.cameras} and "
        f"a {WINDOW_DAYS}-day window of 30 days; {args.queries} single-query searches, k={args.k}; load = 1-minute "
        "load average after each row.\n\n" + table(build, rows) + "\n"
    )
    print(text)
    if args.record:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
