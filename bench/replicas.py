"""Replicas over HTTP: ingest and filtered search through 1, 2, ... `reid serve` processes on one PostgreSQL.

    python -m bench.replicas --record                                   # 1 and 2 replicas, faiss per replica
    python -m bench.replicas --vector-store milvus --record             # the replicas share a Milvus collection

For each replica count R (``--replicas``), on a fresh database of a throwaway PostgreSQL 15 (tests/postgres.py)
and, with ``--vector-store milvus``, a fresh collection of a throwaway Milvus (tests/milvus.py) or ``--milvus-uri``:

1. Pure embedding: the embedder on the same JPEG bytes in the service's batches (best of three), images/s.
2. Ingest: R replicas (bench.service.LiveService, each its own process) sharing the database and the image
   folder; ``--clients`` clients post ``--files-per-request`` images, request i to replica i mod R; images/s
   and its share of (1).
3. Search: the gallery is bulk-loaded to ``--size`` items (random unit vectors; the replicas are restarted and
   build their vector store from the database when it is faiss), then ``--clients`` clients send ``--searches``
   searches from a stored item with a camera + one-day filter, round-robin over the replicas: p50 / p99 per
   request. Every 10th search is asked of every replica: "same answers" says whether they all agreed.

On one machine the replicas share its cores with each other and with the clients: R replicas do not add
cores, so this measures the overhead of the replica set-up, not scale-out (say so next to the numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.report import append_json_line, append_section, command_line, machine_description
from bench.service import (
    ADMIN,
    LiveService,
    _client,
    _images_unique,
    _percentile,
    bench_ingest,
    bulk_load,
    make_embedder,
)
from service.settings import Settings

logger = logging.getLogger("bench.replicas")


def pure_embedding_s(embedder, images: list[bytes], batch: int) -> float:
    embedder.embed(images[:batch])  # warm-up
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(images), batch):
            embedder.embed(images[i : i + batch])
        runs.append(time.perf_counter() - started)
    return min(runs)


def search(urls: list[str], clients: int, searches: int, size: int, top_k: int) -> tuple[list[float], bool]:
    """Latencies of filtered searches from stored items, round-robin over the replicas; and whether every
    replica gave the same ids for the every-10th search asked of all of them."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, size + 1, searches)
    days = rng.integers(0, 5, searches)

    def form(i: int) -> dict:
        start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(days=int(days[i]))
        return {
            "gallery_id": int(ids[i]),
            "top_k": top_k,
            "camera_id": f"cam-{i % 5}",
            "start": start.isoformat(),
            "end": (start + dt.timedelta(days=1)).isoformat(),
        }

    def one(i: int):
        started = time.perf_counter()
        r = _client().post(f"{urls[i % len(urls)]}/search", data=form(i), headers=ADMIN)
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        return elapsed

    with ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(one, range(searches)))
    same = True
    for i in range(0, searches, 10):
        answers = []
        for url in urls:
            r = _client().post(f"{url}/search", data=form(i), headers=ADMIN)
            r.raise_for_status()
            answers.append([hit["id"] for hit in r.json()["hits"]])
        same &= all(a == answers[0] for a in answers)
    return times, same


@contextlib.contextmanager
def replicas(settings: Settings, model: dict, count: int):
    services = [LiveService(settings, model) for _ in range(count)]
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(service) for service in services]
        yield urls, max(s.startup_s for s in services)


def main(argv: list[str] | None = None, invoked_as: str | None = None) -> int:
    from tests.postgres import PostgresCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--vector-store", choices=("faiss", "milvus"), default="faiss")
    parser.add_argument("--milvus-uri", help="a running Milvus (default: a throwaway local server)")
    parser.add_argument("--variant", default="none")
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ingest-images", type=int, default=128)
    parser.add_argument("--files-per-request", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=20_000, help="gallery items for the search stage")
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    machine = machine_description()
    model = {
        "weights": None,
        "variant": args.variant,
        "input_size": list(args.input_size),
        "device": "cpu",
        "batch_size": args.batch_size,
    }
    embedder = make_embedder(model)
    images = _images_unique(args.ingest_images)
    pure_s = pure_embedding_s(embedder, images, args.batch_size)
    pure_rate = len(images) / pure_s
    rows = []
    cluster = PostgresCluster().start()
    milvus_server = None
    try:
        milvus_uri = args.milvus_uri
        if args.vector_store == "milvus" and milvus_uri is None:
            from tests.milvus import MilvusServer

            milvus_server = MilvusServer().start()
            milvus_uri = milvus_server.uri
        for count in args.replicas:
            with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
                values = dict(
                    dev_mode=True,
                    data_dir=Path(tmp),
                    database_url=cluster.database(),
                    batch_size=args.batch_size,
                    retention_days=0,
                    max_files_per_request=max(64, args.files_per_request),
                )
                if args.vector_store == "milvus":
                    values.update(
                        vector_store="milvus",
                        milvus_uri=milvus_uri,
                        milvus_collection=f"bench_replicas_{count}_{dt.datetime.now(dt.UTC):%H%M%S}",
                    )
                settings = Settings(_env_file=None, **values)
                with replicas(settings, model, count) as (urls, _):
                    ingest_s = bench_ingest(urls, images, args.clients, args.files_per_request)
                bulk_load(settings, args.size, embedder.dim)
                settings.index_path.unlink(missing_ok=True)
                with replicas(settings, model, count) as (urls, startup_s):
                    times, same = search(urls, args.clients, args.searches, args.size, args.top_k)
            row = {
                "replicas": count,
                "vector_store": args.vector_store,
                "ingest_images_per_s": len(images) / ingest_s,
                "pure_images_per_s": pure_rate,
                "ingest_share": len(images) / ingest_s / pure_rate,
                "size": args.size,
                "startup_s": startup_s,
                "search_p50_ms": 1000 * _percentile(times, 50),
                "search_p99_ms": 1000 * _percentile(times, 99),
                "same_answers": same,
                "load": os.getloadavg()[0],
            }
            logger.info("%s", row)
            rows.append(row)
            append_json_line(args.json, row)
    finally:
        if milvus_server is not None:
            milvus_server.stop()
        cluster.stop()
    table = [
        "| replicas | vector store | ingest images/s (share of pure embedding) | start-up with "
        f"{args.size:,} items (s) | filtered search p50 / p99 (ms) | same answers on every replica | load |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['replicas']} | {r['vector_store']} | {r['ingest_images_per_s']:.1f} ({r['ingest_share']:.0%}) | "
            f"{r['startup_s']:.1f} | {r['search_p50_ms']:.1f} / {r['search_p99_ms']:.1f} | "
            f"{'yes' if r['same_answers'] else 'NO'} | {r['load']:.1f} |"
        )
    text = (
        f"\n## Replicas over HTTP (bench/replicas.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {machine}. Command: `{invoked_as or command_line(argv)}`. Network: random-init `{args.variant}` at "
        f"{args.input_size[0]}x{args.input_size[1]}, CPU; pure embedding {pure_rate:.1f} images/s. "
        f"{args.clients} clients; replicas share this machine's cores (not scale-out).\n\n"
        + "\n".join(table)
        + "\n"
    )
    print(text)
    if args.record:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
