"""Restart, index rebuild, crashes mid-ingest, orphan sweep, retention, erasure and concurrent use."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

import service.ingest
from reid.cli import main as reid_main
from service.app import create_app
from tests.service.service_fixtures import ADMIN, SEARCH, identity_image, ingest, make_settings, upload

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")


def _faiss_only(settings):
    """Tests of the in-process index's own file and kinds: nothing to add on the Milvus backend (the
    postgresql run covers faiss on PostgreSQL)."""
    if settings.vector_store != "faiss":
        pytest.skip("about the faiss index file / kinds")


def _milvus(settings):
    from pymilvus import MilvusClient

    return MilvusClient(uri=settings.milvus_uri)


def _search(client, identity=0, top_k=10):
    r = client.post(
        "/search", files=upload([identity_image(identity, 99)]), data={"top_k": top_k}, headers=SEARCH
    )
    assert r.status_code == 200, r.text
    return [(h["id"], h["score"]) for h in r.json()["hits"]]


def _files(settings):
    return sorted(
        p.relative_to(settings.images_dir).as_posix() for p in settings.images_dir.rglob("*") if p.is_file()
    )


def _fill(client, identities=range(4), shots=3):
    for identity in identities:
        r = ingest(client, [identity_image(identity, s) for s in range(shots)], camera_id=f"cam-{identity}")
        assert r.json()["created"] == shots


def test_restart_gives_the_same_results(settings, embedder):
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client)
        before = _search(client)
    assert settings.index_path.exists()  # saved at shutdown
    with TestClient(create_app(settings, embedder=embedder)) as client:
        ready = client.get("/readyz").json()
        assert ready["index_size"] == ready["gallery_items"] == 12
        assert _search(client) == before


def test_changing_the_index_kind_rebuilds_it(settings, embedder, tmp_path):
    _faiss_only(settings)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client, identities=range(3))
        before = [i for i, _ in _search(client, top_k=3)]
    hnsw = make_settings(tmp_path, index_kind="hnsw", index_ef_search=64, database_url=settings.database_url)
    with TestClient(create_app(hnsw, embedder=embedder)) as client:
        index = client.app.state.ctx.index
        assert index.rebuilt and index.store.kind == "hnsw" and index.store.ef_search == 64
        assert [i for i, _ in _search(client, top_k=3)] == before  # a tiny gallery: hnsw finds the same
    with TestClient(create_app(hnsw, embedder=embedder)) as client:
        assert not client.app.state.ctx.index.rebuilt


@pytest.mark.parametrize("storage", ["fp16", "bf16", "int8"])  # int8 without its kernel: scans bf16
def test_16bit_storage_answers_like_fp32_and_switching_rebuilds(settings, embedder, tmp_path, storage):
    _faiss_only(settings)
    exact = make_settings(tmp_path, index_storage="fp32", database_url=settings.database_url)
    with TestClient(create_app(exact, embedder=embedder)) as client:
        _fill(client)
        before = _search(client)
        filtered_before = _search_camera(client, "cam-2")
    half = make_settings(tmp_path, index_storage=storage, database_url=settings.database_url)
    with TestClient(create_app(half, embedder=embedder)) as client:
        index = client.app.state.ctx.index
        assert index.rebuilt and index.store.storage == storage
        if storage != "fp16":  # the scan copy is made while the service starts, not by the first search
            store = index.store
            copy = store._int8_copy if store._scan_storage == "int8" else store._scan_copy
            assert copy is not None and len(copy) >= len(store) == 12
        # scanned in 16 bits, re-scored in float32 (the database's, or the rows held): the same hits
        # and scores (up to float32 summation order)
        _same_hits(_search(client), before)
        _same_hits(_search_camera(client, "cam-2"), filtered_before)
    with TestClient(create_app(half, embedder=embedder)) as client:
        assert not client.app.state.ctx.index.rebuilt
        _same_hits(_search(client), before)
    with pytest.raises(ValueError, match=f"{storage} is for REID_INDEX_KIND=flat"):
        make_settings(tmp_path, index_storage=storage, index_kind="hnsw", database_url=settings.database_url)


def _same_hits(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)


def _search_camera(client, camera):
    r = client.post(
        "/search",
        files=upload([identity_image(1, 99)]),
        data={"top_k": 5, "camera_id": camera},
        headers=SEARCH,
    )
    assert r.status_code == 200, r.text
    return [(h["id"], h["score"]) for h in r.json()["hits"]]


@pytest.mark.parametrize("damage", ["deleted", "corrupt", "stale"])
def test_index_is_rebuilt_from_the_database(settings, embedder, damage, caplog):
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client, identities=range(2))
    stale_copy = settings.index_path.with_name("old.faiss")
    shutil.copy(settings.index_path, stale_copy)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client, identities=range(2, 4))
        before = _search(client)
        newest = sorted(int(i) for i, _ in before)[-4:]
    milvus = settings.vector_store == "milvus"
    if milvus:  # the collection is the index: lost, its reference file damaged, or out of step
        name = settings.milvus_collection
        if damage == "deleted":
            _milvus(settings).drop_collection(name)
        elif damage == "corrupt":
            settings.index_path.write_bytes(b"\x00garbage" * 100)
        else:  # vectors of acknowledged items missing (a lost write) and one the database does not have
            row = _milvus(settings).query(name, filter=f"id == {newest[0]}", output_fields=["vector"])[0]
            _milvus(settings).delete(name, filter=f"id in {newest}")
            _milvus(settings).insert(
                name, [{"id": 10**9, "vector": row["vector"], "camera_id": "cam-0", "captured_us": 0}]
            )
    elif damage == "deleted":
        settings.index_path.unlink()
    elif damage == "corrupt":
        settings.index_path.write_bytes(b"\x00garbage" * 100)
    else:  # a crash after commits but before the index was saved: the file lacks the newest items
        shutil.copy(stale_copy, settings.index_path)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        # Milvus with a damaged reference file: the settings name the collection, which is intact
        assert client.app.state.ctx.index.rebuilt == (not (milvus and damage == "corrupt"))
        assert client.get("/readyz").json()["index_size"] == 12
        assert _search(client) == before


def test_failure_before_commit_leaves_no_half_item(client, settings, monkeypatch):
    def crash(session, item):
        raise RuntimeError("simulated crash between file write and commit")

    monkeypatch.setattr(service.ingest, "_before_commit", crash)
    r = ingest(client, [identity_image(0, 0)])
    assert r.status_code == 500 and r.json()["items"][0]["error"]["code"] == "internal"
    assert "simulated" not in r.text  # internals are logged, not sent
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 0
    assert _files(settings) == [] and client.get("/readyz").json()["index_size"] == 0
    monkeypatch.undo()
    r = ingest(client, [identity_image(0, 0), identity_image(0, 1)])
    assert r.json()["created"] == 2 and len(_files(settings)) == 4


def test_failure_in_one_file_of_a_batch_keeps_the_others(client, settings, monkeypatch):
    calls = {"n": 0}
    original = service.ingest._before_commit

    def crash_second(session, item):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        original(session, item)

    monkeypatch.setattr(service.ingest, "_before_commit", crash_second)
    r = ingest(client, [identity_image(1, s) for s in range(3)])
    assert r.status_code == 200
    assert [i["status"] for i in r.json()["items"]] == ["created", "error", "created"]
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 2 and len(_files(settings)) == 4


def test_killed_process_leftovers_are_swept_at_start(settings, embedder):
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client, identities=[0], shots=2)
        kept = _files(settings)
        store = client.app.state.ctx.store
    # A process killed after writing files but before its commit leaves files without rows, and
    # one killed inside a write leaves a temporary file.
    store.write("ff" * 32, b"orphan image", "png", b"orphan thumb")
    (settings.images_dir / "ff" / "ff" / ".tmp-1234-x.png").write_bytes(b"half written")
    assert len(_files(settings)) == len(kept) + 3
    for path in (settings.images_dir / "ff" / "ff").iterdir():  # older than the sweep's grace (PostgreSQL)
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert _files(settings) == kept
        assert client.get("/gallery", headers=SEARCH).json()["total"] == 2


def test_erasing_a_visitor_removes_rows_vectors_files(client, settings):
    a = ingest(client, [identity_image(0, s) for s in range(3)], captured_at="2026-11-20T10:00:00Z").json()
    b = ingest(client, [identity_image(1, s) for s in range(2)], captured_at="2026-11-20T10:05:00Z").json()
    visitor = {i["visitor_id"] for i in a["items"]}
    assert len(visitor) == 1  # one person within the horizon -> one visitor
    visitor = visitor.pop()
    assert visitor not in {i["visitor_id"] for i in b["items"]}
    r = client.delete(f"/visitors/{visitor}", headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"visitor_id": visitor, "deleted": sorted(i["id"] for i in a["items"])}
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 2
    assert len(_files(settings)) == 4
    hits = {h for h, _ in _search(client, identity=0)}
    assert hits == {i["id"] for i in b["items"]}
    assert client.get("/readyz").json()["index_size"] == 2
    entry = client.get("/audit", params={"action": "erase_visitor"}, headers=ADMIN).json()["items"][0]
    assert entry["detail"]["visitor_id"] == visitor and entry["hits"] == 3
    assert client.delete(f"/visitors/{visitor}", headers=ADMIN).status_code == 404


def _eventually(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_retention_purges_old_items_periodically(tmp_path, embedder, database_url, vector_store_settings):
    settings = make_settings(
        tmp_path, retention_days=2, purge_interval_s=0.2, database_url=database_url, **vector_store_settings
    )
    now = datetime.now(UTC)
    with TestClient(
        create_app(
            make_settings(tmp_path, database_url=database_url, **vector_store_settings), embedder=embedder
        )
    ) as client:  # no retention yet
        old = ingest(client, [identity_image(0, 0)], captured_at=(now - timedelta(days=3)).isoformat()).json()
        new = ingest(client, [identity_image(1, 0)], captured_at=(now - timedelta(days=1)).isoformat()).json()
    with TestClient(create_app(settings, embedder=embedder)) as client:
        # The purge deletes rows, then vectors, then files: wait for all three.
        _eventually(
            lambda: (client.get("/gallery", headers=SEARCH).json()["total"], len(_files(settings))) == (1, 2)
        )
        items = client.get("/gallery", headers=SEARCH).json()["items"]
        assert [i["id"] for i in items] == [new["items"][0]["id"]]
        assert client.get("/readyz").json()["index_size"] == 1
        assert len(_files(settings)) == 2
        # Photos already older than the retention period are refused at ingest.
        r = ingest(client, [identity_image(2, 0)], captured_at=(now - timedelta(days=5)).isoformat())
        assert r.status_code == 422 and r.json()["error"]["code"] == "expired"
        # An item that ages past the limit while the service runs goes at the next purge.
        late = ingest(
            client, [identity_image(2, 0)], captured_at=(now - timedelta(days=1)).isoformat()
        ).json()
        assert late["created"] == 1
        with client.app.state.ctx.sessions() as session, session.begin():  # two days pass for this item
            session.execute(
                text("update gallery_items set captured_at = :t where id = :id"),
                {"t": (now - timedelta(days=3)).replace(tzinfo=None), "id": late["items"][0]["id"]},
            )
        _eventually(
            lambda: (client.get("/gallery", headers=SEARCH).json()["total"], len(_files(settings))) == (1, 2)
        )
        assert client.get("/gallery", headers=SEARCH).json()["total"] == 1
        purges = client.get("/audit", params={"action": "retention_purge"}, headers=ADMIN).json()
        assert sum(e["hits"] for e in purges["items"]) == 2
    assert old["items"][0]["id"] not in [i["id"] for i in items]


def test_cli_purge_and_keys(tmp_path, embedder, capsys, database_url, monkeypatch, vector_store_settings):
    settings = make_settings(tmp_path, database_url=database_url, **vector_store_settings)
    if database_url:  # the CLI reads its database (and vector store) from the environment
        monkeypatch.setenv("REID_DATABASE_URL", database_url)
    for key, value in vector_store_settings.items():
        monkeypatch.setenv(f"REID_{key.upper()}", str(value))
    now = datetime.now(UTC)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        ingest(client, [identity_image(0, 0)], captured_at=(now - timedelta(days=40)).isoformat())
        keep = ingest(client, [identity_image(1, 0)], captured_at=now.isoformat()).json()["items"][0]["id"]
    data = ["--data-dir", str(settings.data_dir)]
    assert reid_main(["purge", "--older-than-days", "30", *data]) == 0
    assert "purged 1 item" in capsys.readouterr().out
    assert reid_main(["keys", "create", "feed", "--role", "ingest", *data]) == 0
    secret = capsys.readouterr().out.strip()
    assert reid_main(["keys", "create", "feed", "--role", "ingest", *data]) == 2  # duplicate name
    assert reid_main(["keys", "list", *data]) == 0
    listing = capsys.readouterr().out
    assert "feed" in listing and "active" in listing and secret not in listing
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert [i["id"] for i in client.get("/gallery", headers=SEARCH).json()["items"]] == [keep]
        assert client.get("/readyz").json()["index_size"] == 1
        assert not client.app.state.ctx.index.rebuilt  # the CLI kept the saved index consistent
        r = ingest(client, [identity_image(2, 0)], headers={"X-API-Key": secret})
        assert r.status_code == 200
        assert reid_main(["keys", "revoke", "feed", *data]) == 0
        assert ingest(client, [identity_image(3, 0)], headers={"X-API-Key": secret}).status_code == 401
    assert reid_main(["db", "upgrade", *data]) == 0


def test_concurrent_ingest_and_search(client):
    _fill(client, identities=[5], shots=2)

    def ingest_identity(identity):
        results = []
        for shot in range(3):
            r = ingest(client, [identity_image(identity, 10 + shot)], camera_id=f"c{identity}")
            results.append(r)
        return results

    def search_many(identity):
        return [
            client.post(
                "/search", files=upload([identity_image(identity, 77)]), data={"top_k": 3}, headers=SEARCH
            )
            for _ in range(3)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ingests = [pool.submit(ingest_identity, i) for i in range(4)]
        searches = [pool.submit(search_many, i) for i in (5, 5, 5, 5)]
        ingest_results = [r for f in ingests for r in f.result()]
        search_results = [r for f in searches for r in f.result()]
    assert all(r.status_code == 200 and r.json()["created"] == 1 for r in ingest_results)
    assert all(r.status_code == 200 for r in search_results)
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 14
    assert client.get("/readyz").json()["index_size"] == 14
    ids = [r.json()["items"][0]["id"] for r in ingest_results]
    assert len(set(ids)) == 12
    with client.app.state.ctx.sessions() as session:
        assert session.execute(text("select count(distinct content_hash) from gallery_items")).scalar() == 14
    # Each search saw identity 5's two images first, whatever was being ingested meanwhile.
    own = {
        i["id"] for i in client.get("/gallery", params={"camera_id": "cam-5"}, headers=SEARCH).json()["items"]
    }
    assert all({h["id"] for h in r.json()["hits"][:2]} == own for r in search_results)
    text_metrics = client.get("/metrics/service", headers=SEARCH).text
    assert "reid_embed_batch_size_count" in text_metrics and 'route="/search"' in text_metrics


def test_same_bytes_twice_in_one_request(client, settings):
    image = identity_image(2, 0)
    r = ingest(client, [image, identity_image(2, 1), image])
    items = r.json()["items"]
    assert [i["status"] for i in items] == ["created", "created", "exists"]
    assert items[2]["id"] == items[0]["id"] and len(_files(settings)) == 4


def test_failed_index_add_removes_the_new_rows_again(client, settings, monkeypatch):
    kept = ingest(client, [identity_image(3, 0)]).json()["items"][0]["id"]
    index = client.app.state.ctx.index

    def broken_add(ids, vectors):
        raise RuntimeError("index full")

    monkeypatch.setattr(index, "add", broken_add)
    r = ingest(client, [identity_image(4, 0), identity_image(4, 1)])
    assert r.status_code == 500 and r.json()["failed"] == 2
    monkeypatch.undo()
    assert [i["id"] for i in client.get("/gallery", headers=SEARCH).json()["items"]] == [kept]
    assert len(_files(settings)) == 2 and len(index) == 1


def test_other_weights_are_refused_for_an_existing_gallery(tmp_path, embedder, database_url, database):
    if database.endswith("+milvus"):
        pytest.skip("about the database's model fingerprint: the postgresql run covers it")
    from model.embedder import Embedder
    from model.errors import ReidError

    settings = make_settings(tmp_path, database_url=database_url)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        _fill(client, identities=[0], shots=1)
    other = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", seed=7)
    with pytest.raises(ReidError, match="different models"), TestClient(create_app(settings, embedder=other)):
        pass
    allowed = make_settings(tmp_path, allow_model_change=True, database_url=database_url)
    with TestClient(create_app(allowed, embedder=other)) as client:
        assert client.get("/readyz").status_code == 200


def test_changes_by_another_process_are_reconciled_while_serving(client, settings, capsys, monkeypatch):
    if settings.database_url:  # the CLI reads its database (and vector store) from the environment
        monkeypatch.setenv("REID_DATABASE_URL", settings.database_url)
    shared = settings.vector_store == "milvus"
    if shared:
        monkeypatch.setenv("REID_VECTOR_STORE", "milvus")
        monkeypatch.setenv("REID_MILVUS_URI", settings.milvus_uri)
        monkeypatch.setenv("REID_MILVUS_COLLECTION", settings.milvus_collection)
    from service.app import reconcile_index

    now = datetime.now(UTC)
    old = ingest(client, [identity_image(0, 0)], captured_at=(now - timedelta(days=40)).isoformat()).json()
    ingest(client, [identity_image(1, 0)], captured_at=now.isoformat())
    # `reid purge` runs beside the service: the row goes, the running service's index still has it.
    assert reid_main(["purge", "--older-than-days", "30", "--data-dir", str(settings.data_dir)]) == 0
    ctx = client.app.state.ctx
    if shared:  # the purge deleted the vector from the one collection every process searches
        assert len(ctx.index) == 1
    else:
        assert len(ctx.index) == 2  # the running service learns of the delete at its next search
    hits = [h for h, _ in _search(client, identity=0)]
    assert old["items"][0]["id"] not in hits  # never served
    # the search synced the index (the deletion counter moved: gallery_index.sync)
    assert len(ctx.index) == 1 and client.get("/readyz").json()["index_size"] == 1
    assert reconcile_index(ctx) == (0, 0)
