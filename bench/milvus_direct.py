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
from bench.scale import (
    WINDOW_DAYS,
    Metadata,
    MilvusServerHandle,
    Query,
    latencies,
    make_queries,
    recall_at_k,
    wait_indexed,
)

logger = logging.getLogger("bench.milvus_direct")
EPOCH_US = 1_767_225_600 * 1_000_000  # 2026-01-01: capture times as the service stores them


MODES = ("filtered", "time", "none")  # camera + time window (the target), time window only, no filter


def mode_mask(mode: str, query: Query, meta: Metadata, ids: np.ndarray) -> np.ndarray | None:
    """Which of these ids a query of this mode may return (None: all)."""
    if mode == "filtered":
        return query.mask(meta, ids)
    if mode == "time":
        t = meta.times_us[ids]
        return (t >= query.start_us) & (t < query.end_us)
    return None


class FilteredTruth:
    """Exact top-k of every query under one filter mode, fed the gallery chunk by chunk (the chunk is not kept)."""

    def __init__(self, queries, k: int, mode: str = "filtered") -> None:
        self.queries, self.k, self.mode = queries, k, mode
        self.q = np.stack([query.vector for query in queries])
        self.best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.best_i = np.empty((len(queries), 0), dtype=np.int64)

    def push(self, meta: Metadata, ids: np.ndarray, x: np.ndarray, scores: np.ndarray | None = None) -> None:
        s = (self.q @ x.T) if scores is None else scores.copy()
        for row, query in enumerate(self.queries):
            keep = mode_mask(self.mode, query, meta, ids)
            if keep is not None:
                s[row, ~keep] = -np.inf
        s = np.concatenate([self.best_s, s], axis=1)
        i = np.concatenate([self.best_i, np.broadcast_to(ids, (len(self.q), len(ids)))], axis=1)
        top = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
        self.best_s, self.best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)

    def sets(self) -> list[set[int]]:
        return [set(i[np.isfinite(s)].tolist()) for s, i in zip(self.best_s, self.best_i, strict=True)]


class StoreEngine:
    """bench.scale's engine shape around a MilvusVectorStore opened on the filled collection."""

    def __init__(self, store, mode: str = "filtered") -> None:
        self.store, self.mode = store, mode

    def search(self, query, k: int, meta: Metadata, filtered: bool) -> np.ndarray:
        from service.vectorstore.base import ItemFilter

        where = None
        if filtered and self.mode == "filtered":
            where = ItemFilter((f"cam-{query.camera}",), EPOCH_US + query.start_us, EPOCH_US + query.end_us)
        elif filtered and self.mode == "time":
            where = ItemFilter((), EPOCH_US + query.start_us, EPOCH_US + query.end_us)
        return self.store.search(query.vector, k, where=where)[1][0]


def segments(client, name: str) -> list[int]:
    """Rows of each segment Milvus keeps for the collection, largest first (pymilvus 2.5's query-node
    segment info comes back empty from Milvus 2.3.5; its persistent segment info does not)."""
    from pymilvus.orm.connections import connections

    infos = connections._fetch_handler(client._using).get_persistent_segment_infos(name)
    return sorted((int(info.num_rows) for info in infos), reverse=True)


