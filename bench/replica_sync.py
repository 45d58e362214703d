"""What keeping a per-replica faiss index in step costs a search: `GalleryIndex.sync` when nothing changed.

    python -m bench.replica_sync [--items 40] [--calls 2000]

Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1 (tests/postgres.py), ingests --items pictures through
the app with the tests' small random network, then times --calls syncs (ms per call) and, for comparison,
one statement in a pooled ORM session. Prints one JSON line. Needs the PostgreSQL 15 binaries.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from model.embedder import Embedder
    from service.app import create_app
    from tests.postgres import PostgresCluster
    from tests.service.service_fixtures import identity_image, ingest, make_settings

    cluster = PostgresCluster().start()
    try:
        url = cluster.database()
        embedder = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", batch_size=16)
        settings = make_settings(Path(tempfile.mkdtemp(prefix="reid-bench-")), database_url=url)
        with TestClient(create_app(settings, embedder=embedder)) as client:
            for start in range(0, args.items, 8):
                ingest(client, [identity_image(i % 6, i) for i in range(start, min(start + 8, args.items))])
            ctx = client.app.state.ctx

            def per_call(fn) -> float:
                for _ in range(50):
                    fn()
                began = time.perf_counter()
                for _ in range(args.calls):
                    fn()
                return (time.perf_counter() - began) / args.calls * 1e3

            def pooled_statement():
                with ctx.sessions() as session:
                    session.execute(text("SELECT 1")).scalar()

            result = {
                "bench": "replica_sync",
                "items": len(ctx.index),
                "sync_ms": round(per_call(lambda: ctx.index.sync(ctx.sessions)), 3),
                "pooled_session_statement_ms": round(per_call(pooled_statement), 3),
                "load_average": os.getloadavg()[0],
            }
        print(json.dumps(result))
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
