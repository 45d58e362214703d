"""Scale-out benchmark: in-process faiss against Milvus, filtered search, recall@10 (docs/scale.md).

    python -m bench.scale --record                       # 100k and 1M, every engine (needs a big, quiet machine)
    python -m bench.scale --sizes 20000 --record         # what a 2-core, 24 GiB shared machine allows

1,000,000 vectors on this machine: ``python -m bench.milvus_direct`` (Milvus IVF_SQ8 only, vectors inserted
directly with pymilvus, bypassing the service; the ground truth computed chunk by chunk while inserting).

Then, unless ``--replicas`` is given empty, the same with 1 and 2 `reid serve` replicas over HTTP on one
PostgreSQL and the same Milvus (bench/replicas.py, its own table): one command records everything.

For each size and engine: ingest throughput (vectors per second through ``VectorStore.add`` in batches of
``--batch``; "searchable after" adds, for Milvus, the wait until its index is built over every vector; generating the
synthetic vectors is not timed),
filtered search latency p50 / p99 of single-query calls (what one POST /search with a camera and time filter
does) and recall@10 against exact filtered search, plus the unfiltered p50.

Engines: ``faiss-flat`` and ``faiss-ivf`` (``FaissVectorStore``, the filter resolved to ids first, as the
service does from the database; here a numpy mask stands in for that indexed SQL query and its time is
included), ``milvus-flat``, ``milvus-hnsw`` and ``milvus-ivf_sq8`` (``MilvusVectorStore``, the camera and time
filter evaluated inside Milvus). Milvus runs at ``--milvus-uri``, or, without it, a throwaway local server is
started with the tests' launcher (tests/milvus.py: the PyPI ``milvus`` package's binaries); engines that cannot
run are listed as skipped with the reason.

Data: bench.index's clustered unit vectors (identities around shared looks); every item gets a camera out of
``--cameras`` and a capture time spread over 30 days; a query filters one camera and a 3-day window (about
1 % of the gallery with 10 cameras). Queries are fresh sightings of gallery identities.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.index import Gallery
from bench.report import append_json_line, append_section, command_line, machine_description

logger = logging.getLogger("bench.scale")
DAY_US = 86_400 * 1_000_000
SPAN_DAYS = 30
WINDOW_DAYS = 3
ENGINES = ("faiss-flat", "faiss-ivf", "milvus-flat", "milvus-hnsw", "milvus-ivf_sq8")


@dataclass
class Metadata:
    """Camera index and capture time (us from the start of the span) per id (ids are 0..n-1)."""

    cameras: np.ndarray
    times_us: np.ndarray

    @classmethod
    def make(cls, n: int, cameras: int, seed: int) -> Metadata:
        rng = np.random.default_rng([seed, 4])
        return cls(rng.integers(0, cameras, n).astype(np.int16), rng.integers(0, SPAN_DAYS * DAY_US, n))


@dataclass
class Query:
    vector: np.ndarray
    camera: int
    start_us: int
    end_us: int

    def mask(self, meta: Metadata, ids: np.ndarray) -> np.ndarray:
        t = meta.times_us[ids]
        return (meta.cameras[ids] == self.camera) & (t >= self.start_us) & (t < self.end_us)


def make_queries(gallery: Gallery, count: int, cameras: int, seed: int) -> list[Query]:
    rng = np.random.default_rng([seed, 5])
    vectors = gallery.queries(count)
    starts = rng.integers(0, (SPAN_DAYS - WINDOW_DAYS) * DAY_US, count)
    return [
        Query(
            vectors[i], int(rng.integers(0, cameras)), int(starts[i]), int(starts[i]) + WINDOW_DAYS * DAY_US
        )
        for i in range(count)
    ]


def filtered_truth(gallery: Gallery, meta: Metadata, queries: list[Query], k: int) -> list[set[int]]:
    """Exact filtered top-k ids per query, chunk by chunk (the gallery is regenerated, not held twice)."""
    q = np.stack([query.vector for query in queries])
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.empty((len(q), 0), dtype=np.int64)
    for ids, x in gallery.chunks():
        s = q @ x.T
        for row, query in enumerate(queries):
            s[row, ~query.mask(meta, ids)] = -np.inf
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(ids, (len(q), len(ids)))], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return [set(i[np.isfinite(s)].tolist()) for s, i in zip(best_s, best_i, strict=True)]


# --------------------------------------------------------------------------------------------- engines


class Engine:
    """One vector store under test: build it, then filtered / unfiltered single-query searches."""

    name = ""

    def build(self, gallery: Gallery, meta: Metadata, batch: int) -> dict:
        raise NotImplementedError

    def search(self, query: Query, k: int, meta: Metadata, filtered: bool) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FaissEngine(Engine):
    def __init__(self, kind: str, dim: int) -> None:
        from service.vectorstore import create_store

        self.name = f"faiss-{kind}"
        self.store = create_store(dim, kind)
        self.all_ids: np.ndarray | None = None

    def build(self, gallery: Gallery, meta: Metadata, batch: int) -> dict:
        seconds = 0.0
        if self.store.kind != "flat":
            sample = next(iter(gallery.chunks()))[1]
            start = time.perf_counter()
            self.store.train_if_needed(sample)
            seconds += time.perf_counter() - start
        for ids, x in gallery.chunks():  # generating the vectors is not timed, only adding them
            start = time.perf_counter()
            for s in range(0, len(ids), batch):
                self.store.add(ids[s : s + batch], x[s : s + batch])
            seconds += time.perf_counter() - start
        self.all_ids = np.arange(gallery.n, dtype=np.int64)
        return {"ingest_s": seconds, "searchable_s": seconds}

    def search(self, query: Query, k: int, meta: Metadata, filtered: bool) -> np.ndarray:
        allowed = self.all_ids[query.mask(meta, self.all_ids)] if filtered else None
        return self.store.search(query.vector, k, allowed_ids=allowed)[1][0]


class MilvusEngine(Engine):
    def __init__(self, index_type: str, dim: int, uri: str, collection: str) -> None:
        from service.vectorstore.milvus_store import MilvusVectorStore

        self.name = f"milvus-{index_type.lower()}"
        self.store = MilvusVectorStore(dim, uri=uri, collection=collection, index_type=index_type)
        self.epoch_us = 1_767_225_600 * 1_000_000  # 2026-01-01: capture times as the service stores them

    def build(self, gallery: Gallery, meta: Metadata, batch: int) -> dict:
        from service.vectorstore.base import ItemAttributes

        ingest = 0.0
        for ids, x in gallery.chunks():  # generating the vectors is not timed, only adding them
            start = time.perf_counter()
            for s in range(0, len(ids), batch):
                part = ids[s : s + batch]
                attributes = ItemAttributes(
                    camera_ids=tuple(f"cam-{c}" for c in meta.cameras[part].tolist()),
                    captured_us=tuple((self.epoch_us + meta.times_us[part]).tolist()),
                )
                self.store.add(part, x[s : s + batch], attributes=attributes)
            ingest += time.perf_counter() - start
        start = time.perf_counter()
        indexed = self.wait_until_indexed(gallery.n)
        return {
            "ingest_s": ingest,
            "searchable_s": ingest + time.perf_counter() - start if indexed else float("nan"),
        }

    def wait_until_indexed(self, n: int, timeout_s: float = 1800.0) -> bool:
        """Flush, then wait until Milvus reports every row indexed (False: it reports no progress)."""
        client, name = self.store.client, self.store.collection
        client.flush(name)
        return wait_indexed(client, name, n, timeout_s)
    def search(self, query: Query, k: int, meta: Metadata, filtered: bool) -> np.ndarray:
        from service.vectorstore.base import ItemFilter

        where = None
        if filtered:
            where = ItemFilter(
                cameras=(f"cam-{query.camera}",),
                start_us=self.epoch_us + query.start_us,
                end_us=self.epoch_us + query.end_us,
            )
        return self.store.search(query.vector, k, where=where)[1][0]

    def close(self) -> None:
        try:
            self.store.drop()
        finally:
            self.store.close()


def wait_indexed(client, name: str, n: int, timeout_s: float, poll_s: float = 1.0) -> bool:
    """Poll Milvus' index progress until ``indexed_rows`` reaches n (True), or its report lacks it (False);
    TimeoutError past ``timeout_s``. ``indexed_rows`` only: Milvus 2.3.5 kept reporting ~690,000
    ``pending_index_rows`` for a 1M collection minutes after all its rows were indexed (segments that compaction
    replaced, counted again), so a wait for no pending rows never ended (BENCHMARKS.md, "Milvus at 1M")."""
    deadline = time.monotonic() + timeout_s
    progress: dict = {}
    while time.monotonic() < deadline:
        for index_name in client.list_indexes(name):
            progress = client.describe_index(name, index_name)
        if "indexed_rows" not in progress:
            return False
        if int(progress["indexed_rows"]) >= n:
            return True
        time.sleep(poll_s)
    raise TimeoutError(f"Milvus indexed {progress.get('indexed_rows')} of {n} rows in {timeout_s:.0f} s")


def latencies(engine: Engine, queries: list[Query], k: int, meta: Metadata, filtered: bool):
    """(p50 ms, p99 ms, found ids per query) of single-query searches after a short warm-up."""
    for query in queries[:5]:
        engine.search(query, k, meta, filtered)
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        ids = engine.search(query, k, meta, filtered)
        times.append(time.perf_counter() - start)
        found.append(ids)
    ms = 1000 * np.array(times)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), found


def recall_at_k(found: list[np.ndarray], truth: list[set[int]], k: int) -> float:
    """Mean over queries of |found & truth| / min(k, |truth|) (queries whose filter matches nothing skipped)."""
    scores = [
        len(set(f[f >= 0].tolist()) & t) / min(k, len(t)) for f, t in zip(found, truth, strict=True) if len(t)
    ]
    return float(np.mean(scores)) if scores else float("nan")


# --------------------------------------------------------------------------------------------- the run


class MilvusServerHandle:
    """A Milvus URI: the one given, or a throwaway server started (lazily) with the tests' launcher."""

    def __init__(self, uri: str | None, overrides: dict | None = None) -> None:
        self.uri, self.server, self.error = uri, None, None
        self.overrides = overrides  # milvus.yaml keys for a throwaway server (tests.milvus.MilvusServer)

    def get(self) -> str:
        if self.uri is None and self.error is None:
            try:
                from tests.milvus import MilvusServer, package_present

                if not package_present():
                    raise RuntimeError("the PyPI packages milvus / pymilvus are not installed")
                self.server = MilvusServer(overrides=self.overrides).start()
                self.uri = self.server.uri
            except Exception as exc:  # noqa: BLE001 - reported as the skip reason
                self.error = f"no Milvus server ({str(exc).splitlines()[0]})"
        if self.error:
            raise RuntimeError(self.error)
        return self.uri

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def engine_factory(name: str, dim: int, milvus: MilvusServerHandle, run_id: str) -> Callable[[], Engine]:
    if name.startswith("faiss-"):
        return lambda: FaissEngine(name.split("-", 1)[1], dim)
    index_type = name.split("-", 1)[1].upper()
    return lambda: MilvusEngine(index_type, dim, milvus.get(), f"bench_{run_id}_{index_type.lower()}")