def run(args, uri: str, server) -> tuple[dict, list[dict]]:
    from pymilvus import Collection, MilvusClient

    from service.vectorstore.milvus_store import MilvusVectorStore, create_collection, insert_columns

    name = f"direct_{dt.datetime.now(dt.UTC):%H%M%S}"
    client = MilvusClient(uri=uri, timeout=600)
    index_params = {"nlist": args.nlist}
    create_collection(client, name, args.dim, "IVF_SQ8", index_params, partition_key=args.partition_key)
    build: dict = {
        "n": args.n,
        "index": f"IVF_SQ8 nlist {args.nlist}",
        "segment_max_mb": args.segment_max_mb,
        "seal_proportion": args.seal_proportion,
        "partition_key": args.partition_key,
    }
    try:
        gallery = Gallery(args.n, args.dim, args.seed, args.noise, args.per_identity, args.group_spread)
        meta = Metadata.make(args.n, args.cameras, args.seed)
        queries = make_queries(gallery, args.queries, args.cameras, args.seed)
        truths = {mode: FilteredTruth(queries, args.k, mode) for mode in args.modes}
        columns = Collection(name, using=client._using)
        ingest = 0.0
        for ids, x in gallery.chunks():  # generating and the ground truth are not timed, only inserting
            scores = truths[args.modes[0]].q @ x.T
            for truth in truths.values():
                truth.push(meta, ids, x, scores)
            cameras = [f"cam-{c}" for c in meta.cameras[ids].tolist()]
            start = time.perf_counter()
            insert_columns(columns, ids, x, cameras, (EPOCH_US + meta.times_us[ids]).tolist())
            ingest += time.perf_counter() - start
            logger.info("inserted %d of %d (%.0f vectors/s)", ids[-1] + 1, args.n, (ids[-1] + 1) / ingest)
        build.update(ingest_s=ingest, ingest_per_s=args.n / ingest)
        start = time.perf_counter()
        client.flush(name)
        wait_indexed(client, name, args.n, args.index_timeout_s, poll_s=2.0)
        build["indexed_after_s"] = time.perf_counter() - start
        start = time.perf_counter()
        client.load_collection(name)
        build["load_s"] = time.perf_counter() - start
        build["server_rss_mb"] = server.rss_mb() if server is not None else None
        build["segments"] = segments(client, name)
        logger.info("segments (rows): %s", build["segments"])
        build["qualifying_median"] = float(np.median([q.mask(meta, np.arange(args.n)).sum() for q in queries[:20]]))
        rows = []
        plan = [(mode, consistency) for mode in args.modes for consistency in args.consistency if mode == "filtered"]
        plan += [(mode, args.consistency[0]) for mode in args.modes if mode != "filtered"]
        for mode, consistency in plan:
            truth_sets = truths[mode].sets()
            for nprobe in args.nprobe if mode == "filtered" else args.other_nprobe or args.nprobe:
                store = MilvusVectorStore(
                    args.dim,
                    uri=uri,
                    collection=name,
                    index_type="IVF_SQ8",
                    search_params={"nprobe": nprobe},
                    create=False,
                    consistency=consistency,
                )
                p50, p99, found = latencies(StoreEngine(store, mode), queries, args.k, meta, filtered=True)
                row = {
                    "n": args.n,
                    "mode": mode,
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
        f"{build['qualifying_median']:,.0f} items. Segments (dataCoord.segment.maxSize {build['segment_max_mb']} MB, "
        f"sealProportion {build['seal_proportion'] or 'as the server has it'}"
        f"{', camera_id partition key' if build['partition_key'] else ''}): {len(build['segments'])}, rows "
        f"{', '.join(f'{r:,}' for r in build['segments'])}.",
        "",
        "| filter | consistency | nprobe | p50 / p99 (ms) | recall@10 | exact fallbacks | load |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    names = {"filtered": "camera + time (target)", "time": "time only", "none": "none"}
    for r in rows:
        lines.append(
            f"| {names[r['mode']]} | {r['consistency']} | {r['nprobe']} | "
            f"{r['filtered_p50_ms']:.1f} / {r['filtered_p99_ms']:.1f} | "
            f"{r['recall']:.3f} | {r['exact_fallbacks']} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--milvus-uri", help="a running Milvus (default: start a throwaway local one)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument(
        "--nlist", type=int, help="IVF lists per segment (default: the store's, derived from --segment-max-mb)"
    )
    parser.add_argument(
        "--segment-max-mb",
        type=int,
        help="dataCoord.segment.maxSize of the throwaway server (default: docker/milvus-user.yaml's)",
    )
    parser.add_argument("--seal-proportion", type=float, help="dataCoord.segment.sealProportion (same)")
    parser.add_argument("--partition-key", action="store_true", help="camera_id as the partition key")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument(
        "--other-nprobe", type=int, nargs="+", help="nprobe values of the time-only / unfiltered rows (default: --nprobe)"
    )
    parser.add_argument("--consistency", nargs="+", default=["Session", "Strong"])
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="filters to time (filtered is the target)"
    )
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
    from service.vectorstore.milvus_store import SEGMENT_MAX_MB, default_nlist

    overrides = {}
    if args.segment_max_mb is not None:
        overrides["dataCoord.segment.maxSize"] = args.segment_max_mb
    if args.seal_proportion is not None:
        overrides["dataCoord.segment.sealProportion"] = args.seal_proportion
    if args.milvus_uri and overrides:
        parser.error("--segment-max-mb / --seal-proportion configure the throwaway server, not --milvus-uri")
    if not args.milvus_uri:  # the throwaway server's layout: docker/milvus-user.yaml's unless overridden
        from tests.milvus import deployment_overrides

        deployed = deployment_overrides()
        args.segment_max_mb = args.segment_max_mb or int(deployed["dataCoord.segment.maxSize"])
        args.seal_proportion = args.seal_proportion or float(deployed["dataCoord.segment.sealProportion"])
    args.segment_max_mb = args.segment_max_mb or SEGMENT_MAX_MB
    args.nlist = args.nlist or default_nlist(args.dim, args.segment_max_mb)
    machine = machine_description()
    started = time.perf_counter()
    milvus = MilvusServerHandle(args.milvus_uri, overrides)
    try:
        build, rows = run(args, milvus.get(), milvus.server)
    finally:
        milvus.stop()
    minutes = (time.perf_counter() - started) / 60
    text = (
        f"\n## Milvus at scale, inserted directly (bench/milvus_direct.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        f" UTC\n\nMachine: {machine}. Command: `{command_line(argv)}` ({minutes:.1f} min). Bypasses the service "
        f"(no database, no embedding); searches through MilvusVectorStore. Filter: 1 camera of {args.cameras} and "
        f"a {WINDOW_DAYS}-day window of 30 days (the target row; time only: the window alone; none: unfiltered); "
        f"{args.queries} single-query searches, k={args.k}; load = 1-minute load average after each row.\n\n" + table(build, rows) + "\n"
    )
    print(text)
    if args.record:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
