"""`reid migrate-store`: an SQLite + faiss gallery copied into PostgreSQL and a vector store, resumably.

The source gallery is written directly (rows, image files, a faiss file) so that it has several batches,
deleted ids and every table; the target is a fresh database of the session's PostgreSQL cluster.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, insert, select

from reid.cli import main as reid_main
from service.db import make_engine, make_sessionmaker, upgrade_database
from service.gallery_index import GalleryIndex
from service.migrate import FaissTarget, MigrationError, migrate
from service.storage import ImageStore
from service.tables import ApiKey, AuditLog, GalleryItem, ServiceState, Watch, WatchMatch
from service.vectorstore import load_store
from tests.service.service_fixtures import make_settings

ROOT = Path(__file__).resolve().parents[2]
DIM = 16
ITEMS = 57  # with batch 10: six batches of items, the last one short
DELETED = (5, 56, 57)  # the highest ids are deleted too: the sequence must still move past them
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def unit(rng, n):
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def source(tmp_path):
    """Settings of an SQLite + faiss gallery with ITEMS - len(DELETED) items, keys, audit lines and a watch."""
    settings = make_settings(tmp_path / "src")
    engine = make_engine(settings.resolved_database_url)
    upgrade_database(engine)
    images = ImageStore(settings.images_dir)
    vectors = unit(np.random.default_rng(0), ITEMS)
    with engine.begin() as conn:
        for i in range(ITEMS):
            digest = f"{i:064x}"
            image_rel, thumb_rel = images.write(digest, f"image {i}".encode(), "jpg", f"thumb {i}".encode())
            conn.execute(
                insert(GalleryItem).values(
                    content_hash=digest,
                    camera_id=f"cam-{i % 3}",
                    captured_at=T0 + timedelta(minutes=i),
                    image_path=image_rel,
                    thumbnail_path=thumb_rel,
                    media_type="image/jpeg",
                    width=32,
                    height=64,
                    embedding=vectors[i].tobytes(),
                    embedding_dim=DIM,
                    visitor_id=1 + (i // 4) * 4,
                    track_ref=f"cam-{i % 3}/a.mp4/{i // 4}",
                )
            )
        conn.execute(delete(GalleryItem).where(GalleryItem.id.in_(DELETED)))
        conn.execute(insert(ApiKey).values(name="ops", key_hash="a" * 64, role="admin"))
        for n in range(3):
            conn.execute(insert(AuditLog).values(action="search", detail='{"k": 5}', hits=n))
        conn.execute(insert(ServiceState).values(key="model", value="rga-sc test"))
        conn.execute(
            insert(Watch).values(
                label="red shirt",
                query_vector=vectors[0].tobytes(),
                threshold=0.8,
                cameras='["cam-0"]',
                expires_at=T0 + timedelta(days=1),
            )
        )
        conn.execute(
            insert(WatchMatch).values(watch_id=1, item_id=7, score=0.91, camera_id="cam-1", captured_at=T0)
        )
    sessions = make_sessionmaker(engine)
    GalleryIndex.open(settings.index_path, DIM, "flat", sessions, storage=settings.index_storage)  # the faiss file the service would have
    engine.dispose()
    return settings


def rows(url: str, table) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
    finally:
        engine.dispose()


def cli(*args: str) -> int:
    return reid_main(["migrate-store", *args])


@pytest.mark.usefixtures("postgres_cluster")
def test_sqlite_faiss_to_postgresql_keeps_rows_ids_vectors_and_images(source, postgres_url, tmp_path, capsys):
    target_index = tmp_path / "target" / "gallery.faiss"
    images_to = tmp_path / "shared-images"
    rc = cli(
        "--data-dir",
        str(source.data_dir),
        "--to-database",
        postgres_url,
        "--to-vectors",
        f"faiss:{target_index}",
        "--images-to",
        str(images_to),
        "--batch-size",
        "10",
    )
    out = capsys.readouterr().out.strip()
    assert rc == 0, out
    assert len(out.splitlines()) == 1 and out.startswith(f"migrated {ITEMS - len(DELETED)} items")
    source_url = source.resolved_database_url
    for table in (GalleryItem, ApiKey, AuditLog, ServiceState, Watch, WatchMatch):
        assert rows(postgres_url, table.__table__) == rows(source_url, table.__table__), table.__tablename__
    # every image and thumbnail is in the new folder, byte for byte, under the same relative path
    for item in rows(source_url, GalleryItem.__table__):
        for relative in (item[5], item[6]):
            assert (images_to / relative).read_bytes() == (source.images_dir / relative).read_bytes()
    # the vector file holds the stored embeddings under the item ids; the service loads it as is
    engine = make_engine(postgres_url)
    sessions = make_sessionmaker(engine)
    gallery = GalleryIndex.open(target_index, DIM, "flat", sessions, storage=source.index_storage)
    assert not gallery.rebuilt
    store = load_store(target_index)
    item = rows(source_url, GalleryItem.__table__)[10]
    scores, ids = store.search(np.frombuffer(item[10], dtype=np.float32).copy(), 1)
    assert ids[0, 0] == item[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # ids are never reused: a new row gets an id above every id SQLite gave out (57 was deleted)
    with sessions() as session, session.begin():
        session.add(ApiKey(name="new", key_hash="b" * 64, role="search"))
        session.add(
            GalleryItem(
                content_hash="f" * 64,
                camera_id="cam-9",
                captured_at=T0,
                image_path="x.jpg",
                thumbnail_path="x.thumb.jpg",
                media_type="image/jpeg",
                width=1,
                height=1,
                embedding=b"\0" * 4 * DIM,
                embedding_dim=DIM,
            )
        )
    with sessions() as session:
        assert session.scalar(select(func.max(GalleryItem.id))) == ITEMS + 1
        assert session.scalar(select(ApiKey.id).where(ApiKey.name == "new")) == 2
    engine.dispose()


@pytest.mark.usefixtures("postgres_cluster")
def test_an_interrupted_migration_continues_without_duplicates(source, postgres_url, tmp_path, capsys):
    """Stopped after two committed batches (as Ctrl-C would), then run again: the same end state."""
    source_engine = make_engine(source.resolved_database_url)
    target_engine = make_engine(postgres_url)
    vector_file = tmp_path / "v.faiss"
    seen = []

    def stop_after_two(table, done):
        seen.append((table, done))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(
            source_engine,
            target_engine,
            FaissTarget(vector_file, storage=source.index_storage),
            source_images=source.images_dir,
            batch=10,
            on_batch=stop_after_two,
        )
    assert len(rows(postgres_url, GalleryItem.__table__)) == 20
    assert len(load_store(vector_file)) == 20  # what was added is saved when interrupted
    source_engine.dispose()
    target_engine.dispose()

    rc = cli(
        "--data-dir",
        str(source.data_dir),
        "--to-database",
        postgres_url,
        "--to-vectors",
        f"faiss:{vector_file}",
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{ITEMS - len(DELETED) - 20 + 1 + 3 + 1 + 1 + 1} rows copied, 20 already there" in out
    assert "(34 added)" in out
    assert rows(postgres_url, GalleryItem.__table__) == rows(
        source.resolved_database_url, GalleryItem.__table__
    )
    assert np.array_equal(
        load_store(vector_file).ids(), [r[0] for r in rows(postgres_url, GalleryItem.__table__)]
    )
    # a third run finds everything there and changes nothing
    assert (
        cli(
            "--data-dir",
            str(source.data_dir),
            "--to-database",
            postgres_url,
            "--to-vectors",
            f"faiss:{vector_file}",
        )
        == 0
    )
    assert "0 rows copied" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("postgres_cluster")
def test_a_killed_migration_process_is_resumed(source, postgres_url, tmp_path):
    """kill -9 in the middle (after the first committed batches), then the same command finishes the job."""
    vector_file = tmp_path / "v.faiss"
    command = [
        sys.executable,
        "-m",
        "reid",
        "migrate-store",
        "--data-dir",
        str(source.data_dir),
        "--to-database",
        postgres_url,
        "--to-vectors",
        f"faiss:{vector_file}",
        "--batch-size",
        "1",
    ]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # progress lines: one per committed batch
        if "gallery_items: 5 rows" in line:
            proc.kill()
            break
    proc.wait(timeout=60)
    copied = len(rows(postgres_url, GalleryItem.__table__))
    assert 5 <= copied < ITEMS - len(DELETED)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert rows(postgres_url, GalleryItem.__table__) == rows(
        source.resolved_database_url, GalleryItem.__table__
    )
    assert len(load_store(vector_file)) == ITEMS - len(DELETED)


@pytest.mark.usefixtures("postgres_cluster")
def test_a_target_holding_other_data_fails_the_check_and_the_source_is_untouched(
    source, postgres_url, tmp_path, capsys
):
    engine = make_engine(postgres_url)
    upgrade_database(engine)
    with engine.begin() as conn:  # another gallery's key, not in the source
        conn.execute(insert(ApiKey).values(id=99, name="other", key_hash="c" * 64, role="admin"))
    engine.dispose()
    before = rows(source.resolved_database_url, GalleryItem.__table__)
    rc = cli(
        "--data-dir",
        str(source.data_dir),
        "--to-database",
        postgres_url,
        "--to-vectors",
        f"faiss:{tmp_path / 'v.faiss'}",
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and "api_keys: 1 rows in the source, 2 in the target" in err
    assert rows(source.resolved_database_url, GalleryItem.__table__) == before


def test_bad_arguments_are_one_line_errors(source, tmp_path, capsys):
    common = ["--data-dir", str(source.data_dir)]
    cases = [
        (
            [*common, "--to-database", source.resolved_database_url, "--to-vectors", "faiss"],
            "is the source database",
        ),
        ([*common, "--to-database", "sqlite:///x.db", "--to-vectors", "annoy"], "is not a vector store"),
        ([*common, "--to-database", "nosuchdb://x", "--to-vectors", "faiss"], "cannot use --to-database"),
        (
            [
                *common,
                "--to-database",
                "postgresql+psycopg://u@127.0.0.1:1/x",
                "--to-vectors",
                f"faiss:{tmp_path / 'v'}",
            ],
            "migration stopped",
        ),
        (
            [
                "--data-dir",
                str(tmp_path / "none"),
                "--to-database",
                "sqlite:///x.db",
                "--to-vectors",
                "faiss",
            ],
            "no gallery",
        ),
    ]
    for args, message in cases:
        rc = cli(*args)
        err = capsys.readouterr().err.strip()
        assert rc != 0, args
        assert len(err.splitlines()) == 1 and message in err, err


def test_sqlite_target_and_an_ivf_faiss_file(source, tmp_path, capsys):
    """The copy is portable SQLAlchemy: an SQLite target works too, and a trained kind gets trained."""
    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    settings = make_settings(tmp_path / "src", index_kind="ivf")
    source_engine, target_engine = make_engine(settings.resolved_database_url), make_engine(target_url)
    report = migrate(
        source_engine,
        target_engine,
        FaissTarget(tmp_path / "ivf.faiss", "ivf"),
        source_images=settings.images_dir,
    )
    assert report.tables["gallery_items"].target_count == ITEMS - len(DELETED)
    assert load_store(tmp_path / "ivf.faiss").kind == "ivf"
    assert rows(target_url, Watch.__table__) == rows(settings.resolved_database_url, Watch.__table__)
    with pytest.raises(MigrationError, match="batch size"):
        migrate(
            source_engine, target_engine, FaissTarget(tmp_path / "x.faiss"), source_images=tmp_path, batch=0
        )
    source_engine.dispose()
    target_engine.dispose()


def test_milvus_targets_are_parsed_and_capture_times_kept_to_the_microsecond(source):
    from service.migrate import epoch_us, milvus_target

    target = milvus_target("milvus://db.example:19531/store_7", source)
    assert (target.uri, target.collection) == ("http://db.example:19531", "store_7")
    assert milvus_target("milvuss://db.example/g", source).uri == "https://db.example:19530"
    for bad in ("milvus://db.example", "milvus:///g", "milvus://h:1/a/b"):
        with pytest.raises(MigrationError, match="milvus://HOST:PORT/COLLECTION"):
            milvus_target(bad, source)
    moment = datetime(2026, 3, 1, 9, 0, 0, 123457, tzinfo=UTC)
    assert epoch_us(moment) == 1772355600123457
    assert epoch_us(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


def test_a_vector_store_failing_half_way_is_one_line_and_resumable(source, tmp_path, capsys, monkeypatch):
    """The vector store fails after the first batch (a server gone): one line, exit 2; the next run finishes."""
    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    args = ["--data-dir", str(source.data_dir), "--to-database", target_url, "--batch-size", "10"]
    calls = []
    original = FaissTarget.add

    def failing_add(self, ids, vectors, rows):
        calls.append(len(ids))
        if len(calls) == 2:
            raise RuntimeError("vector server went away\nsecond line")
        original(self, ids, vectors, rows)

    monkeypatch.setattr(FaissTarget, "add", failing_add)
    assert cli(*args, "--to-vectors", f"faiss:{tmp_path / 'v.faiss'}") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "migration stopped: RuntimeError: vector server went away; run the same command again to continue"
    )
    monkeypatch.setattr(FaissTarget, "add", original)
    assert cli(*args, "--to-vectors", f"faiss:{tmp_path / 'v.faiss'}") == 0
    assert "(44 added)" in capsys.readouterr().out  # the first batch's 10 were saved when it stopped
    assert len(load_store(tmp_path / "v.faiss")) == ITEMS - len(DELETED)
