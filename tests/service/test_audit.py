"""Search audit records: off the search's path (no write lock), none lost in a burst, a failed write or a shut-down."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.app import create_app
from service.audit import AuditWriter
from service.db import make_engine, make_sessionmaker, upgrade_database
from service.tables import AuditLog
from tests.service.service_fixtures import ADMIN, SEARCH, identity_image, ingest

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")


def count_searches(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count(AuditLog.id)).where(AuditLog.action == "search")
            ).scalar_one()
    finally:
        engine.dispose()


def test_search_does_not_wait_for_the_database_write_lock(client, settings):
    """Before, every search wrote its audit record in a BEGIN IMMEDIATE transaction: a search waited
    for any other writer (an ingest's commit), here up to the 30 s busy timeout."""
    item = ingest(client, [identity_image(0, 0)]).json()["items"][0]["id"]
    holder = sqlite3.connect(settings.data_dir / "reid.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    answers = []
    try:
        searcher = threading.Thread(
            target=lambda: answers.append(
                client.post("/search", data={"gallery_id": item, "top_k": 5}, headers=SEARCH)
            )
        )
        searcher.start()
        searcher.join(timeout=15)
        assert not searcher.is_alive(), "the search waited for the write lock"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers[0].status_code == 200
    audit = client.get("/audit", params={"action": "search"}, headers=ADMIN).json()
    assert audit["total"] == 1 and audit["items"][0]["detail"]["gallery_id"] == item


def test_a_burst_of_searches_is_audited_completely_after_a_clean_shutdown(settings, embedder):
    searches = 120
    with TestClient(create_app(settings, embedder=embedder)) as client:
        item = ingest(client, [identity_image(1, 0)]).json()["items"][0]["id"]

        def one(i):
            data = {"gallery_id": item, "top_k": 1 + i % 7}
            return client.post("/search", data=data, headers=SEARCH).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(searches))) == {200}
    # the app has stopped: everything queued was written before the database was closed
    assert count_searches(settings.resolved_database_url) == searches


def test_failed_writes_are_retried_and_close_writes_the_rest(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    writer = AuditWriter(make_sessionmaker(engine), batch_size=50, retry_s=0.01)
    real_write = writer._write
    failures = []

    def flaky(rows):
        if len(failures) < 3:
            failures.append(len(rows))
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        real_write(rows)

    monkeypatch.setattr(writer, "_write", flaky)
    for i in range(300):  # submitted before the thread starts: it meets a backlog
        writer.submit("k", "search", {"n": i}, hits=i % 3)
    writer.start()
    assert writer.flush(timeout=30)
    assert len(failures) == 3 and writer.backlog == 0
    for i in range(300, 1000):
        writer.submit("k", "search", {"n": i}, hits=0)
    writer.close()
    writer.submit("k", "search", {"n": 1000}, hits=0)  # after close: written at once
    engine.dispose()
    assert count_searches(url) == 1001
    engine = make_engine(url)
    with engine.connect() as conn:
        numbers = [json.loads(d)["n"] for d in conn.execute(select(AuditLog.detail)).scalars()]
    engine.dispose()
    assert sorted(numbers) == list(range(1001))