def run(args, milvus: MilvusServerHandle) -> list[dict]:
    run_id = dt.datetime.now(dt.UTC).strftime("%H%M%S")
    rows: list[dict] = []
    for n in args.sizes:
        gallery = Gallery(n, args.dim, args.seed, args.noise, args.per_identity, args.group_spread)
        meta = Metadata.make(n, args.cameras, args.seed)
        queries = make_queries(gallery, args.queries, args.cameras, args.seed)
        truth = filtered_truth(gallery, meta, queries, args.k)
        for name in args.engines:
            row = {"n": n, "engine": name}
            try:
                engine = engine_factory(name, args.dim, milvus, f"{run_id}_{n}")()
            except Exception as exc:  # noqa: BLE001 - an engine that cannot run is a skipped row
                row["skipped"] = str(exc).splitlines()[0]
                logger.warning("%s at %d: skipped (%s)", name, n, row["skipped"])
                rows.append(row)
                append_json_line(args.json, row)
                continue
            try:
                logger.info("%s: building %d vectors", name, n)
                row.update(engine.build(gallery, meta, args.batch))
                row["ingest_per_s"] = n / row["ingest_s"]
                p50, p99, found = latencies(engine, queries, args.k, meta, filtered=True)
                row.update(filtered_p50_ms=p50, filtered_p99_ms=p99, recall=recall_at_k(found, truth, args.k))
                row["unfiltered_p50_ms"] = latencies(engine, queries, args.k, meta, filtered=False)[0]
                row["load"] = os.getloadavg()[0]
            except Exception as exc:  # noqa: BLE001 - one engine's failure does not lose the others
                row["failed"] = str(exc).splitlines()[0]
                logger.exception("%s at %d failed", name, n)
            finally:
                engine.close()
                del engine
                gc.collect()
            logger.info("%s", row)
            rows.append(row)
            append_json_line(args.json, row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| vectors | engine | ingest (vectors/s) | searchable after (s) | filtered p50 / p99 (ms) | recall@10 "
        "| unfiltered p50 (ms) | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r or "failed" in r:
            lines.append(
                f"| {r['n']:,} | {r['engine']} | {'skipped' if 'skipped' in r else 'FAILED'}: "
                f"{r.get('skipped') or r.get('failed')} | | | | | |"
            )
            continue
        lines.append(
            f"| {r['n']:,} | {r['engine']} | {r['ingest_per_s']:,.0f} | {r['searchable_s']:.1f} | "
            f"{r['filtered_p50_ms']:.1f} / {r['filtered_p99_ms']:.1f} | {r['recall']:.3f} | "
            f"{r['unfiltered_p50_ms']:.1f} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--milvus-uri", help="a running Milvus (default: start a throwaway local one)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000, help="vectors per add() call")
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.8)
    parser.add_argument("--per-identity", type=int, default=5)
    parser.add_argument("--group-spread", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="*",
        default=[1, 2],
        help="then bench.replicas over HTTP with these replica counts (on the same Milvus); none: skip it",
    )
    parser.add_argument("--replica-size", type=int, default=20_000, help="gallery items of the replica stage")
    parser.add_argument("--record", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = machine_description()
    started = time.perf_counter()
    milvus = MilvusServerHandle(args.milvus_uri)
    try:
        rows = run(args, milvus)
        minutes = (time.perf_counter() - started) / 60
        replicas_rc = run_replicas(args, milvus, argv)
    finally:
        milvus.stop()
    text = (
        f"\n## Scale-out vector stores (bench/scale.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {machine}. Command: `{command_line(argv)}` ({minutes:.1f} min). "
        f"Filter: 1 camera of {args.cameras} and a {WINDOW_DAYS}-day window of {SPAN_DAYS} days; "
        f"{args.queries} single-query searches, k={args.k}; load = 1-minute load average after each engine.\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    if args.record:
        append_section(text)
    return 0 if all("failed" not in r for r in rows) and replicas_rc == 0 else 1


def run_replicas(args, milvus: MilvusServerHandle, argv: list[str] | None) -> int:
    """The replica stage (bench/replicas.py) on the same Milvus server, recorded as its own section."""
    if not args.replicas:
        return 0
    from bench import replicas

    stage = ["--replicas", *map(str, args.replicas), "--size", str(args.replica_size)]
    try:
        stage += ["--vector-store", "milvus", "--milvus-uri", milvus.get()]
    except RuntimeError as exc:
        logger.warning("replica stage on faiss per replica: %s", exc)
    if args.record:
        stage.append("--record")
    return replicas.main(stage, invoked_as=f"{command_line(argv)}, its replica stage")


if __name__ == "__main__":
    raise SystemExit(main())
