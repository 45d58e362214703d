"""How long moving and rebuilding a gallery takes (docs/scale.md, "Backup and restore").

    python -m bench.rebuild --items 20000 --record

1. `reid migrate-store` (service.migrate.migrate) of an SQLite gallery of ``--items`` rows with 2048-d float32
   embeddings into a throwaway PostgreSQL 15 (tests/postgres.py) and a faiss flat file: rows per second.
2. Rebuilding the vector store from PostgreSQL's embeddings (what a lost Milvus / faiss file costs):
   ``GalleryIndex.open`` on a missing file reads every embedding in chunks and adds it: vectors per second.
3. PostgreSQL's bytes per item: ``gallery_items`` with its TOAST table, and with its indexes.

Rows are synthetic (no image files: migrate-store leaves them in place). Needs the PostgreSQL 15 binaries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, text

from bench.report import append_section, command_line, machine_description

logger = logging.getLogger("bench.rebuild")


def make_sqlite_gallery(path: Path, items: int, dim: int) -> str:
    from service.db import make_engine, upgrade_database
    from service.tables import GalleryItem

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade_database(engine)
    rng = np.random.default_rng(0)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for start in range(0, items, 1000):
            count = min(1000, items - start)
            vectors = rng.standard_normal((count, dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            conn.execute(
                insert(GalleryItem),
                [
                    dict(
                        content_hash=f"{start + i:064x}",
                        camera_id=f"cam-{(start + i) % 10}",
                        captured_at=t0 + dt.timedelta(seconds=start + i),
                        image_path=f"x/{start + i}.jpg",
                        thumbnail_path=f"x/{start + i}.thumb.jpg",
                        media_type="image/jpeg",
                        width=64,
                        height=128,
                        embedding=vectors[i].tobytes(),
                        embedding_dim=dim,
                        visitor_id=start + i + 1,
                    )
                    for i in range(count)
                ],
            )
    engine.dispose()
    return url


def main(argv: list[str] | None = None) -> int:
    from service.db import make_engine, make_sessionmaker
    from service.gallery_index import GalleryIndex
    from service.migrate import FaissTarget, migrate
    from tests.postgres import PostgresCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = machine_description()
    cluster = PostgresCluster().start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            source = make_engine(make_sqlite_gallery(folder / "src.db", args.items, args.dim))
            target = make_engine(cluster.database())
            start = time.perf_counter()
            migrate(source, target, FaissTarget(folder / "moved.faiss"), source_images=folder / "images")
            migrate_s = time.perf_counter() - start
            start = time.perf_counter()
            GalleryIndex.open(folder / "rebuilt.faiss", args.dim, "flat", make_sessionmaker(target))
            rebuild_s = time.perf_counter() - start
            with target.connect() as conn:
                table_bytes, total_bytes = conn.execute(
                    text("SELECT pg_table_size('gallery_items'), pg_total_relation_size('gallery_items')")
                ).one()
            source.dispose()
            target.dispose()
    finally:
        cluster.stop()
    n = args.items
    report = (
        f"\n## Moving and rebuilding a gallery (bench/rebuild.py) — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {machine}. Command: `{command_line(argv)}`. {n:,} items with {args.dim}-d float32 embeddings.\n\n"
        "| step | seconds | items/s | 1,000,000 items at this rate |\n|---|---:|---:|---:|\n"
        f"| migrate-store SQLite -> PostgreSQL 15 + faiss flat file | {migrate_s:.1f} | {n / migrate_s:,.0f} "
        f"| {1e6 / (n / migrate_s) / 60:.0f} min (extrapolated) |\n"
        f"| rebuild the faiss flat store from PostgreSQL | {rebuild_s:.1f} | {n / rebuild_s:,.0f} "
        f"| {1e6 / (n / rebuild_s) / 60:.0f} min (extrapolated) |\n\n"
        f"PostgreSQL `gallery_items` per item: {table_bytes / n:,.0f} bytes of table (TOAST included: the "
        f"embedding is {4 * args.dim:,} bytes of it), {total_bytes / n:,.0f} bytes with its indexes "
        f"({total_bytes / n * 1e6 / 1e9:.1f} GB per million items).\n"
    )
    print(report)
    if args.record:
        append_section(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
