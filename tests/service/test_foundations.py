"""Settings safety, migrations vs models, SQLite pragmas, storage and the micro-batcher."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from service.batcher import MicroBatcher
from service.db import alembic_config, make_engine, upgrade_database
from service.settings import Settings, SettingsError
from service.storage import ImageStore
from service.tables import Base
from tests.service.service_fixtures import run_async


def test_settings_refuse_insecure_values_outside_dev_mode(tmp_path):
    with pytest.raises(SettingsError, match="REID_WEIGHTS"):
        Settings(_env_file=None, data_dir=tmp_path).check_safe()
    weights = tmp_path / "w.pt"
    with pytest.raises(SettingsError, match="well-known dev key"):
        Settings(_env_file=None, weights=weights, api_keys="ops:admin:dev-admin-key").check_safe()
    with pytest.raises(SettingsError, match="shorter"):
        Settings(_env_file=None, weights=weights, api_keys="ops:admin:short").check_safe()
    Settings(_env_file=None, weights=weights, api_keys="ops:admin:" + "x" * 32).check_safe()
    dev = Settings(_env_file=None, dev_mode=True)
    dev.check_safe()
    assert {role for _, role, _ in dev.bootstrap_keys()} == {"admin", "search", "ingest"}
    assert Settings(_env_file=None).bootstrap_keys() == []


def test_settings_read_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REID_PORT", "9001")
    monkeypatch.setenv("REID_API_KEYS", "search:" + "s" * 20 + ",feed:ingest:" + "i" * 20)
    monkeypatch.setenv("REID_DATA_DIR", str(tmp_path))
    settings = Settings(_env_file=None)
    assert settings.port == 9001
    assert [(n, r) for n, r, _ in settings.bootstrap_keys()] == [("search", "search"), ("feed", "ingest")]
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'reid.db'}"
    monkeypatch.setenv("REID_API_KEYS", "feed:superuser:" + "i" * 20)
    with pytest.raises(ValueError, match="unknown role"):
        Settings(_env_file=None)


def test_index_storage_defaults_to_int8_for_the_flat_index_only(monkeypatch, tmp_path):
    monkeypatch.setenv("REID_DATA_DIR", str(tmp_path))
    assert Settings(_env_file=None).index_storage == "int8"
    assert Settings(_env_file=None, index_kind="hnsw").index_storage == "fp32"  # ivf / hnsw hold float32
    assert Settings(_env_file=None, index_storage="fp32").index_storage == "fp32"
    with pytest.raises(ValueError, match="int8 is for REID_INDEX_KIND=flat"):
        Settings(_env_file=None, index_kind="ivf", index_storage="int8")
    monkeypatch.setenv("REID_INDEX_KIND", "hnsw")  # asked for in the environment: refused the same way
    monkeypatch.setenv("REID_INDEX_STORAGE", "bf16")
    with pytest.raises(ValueError, match="bf16 is for REID_INDEX_KIND=flat"):
        Settings(_env_file=None)


def test_migrations_produce_the_models_schema(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_database(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert set(inspect(engine).get_table_names()) >= {
        "gallery_items",
        "api_keys",
        "audit_log",
        "alembic_version",
    }
    upgrade_database(engine)  # idempotent
    engine.dispose()


def test_migrations_produce_the_models_schema_on_postgresql(postgres_url):
    engine = make_engine(postgres_url)
    upgrade_database(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert (
            context.get_current_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
        )
    assert set(inspect(engine).get_table_names()) >= {
        "gallery_items",
        "api_keys",
        "audit_log",
        "alembic_version",
    }
    upgrade_database(engine)  # idempotent
    engine.dispose()


def test_storage_names_by_hash_atomically_and_sweeps(tmp_path):
    from PIL import Image

    store = ImageStore(tmp_path / "images", thumbnail_size=32)
    image = Image.new("RGB", (40, 100), (10, 20, 30))
    digest = "ab" * 32
    rel, thumb = store.write(digest, b"payload", "png", store.thumbnail(image))
    assert rel == f"ab/ab/{digest}.png" and (tmp_path / "images" / rel).read_bytes() == b"payload"
    with Image.open(store.path(thumb)) as t:
        assert max(t.size) == 32
    (tmp_path / "images" / "ab" / "ab" / ".tmp-dead-x.png").write_bytes(b"half")
    (tmp_path / "images" / "cd").mkdir()
    (tmp_path / "images" / "cd" / "orphan.png").write_bytes(b"orphan")
    assert store.sweep({rel, thumb}) == 2
    assert sorted(p.name for p in (tmp_path / "images").rglob("*") if p.is_file()) == sorted(
        [f"{digest}.png", f"{digest}.thumb.jpg"]
    )
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_batcher_coalesces_and_returns_each_callers_rows():
    calls: list[list] = []
    thread_ids: set[int] = set()

    def fn(items):
        calls.append(list(items))
        thread_ids.add(threading.get_ident())
        return np.array([[float(x), -float(x)] for x in items], dtype=np.float32)

    async def main():
        batcher = MicroBatcher(fn, batch_size=64, batch_wait_ms=50)
        await batcher.start()
        loop_thread.append(threading.get_ident())
        results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
        await batcher.stop()
        return results

    loop_thread: list[int] = []
    results = run_async(main)
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows[:, 0], [i, i + 100])
    assert len(calls) < 10  # coalesced
    assert sum(len(c) for c in calls) == 20
    assert loop_thread[0] not in thread_ids  # the model ran off the event loop's thread


def test_batcher_error_reaches_only_the_caller_that_caused_it():
    def fn(items):
        if "bad" in items:
            raise ValueError("bad item")
        return np.ones((len(items), 3), dtype=np.float32)

    async def main():
        batcher = MicroBatcher(fn, batch_size=8, batch_wait_ms=50)
        await batcher.start()
        results = await asyncio.gather(
            batcher.submit(["a"]), batcher.submit(["bad"]), batcher.submit(["b", "c"]), return_exceptions=True
        )
        await batcher.stop()
        return results

    ok_a, bad, ok_bc = run_async(main)
    assert ok_a.shape == (1, 3) and ok_bc.shape == (2, 3)
    assert isinstance(bad, ValueError) and "bad item" in str(bad)


def test_batcher_respects_batch_size():
    sizes: list[int] = []

    def fn(items):
        sizes.append(len(items))
        return np.zeros((len(items), 1), dtype=np.float32)

    async def main():
        batcher = MicroBatcher(fn, batch_size=4, batch_wait_ms=20)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([i]) for i in range(10)))
        await batcher.stop()

    run_async(main)
    assert sum(sizes) == 10 and max(sizes) <= 4


def test_app_refuses_to_start_without_weights_outside_dev_mode(tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", api_keys="ops:admin:" + "k" * 24)
    with pytest.raises(SettingsError, match="REID_WEIGHTS"), TestClient(create_app(settings)):
        pass
    assert not (tmp_path / "data" / "reid.db").exists()  # refused before touching anything
