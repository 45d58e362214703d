"""Live watches: matches of newly ingested items, pushed as Server-Sent Events, in order; thresholds,
cameras, expiry, restart, roles and the audit log."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, identity_image, ingest, upload

# On both engines (PostgreSQL: 32-bit watch ids, an `after` beyond them is an empty answer, not a 500).
pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

SAME = "0.9999"  # the test network: same pattern >= 0.9999, different <= 0.999 (conftest.PATTERNS)


def _watch(client, identity=0, threshold=SAME, **fields):
    r = client.post(
        "/watches",
        files=upload([identity_image(identity, 500)]),
        data={"threshold": threshold, **fields},
        headers=SEARCH,
    )
    assert r.status_code == 201, r.text
    return r.json()


def _events(text: str) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def _matches(client, watch_id):
    r = client.get(f"/watches/{watch_id}/matches", headers=SEARCH)
    assert r.status_code == 200, r.text
    return r.json()["matches"]


def test_an_ingest_after_a_watch_yields_its_events_in_order(client):
    watch = _watch(client, identity=0)
    assert watch["state"] == "active" and watch["matches"] == 0
    received = {}

    def listen():  # a live subscriber, connected before the ingest
        r = client.get(
            f"/watches/{watch['id']}/events", params={"max_events": 3, "timeout_s": 60}, headers=SEARCH
        )
        received["status"], received["type"], received["events"] = (
            r.status_code,
            r.headers["content-type"],
            _events(r.text),
        )

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(1.0)
    other = ingest(client, [identity_image(1, s) for s in range(2)], camera_id="cam-a").json()
    wanted = ingest(client, [identity_image(0, s) for s in range(3)], camera_id="cam-b").json()
    listener.join(timeout=60)
    ids = [item["id"] for item in wanted["items"]]
    assert received["status"] == 200 and received["type"].startswith("text/event-stream")
    assert [e["item_id"] for e in received["events"]] == ids  # in ingest order
    assert all(e["watch_id"] == watch["id"] and e["camera_id"] == "cam-b" for e in received["events"])
    assert all(e["score"] >= float(SAME) for e in received["events"])
    matches = _matches(client, watch["id"])
    assert [m["item_id"] for m in matches] == ids
    assert not {i["id"] for i in other["items"]} & {m["item_id"] for m in matches}
    # a client that reconnects with Last-Event-ID gets what it missed, in order
    r = client.get(
        f"/watches/{watch['id']}/events",
        params={"max_events": 2, "timeout_s": 5},
        headers={**SEARCH, "Last-Event-ID": str(matches[0]["id"])},
    )
    assert [e["id"] for e in _events(r.text)] == [m["id"] for m in matches[1:]]
    listed = client.get("/watches", headers=SEARCH).json()["watches"]
    assert listed[0]["id"] == watch["id"] and listed[0]["matches"] == 3


def test_below_the_threshold_there_is_no_match(client):
    watch = _watch(client, identity=1)
    ingest(client, [identity_image(0, s) for s in range(3)])
    assert _matches(client, watch["id"]) == []
    r = client.get(f"/watches/{watch['id']}/events", params={"timeout_s": 0.5}, headers=SEARCH)
    assert r.status_code == 200 and _events(r.text) == []


def test_only_the_watched_cameras(client):
    watch = _watch(client, identity=0, camera_id="till")
    ingest(client, [identity_image(0, 1)], camera_id="door")
    assert _matches(client, watch["id"]) == []
    item = ingest(client, [identity_image(0, 2)], camera_id="till").json()["items"][0]
    assert [m["item_id"] for m in _matches(client, watch["id"])] == [item["id"]]


def test_an_expired_watch_stops(client):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    watch = _watch(client, identity=0, expires_at=soon)
    time.sleep(2.5)
    ingest(client, [identity_image(0, s) for s in range(2)])
    assert _matches(client, watch["id"]) == []
    assert client.get(f"/watches/{watch['id']}", headers=SEARCH).json()["state"] == "expired"


def test_a_deleted_watch_stops_and_keeps_its_matches(client):
    watch = _watch(client, identity=0)
    ingest(client, [identity_image(0, 1)])
    assert client.delete(f"/watches/{watch['id']}", headers=SEARCH).json()["state"] == "deleted"
    ingest(client, [identity_image(0, 2)])
    assert len(_matches(client, watch["id"])) == 1


def test_active_watches_survive_a_restart(settings, embedder):
    with TestClient(create_app(settings, embedder=embedder)) as client:
        watch = _watch(client, identity=2)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        item = ingest(client, [identity_image(2, 7)]).json()["items"][0]
        assert [m["item_id"] for m in _matches(client, watch["id"])] == [item["id"]]
        assert client.get("/watches", headers=SEARCH).json()["watches"][0]["state"] == "active"


def test_the_wrong_role_is_refused(client):
    r = client.post("/watches", files=upload([identity_image(0, 0)]), headers=INGEST)
    assert r.status_code == 403
    assert client.get("/watches", headers=INGEST).status_code == 403
    watch = _watch(client)
    assert client.get(f"/watches/{watch['id']}/events", headers=INGEST).status_code == 403
    assert client.get(f"/watches/{watch['id']}/matches", headers=INGEST).status_code == 403
    assert client.delete(f"/watches/{watch['id']}", headers=INGEST).status_code == 403
    assert client.get("/watches", headers={"X-API-Key": "nope-nope-nope-nope"}).status_code == 401


def test_bad_watches_are_refused_and_none_is_stored(client):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    far = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    for data, field in (
        ({"expires_at": past}, "expires_at"),
        ({"expires_at": far}, "expires_at"),
        ({"threshold": "2"}, "threshold"),
    ):
        r = client.post("/watches", files=upload([identity_image(0, 0)]), data=data, headers=SEARCH)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    r = client.post("/watches", data={"threshold": "0.9"}, headers=SEARCH)
    assert r.status_code == 422 and r.json()["error"]["field"] == "files"
    # the same query limits as POST /search, with the same error codes
    many = client.post("/watches", data={"gallery_id": [str(i) for i in range(1, 66)]}, headers=SEARCH)
    assert many.status_code == 422 and many.json()["error"]["code"] == "too_many_items", many.text
    nine = client.post("/watches", files=upload([identity_image(0, s) for s in range(9)]), headers=SEARCH)
    assert nine.status_code == 422 and nine.json()["error"]["code"] == "too_many_files", nine.text
    assert client.post("/watches", data={"gallery_id": "999"}, headers=SEARCH).status_code == 404
    assert client.get("/watches", headers=SEARCH).json()["watches"] == []
    assert client.get("/watches/5/events", headers=SEARCH).status_code == 404


def test_every_watch_and_match_is_in_the_audit_log(client):
    watch = _watch(client, identity=0)
    ingest(client, [identity_image(0, s) for s in range(2)])
    _matches(client, watch["id"])
    client.delete(f"/watches/{watch['id']}", headers=SEARCH)
    entries = client.get("/audit", params={"limit": 100}, headers=ADMIN).json()["items"]
    actions = [e["action"] for e in entries]
    assert actions.count("watch_create") == 1 and actions.count("watch_match") == 2
    assert "watch_read" in actions and "watch_delete" in actions
    assert all(e["detail"]["watch_id"] == watch["id"] for e in entries if e["action"].startswith("watch_"))
