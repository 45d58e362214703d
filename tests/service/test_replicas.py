"""Two real `reid serve` processes (replicas) on one PostgreSQL database and one shared image folder, with a
faiss index per replica or one Milvus collection: the answer does not depend on which one a request reaches
(docs/service.md, "Replicas").

Ingest on one, search / read / delete on the other; the same people ingested on both at once (no duplicate
items, no split visitors); a watch made through one fires on an ingest through the other; background jobs
run on one replica only; each replica's Prometheus counters count its own requests; a replica killed with
SIGKILL in the middle of ingest loses nothing it acknowledged while the other keeps answering. The two
processes are shared by the module (started at the same moment: migrations are serialised) and stopped by
PID at the end; each test uses its own identities and capture day, so tests do not see each other's people.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.service.replica_processes import Replica, replica_env, small_checkpoint
from tests.service.service_fixtures import identity_image, upload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["postgresql", "postgresql+milvus"])
def replica_setup(request, tmp_path_factory, postgres_cluster):
    """PostgreSQL with a faiss index per replica (kept in step by sync), or PostgreSQL + one Milvus collection."""
    folder = tmp_path_factory.mktemp("replicas")
    weights = small_checkpoint(folder / "small.pt")
    vectors = {}
    if request.param.endswith("+milvus"):
        server = request.getfixturevalue("milvus_server")
        vectors = dict(
            REID_VECTOR_STORE="milvus", REID_MILVUS_URI=server.uri, REID_MILVUS_COLLECTION=server.collection()
        )
    env = replica_env(
        weights,
        folder / "shared-data",  # one data folder: the image files are shared (an NFS-style volume)
        postgres_cluster.database(),
        REID_RETENTION_DAYS="3650",  # on, so that the purge job runs (and deletes nothing)
        REID_PURGE_INTERVAL_S="0.3",
        **vectors,
    )
    return folder, env


@pytest.fixture(scope="module")
def pair(replica_setup):
    folder, env = replica_setup
    replicas = [Replica(name, env, folder) for name in ("a", "b")]  # started together
    try:
        for replica in replicas:
            replica.wait_ready()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def _ingest(replica, images, captured_at, camera="cam-1"):
    r = replica.http.post(
        "/gallery", files=upload(images), data={"camera_id": camera, "captured_at": captured_at}
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _search(replica, identity, top_k=50, **data):
    r = replica.http.post(
        "/search", files=upload([identity_image(identity, 99)]), data={"top_k": top_k, **data}
    )
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["hits"]]


def test_ingest_on_one_search_read_and_delete_on_the_other(pair):
    a, b = pair
    day = "2026-11-10T10:00:00Z"
    images = [identity_image(0, shot) for shot in range(3)]
    items = _ingest(a, images, day, camera="cam-a")
    ids = [item["id"] for item in items]
    assert [item["status"] for item in items] == ["created"] * 3
    # B's index has never seen these rows: it catches up before answering
    assert set(_search(b, 0)[:3]) == set(ids)
    assert set(_search(b, 0, camera_id="cam-a")) == set(ids)
    assert b.http.get(f"/gallery/{ids[0]}/image").content == images[0]  # the shared folder
    assert b.http.get(f"/gallery/{ids[0]}").json()["id"] == ids[0]
    assert b.http.delete(f"/gallery/{ids[0]}").status_code == 200
    assert ids[0] not in _search(a, 0)  # A learns of B's delete (the deletion counter moved)
    assert a.http.get(f"/gallery/{ids[0]}").status_code == 404
    assert a.http.get("/readyz").json()["index_size"] == b.http.get("/readyz").json()["index_size"]


def test_the_same_people_ingested_on_both_at_once(pair):
    """Requests of the same bytes and of other pictures of the same two people, on both replicas at once:
    every picture is one item, and each person is one visitor."""
    a, b = pair
    day = "2026-11-11T10:00:00Z"
    requests = [
        (replica, [identity_image(identity, shot) for shot in shots])
        for identity in (1, 2)
        for replica, shots in ((a, (0, 1)), (b, (0, 1)), (a, (2, 3)), (b, (4, 5)), (b, (2, 3)))
    ]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda req: _ingest(req[0], req[1], day), requests))
    by_picture: dict[tuple[int, bytes], set[int]] = {}
    visitors: dict[int, set[int]] = {1: set(), 2: set()}
    for (_, images), items in zip(requests, answers, strict=True):
        identity = 1 if images[0] in [identity_image(1, s) for s in range(6)] else 2
        for image, item in zip(images, items, strict=True):
            assert item["status"] in ("created", "exists"), item
            by_picture.setdefault((identity, image), set()).add(item["id"])
            visitors[identity].add(item["visitor_id"])
    assert all(len(ids) == 1 for ids in by_picture.values()), by_picture  # no duplicate items
    assert len(by_picture) == 12
    assert all(len(v) == 1 for v in visitors.values()), visitors  # no split visitor
    assert visitors[1] != visitors[2]
    listed = a.http.get("/gallery", params={"start": day, "end": "2026-11-11T11:00:00Z", "limit": 100}).json()
    assert listed["total"] == 12


def test_a_watch_made_through_one_fires_on_an_ingest_through_the_other(pair):
    a, b = pair
    r = a.http.post("/watches", files=upload([identity_image(3, 500)]), data={"threshold": "0.9999"})
    assert r.status_code == 201, r.text
    watch = r.json()
    received: list[str] = []
    subscribed = threading.Event()

    def listen():
        with a.http.stream(
            "GET", f"/watches/{watch['id']}/events", params={"max_events": 1, "timeout_s": 60}
        ) as response:
            for chunk in response.iter_text():
                subscribed.set()
                received.append(chunk)

    listener = threading.Thread(target=listen)
    listener.start()
    assert subscribed.wait(30)
    items = _ingest(b, [identity_image(3, 1), identity_image(4, 1)], "2026-11-12T10:00:00Z")
    listener.join(60)
    assert not listener.is_alive()
    text = "".join(received)
    assert f'"item_id": {items[0]["id"]}' in text and f'"item_id": {items[1]["id"]}' not in text, text
    matches = b.http.get(f"/watches/{watch['id']}/matches").json()["matches"]  # stored once, seen by both
    assert [m["item_id"] for m in matches] == [items[0]["id"]]
    assert b.http.delete(f"/watches/{watch['id']}").status_code == 200
    _ingest(a, [identity_image(3, 2)], "2026-11-12T10:05:00Z")  # A knows B deleted it: no match
    assert len(a.http.get(f"/watches/{watch['id']}/matches").json()["matches"]) == 1


def test_background_jobs_run_on_one_replica(pair):
    a, b = pair
    before = [r.metric("reid_job_runs_total", 'job="retention"') for r in pair]
    time.sleep(1.5)  # REID_PURGE_INTERVAL_S=0.3: the holder purges about five times meanwhile
    after = [r.metric("reid_job_runs_total", 'job="retention"') for r in pair]
    leaders = [r.metric("reid_jobs_leader") for r in pair]
    assert sorted(leaders) == [0.0, 1.0], leaders
    leader, other = (0, 1) if leaders[0] == 1.0 else (1, 0)
    assert after[leader] > before[leader]
    assert after[other] == before[other] == 0.0  # never ran on the other replica


def test_each_replica_counts_its_own_requests(pair):
    """Per-replica scraping: each process's /metrics/service counts the requests it served (Prometheus adds
    the instance label per target); the sum over the targets is the total."""
    a, b = pair
    sample = ("reid_http_requests_total", 'method="GET",route="/gallery",status="200"')
    before = [r.metric(*sample) for r in pair]
    for replica, n in ((a, 3), (b, 5)):
        for _ in range(n):
            assert replica.http.get("/gallery").status_code == 200
    after = [r.metric(*sample) for r in pair]
    assert [after[0] - before[0], after[1] - before[1]] == [3.0, 5.0]


def test_a_replica_killed_mid_ingest_loses_nothing_it_acknowledged(pair, replica_setup):
    """A third replica takes a stream of single-image ingests and is killed with SIGKILL part-way; replica A
    answers searches the whole time; every item the killed one acknowledged is then served by A."""
    a, b = pair
    folder, env = replica_setup
    victim = Replica("victim", env, folder).wait_ready()
    acknowledged: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def feed():
        for shot in range(100, 200):
            try:
                r = victim.http.post(
                    "/gallery",
                    files=upload([identity_image(5, shot)]),
                    data={"camera_id": "cam-k", "captured_at": "2026-11-13T10:00:00Z"},
                    timeout=30,
                )
            except Exception:  # killed: the request in flight gets no answer
                return
            if r.status_code == 200:
                acknowledged.append(r.json()["items"][0]["id"])

    searches: list[int] = []

    def search_on_a():
        while not stop.is_set():
            try:
                searches.append(_search(a, 5, top_k=5, camera_id="cam-k") is not None)
            except AssertionError as exc:
                errors.append(str(exc))

    feeder = threading.Thread(target=feed)
    searcher = threading.Thread(target=search_on_a)
    try:
        feeder.start()
        searcher.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.kill9()
        feeder.join(60)
        time.sleep(0.5)  # A keeps answering after the kill
    finally:
        stop.set()
        searcher.join(60)
        victim.stop()
    assert len(acknowledged) >= 4
    assert not errors and len(searches) > 0
    # the killed process's write lock went with its session: the survivor still ingests
    assert (
        _ingest(a, [identity_image(5, 300)], "2026-11-13T10:00:00Z", camera="cam-k")[0]["status"] == "created"
    )
    for item_id in acknowledged:
        assert a.http.get(f"/gallery/{item_id}").status_code == 200
    found = set(_search(a, 5, top_k=200, camera_id="cam-k"))
    assert set(acknowledged) <= found
    # the jobs lease is still held by exactly one replica
    time.sleep(1)
    assert sorted(r.metric("reid_jobs_leader") for r in pair) == [0.0, 1.0]
