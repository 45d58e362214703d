"""MilvusVectorStore against a real Milvus server (tests/milvus.py): the VectorStore contract, camera / time
filters evaluated inside Milvus that still fill top_k, every consistency level seeing what another client
acknowledged (through the shared write watermark), the
never-silently-short rule, the saved reference, and the clear errors of bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from service.settings import Settings
from service.vectorstore import (
    ItemAttributes,
    ItemFilter,
    SearchIncompleteError,
    VectorStoreFileError,
    load_store,
)
from service.vectorstore import milvus_store as ms

DIM = 16


def unit(rng, n, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def attrs(ids, cameras=3):
    return ItemAttributes(
        tuple(f"cam-{int(i) % cameras}" for i in ids), tuple(int(i) * 1_000_000 for i in ids)
    )


def exact(queries, vectors, ids, k, keep=None):
    """Exact top-k ids (ties: smaller id) over the rows where keep is True."""
    keep = np.ones(len(ids), bool) if keep is None else keep
    scores = queries @ vectors[keep].T
    kept = ids[keep]
    out = []
    for row in scores:
        order = np.lexsort((kept, -row))[:k]
        out.append(kept[order])
    return out


@pytest.fixture
def store(milvus_server):
    created = []

    def make(index_type="FLAT", collection=None, **options):
        s = ms.MilvusVectorStore(
            DIM,
            uri=milvus_server.uri,
            collection=collection or milvus_server.collection(),
            index_type=index_type,
            **options,
        )
        created.append(s)
        return s

    yield make
    for s in created:
        s.drop()
        s.close()


def test_add_search_remove_and_duplicates(store):
    rng = np.random.default_rng(0)
    s = store()
    ids = np.arange(10, 110, dtype=np.int64)
    vectors = unit(rng, 100)
    s.add(ids, vectors, attrs(ids))
    assert len(s) == 100 and np.array_equal(s.ids(), ids)
    scores, found = s.search(vectors[:3], 5)
    for q in range(3):
        assert found[q][0] == ids[q]
        assert list(found[q]) == list(exact(vectors[q : q + 1], vectors, ids, 5)[0])
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5)
    # an id already held, or repeated: ValueError and nothing of the call is added
    with pytest.raises(ValueError, match="already held"):
        s.add(np.array([200, 10]), unit(rng, 2), attrs([200, 10]))
    with pytest.raises(ValueError, match="repeat"):
        s.add(np.array([300, 300]), unit(rng, 2), attrs([300, 300]))
    with pytest.raises(ValueError, match="attributes"):
        s.add(np.array([301]), unit(rng, 1))
    assert len(s) == 100 and 200 not in s
    assert s.remove([10, 11, 9999]) == 2
    assert len(s) == 98 and 10 not in s
    _, found = s.search(vectors[0], 3)
    assert 10 not in found[0]
    # fewer qualifying than k: padded with -1 / -inf
    scores, found = s.search(vectors[5], 4, allowed_ids=[15, 16, 5000])
    assert sorted(found[0][:2]) == [15, 16] and list(found[0][2:]) == [-1, -1]
    assert np.isneginf(scores[0][2:]).all()


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW", "IVF_FLAT"])
def test_camera_and_time_filters_run_inside_and_fill_top_k(store, index_type):
    rng = np.random.default_rng(1)
    s = store(index_type)
    ids = np.arange(1, 601, dtype=np.int64)
    vectors = unit(rng, 600)
    s.add(ids, vectors, attrs(ids, cameras=5))
    queries = unit(rng, 3)
    where = ItemFilter(("cam-1", "cam-3"), start_us=100 * 1_000_000, end_us=500 * 1_000_000)
    keep = np.isin(ids % 5, [1, 3]) & (ids >= 100) & (ids < 500)
    _, found = s.search(queries, 10, where=where)
    for q in range(3):
        assert (found[q] >= 0).sum() == 10  # filled
        assert set(found[q]) <= set(ids[keep])
        if index_type != "HNSW":  # FLAT / IVF with nprobe over all lists are exact here
            assert list(found[q]) == list(exact(queries[q : q + 1], vectors, ids, 10, keep)[0])
    # filter + allowed ids together
    allowed = ids[keep][:7]
    _, found = s.search(queries[0], 10, allowed_ids=np.concatenate([allowed, [2, 4]]), where=where)
    assert sorted(found[0][:7]) == sorted(allowed) and list(found[0][7:]) == [-1, -1, -1]


class Watermark:
    """What the database keeps for the service (repository.vector_watermark): the newest acknowledged write."""

    def __init__(self) -> None:
        self.ts = 0

    def read(self) -> int:
        return self.ts

    def record(self, ts: int) -> None:
        self.ts = max(self.ts, ts)


@pytest.mark.parametrize("level", ms.CONSISTENCY_LEVELS)
def test_a_write_acknowledged_by_one_replica_is_seen_at_once_by_another(store, level):
    """Two stores on one collection stand for two replicas (each its own client and its own last write; only
    the watermark is shared, as the database shares it). Each round: one replica adds an item and, right after
    the add returns, the other searches for it with a filter; then removes it and the other must not find it.
    Without the watermark the non-Strong levels miss (measured: 20 of 20 at Eventually on the 20 ms test
    server), so this fails if the watermark is not recorded before add / remove return or not read."""
    rng = np.random.default_rng(2)
    watermark = Watermark()
    writer = store("FLAT", consistency=level)
    reader = store("FLAT", collection=writer.collection, consistency=level)
    for s in (writer, reader):
        s.attach_write_watermark(watermark.read, watermark.record)
    where = ItemFilter(("cam-1",))
    for round_ in range(12):
        a, b = (writer, reader) if round_ % 2 == 0 else (reader, writer)
        item = np.array([100 + round_], dtype=np.int64)
        vector = unit(rng, 1)
        a.add(item, vector, ItemAttributes(("cam-1",), (round_,)))
        _, found = b.search(vector, 3, where=where)
        assert found[0][0] == item[0], f"round {round_}: {level} missed an acknowledged add"
        a.remove(item)
        _, found = b.search(vector, 3, where=where)
        assert item[0] not in found[0], f"round {round_}: {level} found an acknowledged remove"
    assert watermark.ts > 0 and writer.exact_fallbacks == reader.exact_fallbacks == 0


def test_read_guarantee_per_level(store):
    """Strong asks Milvus for its newest timestamp; the others search at the later of the shared watermark and
    the store's own last write; Bounded at least BOUNDED_STALENESS_S ago."""
    import time

    s = store("FLAT", consistency="Strong")
    assert s.read_guarantee() == {"consistency_level": "Strong"}
    s = store("FLAT", consistency="session")  # any case
    assert s.consistency == "Session"
    assert s.read_guarantee() == {"consistency_level": "Customized", "guarantee_timestamp": 1}
    ids = np.array([1, 2], dtype=np.int64)
    s.add(ids, unit(np.random.default_rng(9), 2), attrs(ids))
    own = s.read_guarantee()["guarantee_timestamp"]
    assert abs((own >> ms.LOGICAL_BITS) / 1000 - time.time()) < 60  # a Milvus hybrid timestamp of now
    s.attach_write_watermark(lambda: own + 5, lambda ts: None)
    assert s.read_guarantee()["guarantee_timestamp"] == own + 5
    bounded = store("FLAT", collection=s.collection, consistency="Bounded")
    floor = ms.hybrid_timestamp(time.time() - ms.BOUNDED_STALENESS_S)
    assert bounded.read_guarantee()["guarantee_timestamp"] >= floor
    with pytest.raises(ValueError, match="Strong, Session, Bounded, Eventually"):
        ms.MilvusVectorStore(DIM, uri="http://127.0.0.1:1", collection="x", consistency="Linearizable")


