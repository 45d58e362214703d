"""`reid migrate-store` from SQLite + faiss into PostgreSQL + Milvus, on the real servers (tests/postgres.py,
tests/milvus.py): interrupted after two batches, resumed by the same command, then checked inside Milvus."""

from __future__ import annotations

import numpy as np
import pytest

from service.db import make_engine
from service.migrate import epoch_us, migrate, milvus_target
from service.tables import GalleryItem
from tests.service.test_migrate_store import DELETED, ITEMS, cli, rows, source  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("postgres_cluster")


def test_sqlite_faiss_to_postgresql_milvus_interrupted_and_resumed(
    source,  # noqa: F811 - the fixture imported above
    postgres_url,
    milvus_server,
    milvus_collection,
    capsys,
):
    spec = f"milvus://127.0.0.1:{milvus_server.port}/{milvus_collection}"
    source_engine, target_engine = make_engine(source.resolved_database_url), make_engine(postgres_url)
    calls = []

    def stop_after_two(table, done):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    target = milvus_target(spec, source)
    with pytest.raises(KeyboardInterrupt):
        migrate(
            source_engine,
            target_engine,
            target,
            source_images=source.images_dir,
            batch=10,
            on_batch=stop_after_two,
        )
    assert len(target.store) == 20
    target.close()
    source_engine.dispose()
    target_engine.dispose()

    rc = cli("--data-dir", str(source.data_dir), "--to-database", postgres_url, "--to-vectors", spec)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"vectors in Milvus collection {milvus_collection}" in out and "(34 added)" in out

    items = rows(postgres_url, GalleryItem.__table__)
    assert len(items) == ITEMS - len(DELETED)
    check = milvus_target(spec, source)
    check.open(16, lambda: np.empty((0, 16), np.float32))
    store = check.store
    assert np.array_equal(store.ids(), [r[0] for r in items])
    # camera and capture time went along: a filtered search inside Milvus finds the item among its camera's
    from service.vectorstore.base import ItemFilter

    item = items[10]
    vector = np.frombuffer(item[10], dtype=np.float32).copy()
    moment = epoch_us(item[3])
    scores, ids = store.search(
        vector, 3, where=ItemFilter(cameras=(item[2],), start_us=moment, end_us=moment + 1)
    )
    assert ids[0, 0] == item[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert (ids[0, 1:] == -1).all()  # no other item of that camera at that microsecond

    # a collection that holds a vector the database lacks (another gallery's) fails the final check
    from service.vectorstore.base import ItemAttributes

    store.add(
        np.array([999]), vector[None, :], attributes=ItemAttributes(camera_ids=("x",), captured_us=(0,))
    )
    assert cli("--data-dir", str(source.data_dir), "--to-database", postgres_url, "--to-vectors", spec) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the vector store holds 55 ids" in err
