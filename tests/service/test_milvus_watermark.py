"""The Milvus write watermark through the database (service.gallery_index.database_watermark): two GalleryIndex
objects with their own database engine and Milvus client stand for two replicas. What one acknowledges (add or
remove returned) the other's very next search sees, at the default consistency (Session), and the watermark
in the database only ever rises. The two-process version over HTTP is tests/service/test_replicas.py."""

from __future__ import annotations

import numpy as np

from service import repository
from service.db import make_engine, make_sessionmaker, upgrade_database
from service.gallery_index import GalleryIndex, attributes, item_filter
from service.vectorstore import milvus_store as ms

DIM = 16


def replica(url: str, tmp_path, name: str, uri: str, collection: str) -> tuple[GalleryIndex, object]:
    sessions = make_sessionmaker(make_engine(url))
    index = GalleryIndex.open(
        tmp_path / name / "gallery.milvus",
        DIM,
        sessions=sessions,
        engine="milvus",
        uri=uri,
        collection=collection,
        index_type="FLAT",
    )
    return index, sessions


def test_what_one_replica_acknowledges_the_other_sees_at_once(tmp_path, milvus_server, milvus_collection):
    from datetime import UTC, datetime

    url = f"sqlite:///{tmp_path / 'reid.db'}"
    upgrade_database(make_engine(url))
    a, sessions = replica(url, tmp_path, "a", milvus_server.uri, milvus_collection)
    b, _ = replica(url, tmp_path, "b", milvus_server.uri, milvus_collection)
    assert a.store.consistency == b.store.consistency == ms.DEFAULT_CONSISTENCY == "Session"
    rng = np.random.default_rng(5)
    moment = datetime(2026, 11, 10, 10, tzinfo=UTC)
    where = item_filter(["cam-a"], moment, None)
    seen = []
    for round_ in range(10):
        writer, reader = (a, b) if round_ % 2 == 0 else (b, a)
        item = 1000 + round_
        vector = rng.standard_normal((1, DIM)).astype(np.float32)
        vector /= np.linalg.norm(vector)
        writer.add_new([item], vector, attributes(["cam-a"], [moment]))
        with sessions() as session:
            seen.append(repository.vector_watermark(session))
        _, found = reader.search(vector[0], 1, where=where)
        assert found[0][0] == item, f"round {round_}: the other replica missed an acknowledged add"
        writer.remove([item])
        _, found = reader.search(vector[0], 1, where=where)
        assert item not in found[0], f"round {round_}: the other replica still found an acknowledged remove"
    assert seen == sorted(seen) and seen[0] > 0  # recorded by every add, never lowered
    assert seen[-1] <= max(a.store._last_write_ts, b.store._last_write_ts)


def test_the_watermark_only_rises(tmp_path):
    url = f"sqlite:///{tmp_path / 'reid.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    sessions = make_sessionmaker(engine)
    from service.gallery_index import database_watermark

    read, record = database_watermark(sessions)
    assert read() == 0
    record(500)
    record(300)  # a slower replica's older write
    assert read() == 500
    record(2**62)
    assert read() == 2**62
