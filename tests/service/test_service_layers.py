"""Shared state through one door (the readiness check), and the ingest's post-commit seam."""

from __future__ import annotations

import numpy as np
import pytest

from service.tables import GalleryItem
from tests.service.service_fixtures import ADMIN, SEARCH, identity_image, ingest

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")


@pytest.mark.parametrize(
    "path",
    ["/gallery", "/gallery/1", "/gallery/1/image", "/cameras", "/audit", "/metrics", "/metrics/service"],
)
def test_every_route_answers_503_while_not_ready(client, path):
    """Routes that took the session or app.state.ctx directly skipped the readiness check (before: 200)."""
    assert ingest(client, [identity_image(0, 0)]).status_code == 200
    ctx = client.app.state.ctx
    ctx.ready = False
    try:
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 503, (path, r.status_code)
        assert r.json()["error"]["code"] == "unavailable"
    finally:
        ctx.ready = True
    assert client.get(path, headers=ADMIN).status_code == 200


def test_commit_listeners_get_the_committed_items(client):
    ctx = client.app.state.ctx
    seen = []

    def broken(_ctx, items):
        raise RuntimeError("a listener bug")

    ctx.commit_listeners.extend([broken, lambda _ctx, items: seen.append(items)])
    images = [identity_image(0, 0), identity_image(1, 0), b"not an image"]
    r = ingest(client, images, camera_id="door-2", captured_at="2026-11-20T10:00:00Z")
    assert r.status_code == 200, r.text  # the broken listener does not fail the ingest
    body = r.json()
    assert body["created"] == 2 and body["failed"] == 1
    (items,) = seen
    assert [i.id for i in items] == [it["id"] for it in body["items"][:2]]
    assert {i.camera_id for i in items} == {"door-2"}
    assert all(i.captured_at.isoformat() == "2026-11-20T10:00:00+00:00" for i in items)
    stored = client.post("/search", data={"gallery_id": items[0].id, "top_k": 1}, headers=SEARCH)
    assert stored.status_code == 200
    with ctx.sessions() as session:
        np.testing.assert_array_equal(session.get(GalleryItem, items[0].id).vector(), items[0].vector)
    # the same bytes again commit nothing: listeners are not called
    assert ingest(client, images[:1]).json()["existing"] == 1
    assert len(seen) == 1