def test_short_answer_is_retried_then_scanned_exactly(store, monkeypatch):
    """Milvus answered a filtered search with 6 of 10 hits while an HNSW index was building: the store counts
    the qualifying rows, retries, then scores them exactly, never returning the short list."""
    rng = np.random.default_rng(3)
    s = store("HNSW")
    ids = np.arange(1, 201, dtype=np.int64)
    vectors = unit(rng, 200)
    s.add(ids, vectors, attrs(ids))
    real = s._search
    calls = []

    def short(queries, limit, expression, read):  # the state seen in the trial: 6 of 10
        calls.append(expression)
        scores, found = real(queries, limit, expression, read)
        scores[:, 6:], found[:, 6:] = -np.inf, -1
        return scores, found

    monkeypatch.setattr(s, "_search", short)
    monkeypatch.setattr(ms, "RETRY_WAIT_S", (0.01, 0.01))
    where = ItemFilter(("cam-2",))
    keep = ids % 3 == 2
    _, found = s.search(vectors[:2], 10, where=where)
    assert len(calls) == 3  # first try + two retries
    assert s.incomplete_searches == 2 and s.exact_fallbacks == 1
    for q in range(2):
        assert list(found[q]) == list(exact(vectors[q : q + 1], vectors, ids, 10, keep)[0])
    # beyond what an exact scan may read: an explicit error, not a short list
    monkeypatch.setattr(ms, "EXACT_FALLBACK_MAX", 10)
    with pytest.raises(SearchIncompleteError):
        s.search(vectors[:1], 10, where=where)


