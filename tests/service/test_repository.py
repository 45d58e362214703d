"""The gallery data-access module: id lists larger than one statement's parameter limit, one embedding decoder."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from service import repository
from service.app import create_app
from service.db import make_engine, make_sessionmaker, upgrade_database, write_session
from service.tables import GalleryItem, decode_embedding
from tests.service.service_fixtures import SEARCH

pytestmark = pytest.mark.databases("sqlite", "postgresql")

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def small_parameter_limit():
    """Every new SQLite connection allows only 999 bound parameters per statement (the limit of SQLite
    builds before 3.32, and the kind of limit any database has)."""

    def limit(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    event.listen(Engine, "connect", limit)
    yield
    event.remove(Engine, "connect", limit)


def fill(url: str, n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n rows with random unit vectors (no image files); returns the vectors (row i has id i + 1)."""
    engine = make_engine(url)
    upgrade_database(engine)
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        {
            "content_hash": f"h{i:063d}",
            "camera_id": f"cam-{i % 3}",
            "captured_at": T0 + timedelta(seconds=i),
            "image_path": f"x/{i}.jpg",
            "thumbnail_path": f"x/{i}.thumb.jpg",
            "media_type": "image/jpeg",
            "width": 32,
            "height": 64,
            "embedding": vectors[i].tobytes(),
            "embedding_dim": dim,
            "visitor_id": i + 1,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(GalleryItem), rows)
    engine.dispose()
    return vectors


def test_chunked_splits_and_converts():
    assert list(repository.chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(repository.chunked([])) == []
    (chunk,) = repository.chunked(np.array([7], dtype=np.int64))
    assert chunk == [7] and type(chunk[0]) is int


def test_lists_beyond_the_parameter_limit(tmp_path, small_parameter_limit):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    n = 2500
    vectors = fill(url, n, dim=8)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            ids = repository.all_ids(session)
            assert ids.tolist() == list(range(1, n + 1))
            got = repository.vectors_by_id(session, ids)
            assert len(got) == n
            np.testing.assert_array_equal(got[1234], vectors[1233])
            known = repository.by_content_hash(session, [f"h{i:063d}" for i in range(n)] + ["nope"])
            assert len(known) == n and known[f"h{41:063d}"] == (42, 42)
            item = session.get(GalleryItem, 7)
            np.testing.assert_array_equal(item.vector(), vectors[6])
        with write_session(sessions) as session:
            repository.set_visitor(session, range(1, 2001), 5)
        with sessions() as session:
            assert len(repository.ids_where(session, visitor_id=5)) == 2000
        with write_session(sessions) as session:
            deleted, files = repository.delete_rows(session, list(range(1, 2001)) + [99_999])
        assert deleted == list(range(1, 2001))
        assert len(files) == 4000 and "x/0.jpg" in files
        with sessions() as session:
            assert repository.count(session) == n - 2000
    finally:
        engine.dispose()


def test_stored_embeddings_are_decoded_and_checked():
    vector = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(decode_embedding(vector.tobytes()), vector)
    with pytest.raises(ValueError, match="3 values, expected 4"):
        decode_embedding(vector[:3].tobytes(), 4)
    item = GalleryItem(embedding=vector[:3].tobytes(), embedding_dim=4)
    with pytest.raises(ValueError, match="expected 4"):
        item.vector()


def test_search_with_the_largest_top_k_beyond_the_parameter_limit(settings, embedder, small_parameter_limit):
    """top_k 1000 + overfetch asks the database for more than 999 ids at once (failed before)."""
    fill(settings.resolved_database_url, 1100, embedder.dim)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        r = client.post("/search", data={"gallery_id": 1, "top_k": 1000}, headers=SEARCH)
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 1000
        assert 1 not in {h["id"] for h in hits}  # the query item itself is excluded
