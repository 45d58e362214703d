"""Every route needs the right key: missing/unknown -> 401, wrong role -> 403 (parametrised over the route table)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.security import create_key, revoke_key
from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, identity_image

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

ROLE_KEYS = {"admin": ADMIN, "search": SEARCH, "ingest": INGEST}

# (method, path template, example path, role needed)
ROUTES = [
    ("POST", "/gallery", "/gallery", "ingest"),
    ("GET", "/gallery", "/gallery", "search"),
    ("GET", "/gallery/{item_id}", "/gallery/1", "search"),
    ("GET", "/gallery/{item_id}/image", "/gallery/1/image", "search"),
    ("DELETE", "/gallery/{item_id}", "/gallery/1", "admin"),
    ("POST", "/search", "/search", "search"),
    ("GET", "/metrics", "/metrics", "search"),
    ("GET", "/metrics/service", "/metrics/service", "search"),
    ("GET", "/cameras", "/cameras", "search"),
    ("DELETE", "/visitors/{visitor_id}", "/visitors/1", "admin"),
    ("POST", "/visitors/recluster", "/visitors/recluster", "admin"),
    ("GET", "/audit", "/audit", "admin"),
    ("POST", "/watches", "/watches", "search"),
    ("GET", "/watches", "/watches", "search"),
    ("GET", "/watches/{watch_id}", "/watches/1", "search"),
    ("DELETE", "/watches/{watch_id}", "/watches/1", "search"),
    ("GET", "/watches/{watch_id}/matches", "/watches/1/matches", "search"),
    ("GET", "/watches/{watch_id}/events", "/watches/1/events?timeout_s=0.1", "search"),
]
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/")}


def _call(client, method, path, headers):
    kwargs = {}
    if path == "/gallery" and method == "POST":
        kwargs = {
            "files": [("files", ("a.png", identity_image(0, 0), "image/png"))],
            "data": {"camera_id": "c", "captured_at": "2026-11-20T10:00:00Z"},
        }
    elif path in ("/search", "/watches") and method == "POST":
        kwargs = {"data": {"gallery_id": 1}}
    elif path == "/visitors/recluster":
        kwargs = {"json": {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}}
    return client.request(method, path, headers=headers, **kwargs)


def test_route_table_covers_every_api_route(settings, embedder):
    app = create_app(settings, embedder=embedder)
    actual = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    assert actual - PUBLIC == {(m, t) for m, t, _, _ in ROUTES}


@pytest.mark.parametrize(
    ("method", "template", "path", "role"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_route_requires_the_right_key(client, method, template, path, role):
    ingest = client.post(
        "/gallery",
        files=[("files", ("a.png", identity_image(0, 0), "image/png"))],
        data={"camera_id": "c", "captured_at": "2026-11-20T10:00:00Z"},
        headers=INGEST,
    )
    assert ingest.json()["items"][0]["id"] == 1

    for headers in ({}, {"X-API-Key": "not-a-key"}, {"X-API-Key": "x" * 5000}):
        r = _call(client, method, path, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
    for other, headers in ROLE_KEYS.items():
        r = _call(client, method, path, headers)
        if other == role or other == "admin":
            assert r.status_code not in (401, 403), (other, r.text)
            assert r.status_code < 500
        else:
            assert r.status_code == 403, (other, r.text)
            assert r.json()["error"] == {
                "code": "forbidden",
                "message": r.json()["error"]["message"],
                "field": None,
            }


def test_public_routes_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/openapi.json").status_code == 200
    headers = client.get("/healthz").headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert client.get("/docs").status_code == 200


def test_keys_from_the_database_and_revocation(client):
    sessions = client.app.state.ctx.sessions
    with sessions() as session:
        secret = create_key(session, "till-camera", "ingest")
    r = client.get("/gallery", headers={"X-API-Key": secret})
    assert r.status_code == 403  # valid key, wrong role
    r = client.post(
        "/gallery",
        files=[("files", ("a.png", identity_image(1, 0), "image/png"))],
        data={"camera_id": "c", "captured_at": "2026-11-20T10:00:00Z"},
        headers={"X-API-Key": secret},
    )
    assert r.status_code == 200
    with sessions() as session:
        assert revoke_key(session, "till-camera")
        stored = list(session.execute(text("select key_hash from api_keys")).scalars())
    assert secret not in stored and len(stored[0]) == 64  # only a digest is stored
    assert client.get("/cameras", headers={"X-API-Key": secret}).status_code == 401


def test_before_start_up_everything_is_503_not_500(settings, embedder):
    client = TestClient(create_app(settings, embedder=embedder))  # lifespan not run
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    r = client.get("/gallery", headers=SEARCH)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