def test_search_right_after_bulk_insert_with_index_building(store):
    """Catch the state of the trial for real: bulk insert, flush (segments seal and Milvus builds their HNSW
    index in the background) and search with a selective filter at once; every answer must be filled and
    exact (the store's count check + fallback guarantee it whether or not the index was ready)."""
    rng = np.random.default_rng(4)
    s = store("HNSW", index_params={"M": 8, "efConstruction": 16}, search_params={"ef": 16})
    n = 4000
    ids = np.arange(1, n + 1, dtype=np.int64)
    vectors = unit(rng, n)
    s.add(ids, vectors, attrs(ids, cameras=50))
    s.client.flush(s.collection)
    where = ItemFilter(("cam-7",))
    keep = ids % 50 == 7
    queries = unit(rng, 5)
    _, found = s.search(queries, 10, where=where)
    for q in range(5):
        assert (found[q] >= 0).sum() == 10
        assert set(found[q]) <= set(ids[keep])


def test_reference_file_round_trip(store, tmp_path):
    rng = np.random.default_rng(5)
    s = store("FLAT")
    ids = np.arange(1, 21, dtype=np.int64)
    s.add(ids, unit(rng, 20), attrs(ids))
    path = tmp_path / "gallery.milvus"
    s.save(path)
    again = load_store(path)
    assert isinstance(again, ms.MilvusVectorStore)
    assert again.fingerprint() == s.fingerprint() and again.dim == DIM
    again.close()
    raw = path.read_bytes()
    path.write_bytes(raw[:-3] + b"xxx")
    with pytest.raises(VectorStoreFileError):
        load_store(path)


