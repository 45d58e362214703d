"""GET /metrics at the size of a large store: time, answer size and memory of the footfall endpoint.

    python -m bench.footfall_api [--cameras 106] [--sightings 200000] [--days 365] [--record]

Fills a SQLite gallery with bare rows (no images, no vectors: the endpoint reads neither) spread at random
over `--cameras` cameras and the last `--days` days, then calls the GET /metrics handler directly (no HTTP,
no model: the endpoint uses neither) and JSON-encodes its answer, for:

- the year by the hour over every camera (the request that once answered 133.8 MB in 13.6 s),
- the year by the day over every camera,
- the last day by the hour over every camera,

and reports status, seconds, response bytes, series rows and the growth of the process's peak RSS.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.report import append_section, command_line, machine_description


def fill(settings, cameras: int, sightings: int, days: int, end: datetime) -> None:
    from sqlalchemy import insert

    from service.db import make_engine, make_sessionmaker, upgrade_database
    from service.tables import GalleryItem

    engine = make_engine(settings.resolved_database_url)
    upgrade_database(engine)
    rng = np.random.default_rng(0)
    offsets = rng.integers(0, days * 86400, sightings)
    camera = rng.integers(0, cameras, sightings)
    visitor = rng.integers(1, max(2, sightings // 3), sightings)
    rows = [
        {
            "content_hash": uuid.uuid4().hex,
            "camera_id": f"cam{int(c):03d}",
            "captured_at": end - timedelta(seconds=int(o)),
            "image_path": "x",
            "thumbnail_path": "x",
            "media_type": "image/png",
            "width": 8,
            "height": 8,
            "embedding": b"",
            "embedding_dim": 0,
            "visitor_id": int(v),
        }
        for o, c, v in zip(offsets, camera, visitor, strict=True)
    ]
    with make_sessionmaker(engine)() as session, session.begin():
        for start in range(0, len(rows), 20_000):
            session.execute(insert(GalleryItem), rows[start : start + 20_000])
    engine.dispose()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", type=int, default=106)
    parser.add_argument("--sightings", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()

    import json
    from types import SimpleNamespace

    from service.db import make_engine, make_sessionmaker
    from service.errors import ApiError
    from service.routes.footfall import footfall_metrics
    from service.settings import Settings

    machine = machine_description()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, dev_mode=True, data_dir=Path(tmp) / "data", retention_days=0)
        t = time.perf_counter()
        filler = multiprocessing.get_context("fork").Process(
            target=fill, args=(settings, args.cameras, args.sightings, args.days, end)
        )  # in a child process, so that this one's peak RSS is the endpoint's
        filler.start()
        filler.join()
        fill_s = time.perf_counter() - t
        engine = make_engine(settings.resolved_database_url)
        ctx = SimpleNamespace(settings=settings, sessions=make_sessionmaker(engine))
        requests = [
            ("a year by the hour, every camera", end - timedelta(days=366), "1h"),
            ("a year by the day, every camera", end - timedelta(days=366), "1d"),
            ("a day by the hour, every camera", end - timedelta(days=1), "1h"),
        ]
        rows = []
        for name, start, bucket in requests:
            before = peak_rss_mb()
            t = time.perf_counter()
            try:  # the route's handler and the JSON encoding of its answer (no HTTP)
                body = footfall_metrics(
                    ctx=ctx,
                    _=None,
                    start=start.isoformat(),
                    end=end.isoformat(),
                    bucket=bucket,
                    camera_id=None,
                )
                size, status, series = len(json.dumps(body)), 200, len(body["series"])
            except ApiError as exc:
                size, status, series = len(exc.message), exc.status, "-"
                name += f" ({exc.message})"
            seconds = time.perf_counter() - t
            rows.append(
                f"| {name} | {status} | {seconds:.2f} | {size / 1e6:.2f} | {series} | {peak_rss_mb() - before:.0f} |"
            )
        engine.dispose()
    table = "\n".join(
        [
            "| request | status | seconds | MB | series rows | peak RSS growth (MB) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    text = (
        f"\n## GET /metrics at store scale ({datetime.now(UTC):%Y-%m-%d})\n\n"
        f"`{command_line()}` on {machine}. {args.sightings} bare sightings over {args.cameras} cameras and "
        f"{args.days} days (filled in {fill_s:.0f} s); one call each of the route's handler plus json.dumps "
        "of its answer (no HTTP). A loaded shared machine: take the seconds as an upper bound.\n\n"
        + table
        + "\n"
    )
    print(text)
    if args.record:
        append_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
