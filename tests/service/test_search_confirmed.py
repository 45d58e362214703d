"""POST /search from several stored items (a confirmed set), alone or with photos."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.service_fixtures import ADMIN, SEARCH, identity_image, ingest, upload

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")


def test_search_from_several_stored_items_is_their_mean(client):
    ids = {}
    for identity in (0, 1):
        r = ingest(client, [identity_image(identity, s) for s in range(4)], camera_id=f"cam-{identity}")
        ids[identity] = [item["id"] for item in r.json()["items"]]
    query = ids[0][:2]
    r = client.post(
        "/search", data={"gallery_id": [str(i) for i in query] + [str(query[0])], "top_k": 8}, headers=SEARCH
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query_images"] == 2  # the repeated id counts once
    hit_ids = [h["id"] for h in body["hits"]]
    assert not set(query) & set(hit_ids)  # the query items are not their own hits
    assert set(hit_ids[:2]) == set(ids[0][2:])  # the same person's other photos first
    # the query is the unit mean of the two stored vectors: scores are cosines with it
    vectors = _stored_vectors(client, ids[0] + ids[1])
    mean = vectors[query[0]] + vectors[query[1]]
    mean /= np.linalg.norm(mean)
    for hit in body["hits"]:
        assert hit["score"] == pytest.approx(float(vectors[hit["id"]] @ mean), abs=1e-5)
    # photos and stored items together: one query of three
    both = client.post(
        "/search",
        files=upload([identity_image(0, 9)]),
        data={"gallery_id": [str(i) for i in query]},
        headers=SEARCH,
    )
    assert both.status_code == 200 and both.json()["query_images"] == 3
    assert not set(query) & {h["id"] for h in both.json()["hits"]}
    entries = client.get("/audit", headers=ADMIN).json()["items"]
    logged = [e["detail"]["gallery_id"] for e in entries if e["action"] == "search"]
    assert sorted(query) in [sorted(g) for g in logged if isinstance(g, list)]


def _stored_vectors(client, item_ids) -> dict:
    from service.tables import GalleryItem

    with client.app.state.ctx.sessions() as session:
        rows = session.query(GalleryItem).filter(GalleryItem.id.in_(item_ids)).all()
        return {row.id: np.frombuffer(row.embedding, dtype=np.float32).astype(np.float64) for row in rows}