def test_existing_collection_of_other_dim_is_refused(store, milvus_server):
    s = store("FLAT")
    with pytest.raises(ValueError, match="16-d vectors"):
        ms.MilvusVectorStore(8, uri=milvus_server.uri, collection=s.collection, index_type="FLAT")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(vector_store="milvus"), "REID_MILVUS_URI"),
        (
            dict(vector_store="milvus", milvus_uri="http://x:1", milvus_index_type="SPARSE"),
            "milvus_index_type",
        ),
        (
            dict(
                vector_store="milvus",
                milvus_uri="http://x:1",
                milvus_index_type="FLAT",
                milvus_search_params={"ef": 64},
            ),
            "does not take search",
        ),
        (
            dict(
                vector_store="milvus",
                milvus_uri="http://x:1",
                milvus_index_type="HNSW",
                milvus_index_params={"nlist": 64},
            ),
            "does not take index",
        ),
        (dict(vector_store="milvus", milvus_uri="http://x:1", milvus_collection="1-bad"), "collection name"),
        (
            dict(
                vector_store="milvus",
                milvus_uri="http://x:1",
                milvus_index_type="IVF_SQ8",
                milvus_search_params={"nprobe": 0},
            ),
            "positive integer",
        ),
    ],
)
def test_bad_milvus_settings_fail_at_start_with_a_clear_error(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        Settings(_env_file=None, dev_mode=True, data_dir=tmp_path, **overrides)


def test_milvus_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_VECTOR_STORE", "milvus")
    monkeypatch.setenv("REID_MILVUS_URI", "http://127.0.0.1:19530")
    monkeypatch.setenv("REID_MILVUS_INDEX_TYPE", "IVF_SQ8")
    monkeypatch.setenv("REID_MILVUS_INDEX_PARAMS", '{"nlist": 256}')
    monkeypatch.setenv("REID_MILVUS_SEARCH_PARAMS", '{"nprobe": 16}')
    settings = Settings(_env_file=None, dev_mode=True, data_dir=tmp_path)
    assert settings.store_options()["consistency"] == "Session"  # the default
    monkeypatch.setenv("REID_MILVUS_CONSISTENCY", "Bounded")
    settings = Settings(_env_file=None, dev_mode=True, data_dir=tmp_path)
    assert settings.store_options()["consistency"] == "Bounded"
    monkeypatch.setenv("REID_MILVUS_CONSISTENCY", "Linearizable")
    with pytest.raises(ValueError, match="Strong"):
        Settings(_env_file=None, dev_mode=True, data_dir=tmp_path)
    monkeypatch.setenv("REID_MILVUS_CONSISTENCY", "Bounded")
    options = settings.store_options()
    assert options["engine"] == "milvus" and options["index_params"] == {"nlist": 256}
    assert options["search_params"] == {"nprobe": 16} and settings.index_path.name == "gallery.milvus"
    assert Settings(
        _env_file=None, dev_mode=True, data_dir=tmp_path, vector_store="faiss"
    ).store_options() == {
        "engine": "faiss",
        "kind": "flat",
        "storage": "int8",  # the flat index's default
    }


def test_upsert_replaces_by_id_and_raises_the_watermark(store):
    """What GalleryIndex.add_new uses on Milvus: writing the same rows twice (an ingest and another replica's
    reconcile) leaves one row per id, needs no "held?" query, and records its timestamp like add."""
    rng = np.random.default_rng(8)
    watermark = Watermark()
    s = store("FLAT")
    s.attach_write_watermark(watermark.read, watermark.record)
    ids = np.arange(1, 41, dtype=np.int64)
    vectors = unit(rng, 40)
    assert s.upsert(ids, vectors, attrs(ids)) == 40
    first = watermark.ts
    assert first > 0
    assert s.upsert(ids[:10], vectors[:10], attrs(ids[:10])) == 10  # again: replaced, not doubled
    assert watermark.ts > first and len(s) == 40 and list(s.ids()) == list(ids)
    _, found = s.search(vectors[3], 2)
    assert found[0][0] == 4 and found[0][1] != 4  # one row for id 4, not two
    with pytest.raises(ValueError, match="repeat"):
        s.upsert(np.array([5, 5]), vectors[:2], attrs([5, 5]))
    with pytest.raises(ValueError, match="attribute rows"):
        s.upsert(ids[:2], vectors[:2], attrs(ids[:3]))
    with pytest.raises(ValueError, match="needs attributes"):
        s.upsert(ids[:2], vectors[:2])
    assert len(s) == 40  # nothing of the refused calls was written


@pytest.mark.parametrize("write", ["add", "upsert"])
def test_partition_key_collection_answers_camera_filters_completely(store, write):
    """camera_id as the partition key: a camera-filtered search searches that camera's partition only, so every
    row must be in its camera's partition, whether added or upserted (Milvus 2.3.5's own upsert puts rows in
    the wrong partition: 2-5 of 29 rows per camera were found when this store used it)."""
    rng = np.random.default_rng(11)
    s = store("FLAT", partition_key=True)
    described = s.client.describe_collection(s.collection)
    assert [f["name"] for f in described["fields"] if f.get("is_partition_key")] == ["camera_id"]
    assert described["num_partitions"] == ms.PARTITION_KEY_PARTITIONS
    ids = np.arange(1, 201, dtype=np.int64)
    vectors = unit(rng, 200)
    getattr(s, write)(ids, vectors, attrs(ids, cameras=7))
    if write == "upsert":  # again, half of them with new vectors: replaced in place, not doubled
        vectors[:100] = unit(rng, 100)
        assert s.upsert(ids[:100], vectors[:100], attrs(ids[:100], cameras=7)) == 100
    assert len(s) == 200 and list(s.ids()) == list(ids)
    for camera in range(7):
        keep = ids % 7 == camera
        _, found = s.search(vectors[:2], 100, where=ItemFilter((f"cam-{camera}",)))
        for q in range(2):
            assert list(found[q][: keep.sum()]) == list(exact(vectors[q : q + 1], vectors, ids, 100, keep)[0])
    assert s.exact_fallbacks == 0 and s.incomplete_searches == 0  # found by the search itself
    assert s.remove(ids[:10]) == 10 and len(s) == 190


@pytest.mark.parametrize("made_with", [False, True])
def test_an_existing_collection_keeps_its_partitioning(store, milvus_server, made_with):
    """REID_MILVUS_PARTITION_KEY applies to new collections; one made the other way is used as it is."""
    rng = np.random.default_rng(12)
    first = store("FLAT", partition_key=made_with)
    ids = np.arange(1, 61, dtype=np.int64)
    vectors = unit(rng, 60)
    first.add(ids, vectors, attrs(ids))
    again = ms.MilvusVectorStore(
        DIM, uri=milvus_server.uri, collection=first.collection, index_type="FLAT", partition_key=not made_with
    )  # dropped with first
    assert again.partition_key is made_with and again.reference()["partition_key"] is made_with
    assert again.upsert(ids[:5], vectors[:5], attrs(ids[:5])) == 5 and len(again) == 60
    _, found = again.search(vectors[1], 30, where=ItemFilter(("cam-1",)))
    assert sorted(found[0][found[0] >= 0]) == sorted(ids[ids % 3 == 1])


def test_ivf_nlist_default_follows_the_segment_size(store):
    assert ms.default_nlist(2048) == 2048  # 2048 MB segments hold ~255,000 2048-d rows: 4 x sqrt = 2,020
    assert ms.default_nlist(2048, 512) == 1024  # Milvus' own 512 MB default: ~64,000 rows
    assert ms.default_nlist(65536, 1) == ms.NLIST_RANGE[0]  # tiny segments (4 rows): the floor
    assert ms.default_nlist(8, 65536) == ms.NLIST_RANGE[1]  # the ceiling Milvus accepts
    with pytest.raises(ValueError, match="positive"):
        ms.default_nlist(2048, 0)
    s = store("IVF_SQ8", segment_max_mb=512)
    assert s.index_params == {"nlist": ms.default_nlist(DIM, 512)}
    held = s.client.describe_index(s.collection, s.client.list_indexes(s.collection)[0])
    assert int(held["nlist"]) == ms.default_nlist(DIM, 512)
    assert store("IVF_SQ8", index_params={"nlist": 64}).index_params == {"nlist": 64}  # a setting wins
    assert store("HNSW").index_params == {"M": 16, "efConstruction": 200}  # no nlist where there is none


def test_partition_and_segment_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_VECTOR_STORE", "milvus")
    monkeypatch.setenv("REID_MILVUS_URI", "http://127.0.0.1:19530")
    options = Settings(_env_file=None, dev_mode=True, data_dir=tmp_path).store_options()
    assert options["partition_key"] is False and options["segment_max_mb"] == 2048
    monkeypatch.setenv("REID_MILVUS_PARTITION_KEY", "true")
    monkeypatch.setenv("REID_MILVUS_SEGMENT_MAX_MB", "512")
    options = Settings(_env_file=None, dev_mode=True, data_dir=tmp_path).store_options()
    assert options["partition_key"] is True and options["segment_max_mb"] == 512
    monkeypatch.setenv("REID_MILVUS_SEGMENT_MAX_MB", "0")
    with pytest.raises(ValueError, match="milvus_segment_max_mb"):
        Settings(_env_file=None, dev_mode=True, data_dir=tmp_path)
