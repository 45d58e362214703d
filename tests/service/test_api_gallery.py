"""Ingest, dedupe, per-image results, listing with filters, images, deletion, search ranking and filters."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, identity_image, ingest, upload

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")


def test_ingest_returns_per_image_results_and_dedupes(client):
    images = [identity_image(0, s) for s in range(3)]
    r = ingest(client, images, external_ref=None)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 3 and body["existing"] == 0 and body["failed"] == 0
    ids = [item["id"] for item in body["items"]]
    assert len(set(ids)) == 3 and [item["status"] for item in body["items"]] == ["created"] * 3
    # The same bytes again (with another file name) -> the existing id, nothing new stored.
    again = client.post(
        "/gallery",
        files=upload([images[1]], ["other-name.png"]),
        data={"camera_id": "cam-2", "captured_at": "2026-11-20T11:00:00Z"},
        headers=INGEST,
    )
    assert again.status_code == 200
    assert again.json()["items"][0] == {
        "index": 0,
        "filename": "other-name.png",
        "status": "exists",
        "id": ids[1],
        "visitor_id": body["items"][1]["visitor_id"],
    }
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 3


def test_known_bytes_are_not_embedded_again(client, embedder, monkeypatch):
    images = [identity_image(1, s) for s in range(2)]
    first = ingest(client, images[:1], external_ref=None).json()["items"][0]
    embedded: list[int] = []
    original = type(embedder).embed_tensor

    def counting(self, x):
        embedded.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(type(embedder), "embed_tensor", counting)
    body = ingest(client, images, external_ref=None).json()
    assert [item["status"] for item in body["items"]] == ["exists", "created"]
    assert body["items"][0]["id"] == first["id"]
    assert sum(embedded) == 1  # only the new image went through the network


def test_mixed_batch_stores_good_files_and_reports_bad_ones(client):
    files = upload(
        [identity_image(1, 0), b"not an image at all", identity_image(1, 1)], ["a.png", "b.txt", "c.png"]
    )
    r = client.post(
        "/gallery",
        files=files,
        data={"camera_id": "cam-1", "captured_at": "2026-11-20T10:00:00"},
        headers=INGEST,
    )
    assert r.status_code == 200
    body = r.json()
    assert [i["status"] for i in body["items"]] == ["created", "error", "created"]
    assert (
        body["items"][1]["error"]["code"] == "not_an_image"
        and "b.txt" in body["items"][1]["error"]["message"]
    )
    assert (body["created"], body["failed"]) == (2, 1)
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 2


def test_per_file_fields_and_item_shape(client):
    files = upload([identity_image(2, 0), identity_image(3, 0)])
    data = {
        "camera_id": ["entrance", "till:2"],
        "captured_at": ["2026-11-20T10:00:00+02:00", "2026-11-20T09:30:00"],
        "external_ref": ["track-1", "track-2"],
    }
    r = client.post("/gallery", files=files, data=data, headers=INGEST)
    assert r.status_code == 200, r.text
    first, second = (item["id"] for item in r.json()["items"])
    item = client.get(f"/gallery/{first}", headers=SEARCH).json()
    assert item["camera_id"] == "entrance" and item["external_ref"] == "track-1"
    assert item["captured_at"] == "2026-11-20T08:00:00+00:00"  # converted to UTC
    assert (item["width"], item["height"]) == (32, 64)
    assert item["image_url"] == f"/gallery/{first}/image"
    assert item["thumbnail_url"] == f"/gallery/{first}/image?size=thumb"
    other = client.get(f"/gallery/{second}", headers=SEARCH).json()
    assert other["camera_id"] == "till:2" and other["captured_at"] == "2026-11-20T09:30:00+00:00"


def test_list_filters_and_paging(client):
    for cam, hour, identity in [("a", 9, 0), ("a", 10, 1), ("b", 10, 2), ("b", 11, 3), ("c", 12, 4)]:
        ingest(
            client, [identity_image(identity, 0)], camera_id=cam, captured_at=f"2026-11-20T{hour:02d}:00:00Z"
        )
    page = client.get("/gallery", params={"camera_id": "b"}, headers=SEARCH).json()
    assert page["total"] == 2 and {i["camera_id"] for i in page["items"]} == {"b"}
    both = client.get("/gallery", params=[("camera_id", "a"), ("camera_id", "c")], headers=SEARCH).json()
    assert both["total"] == 3
    window = client.get(
        "/gallery", params={"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T12:00:00Z"}, headers=SEARCH
    ).json()
    assert window["total"] == 3  # start inclusive, end exclusive
    paged = client.get("/gallery", params={"limit": 2, "offset": 1}, headers=SEARCH).json()
    assert paged["total"] == 5 and len(paged["items"]) == 2 and paged["limit"] == 2 and paged["offset"] == 1
    times = [i["captured_at"] for i in client.get("/gallery", headers=SEARCH).json()["items"]]
    assert times == sorted(times, reverse=True)
    visitor = window["items"][0]["visitor_id"]
    by_visitor = client.get("/gallery", params={"visitor_id": visitor}, headers=SEARCH).json()
    assert by_visitor["total"] >= 1 and all(i["visitor_id"] == visitor for i in by_visitor["items"])
    cams = client.get("/cameras", headers=SEARCH).json()["cameras"]
    assert [(c["camera_id"], c["items"]) for c in cams] == [("a", 2), ("b", 2), ("c", 1)]
    assert cams[0]["first_seen"] == "2026-11-20T09:00:00+00:00" and cams[0]["last_seen"].startswith(
        "2026-11-20T10"
    )


def test_image_and_thumbnail_bytes(client):
    original = identity_image(0, 7)
    item_id = ingest(client, [original]).json()["items"][0]["id"]
    r = client.get(f"/gallery/{item_id}/image", headers=SEARCH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == original
    thumb = client.get(f"/gallery/{item_id}/image", params={"size": "thumb"}, headers=SEARCH)
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "JPEG" and max(image.size) <= 128
    assert client.get("/gallery/999/image", headers=SEARCH).status_code == 404


def test_non_jpeg_png_formats_are_stored_as_png(client):
    webp = identity_image(4, 0, fmt="WEBP")
    item_id = ingest(client, [webp]).json()["items"][0]["id"]
    r = client.get(f"/gallery/{item_id}/image", headers=SEARCH)
    assert r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as image:
        assert image.size == (32, 64)


def test_delete_item_removes_row_vector_file_and_is_audited(client, settings):
    ids = [i["id"] for i in ingest(client, [identity_image(0, s) for s in range(2)]).json()["items"]]
    files_before = {p for p in settings.images_dir.rglob("*") if p.is_file()}
    assert len(files_before) == 4  # originals + thumbnails
    r = client.delete(f"/gallery/{ids[0]}", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"deleted": [ids[0]]}
    assert client.get(f"/gallery/{ids[0]}", headers=SEARCH).status_code == 404
    assert len({p for p in settings.images_dir.rglob("*") if p.is_file()}) == 2
    hits = client.post("/search", data={"gallery_id": ids[1], "top_k": 10}, headers=SEARCH).json()["hits"]
    assert ids[0] not in [h["id"] for h in hits]
    assert client.get("/readyz").json()["index_size"] == 1
    assert client.delete(f"/gallery/{ids[0]}", headers=ADMIN).status_code == 404
    audit = client.get("/audit", params={"action": "delete_item"}, headers=ADMIN).json()
    assert audit["total"] == 1 and audit["items"][0]["key_name"] == "dev-admin-key"
    assert audit["items"][0]["detail"]["ids"] == [ids[0]]


def test_search_ranks_an_identitys_own_images_first(client):
    ids_by_identity = {}
    for identity in range(6):
        r = ingest(client, [identity_image(identity, s) for s in range(3)], camera_id=f"cam-{identity % 2}")
        ids_by_identity[identity] = {i["id"] for i in r.json()["items"]}
    for identity in (0, 3, 5):
        queries = [identity_image(identity, 100), identity_image(identity, 101)]  # unseen shots
        r = client.post("/search", files=upload(queries), data={"top_k": 5}, headers=SEARCH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query_images"] == 2 and body["top_k"] == 5 and len(body["hits"]) == 5
        assert {h["id"] for h in body["hits"][:3]} == ids_by_identity[identity]
        assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
        scores = [h["score"] for h in body["hits"]]
        assert scores == sorted(scores, reverse=True)
    # From a stored item: the item itself is the query, not a hit.
    some_id = min(ids_by_identity[2])
    hits = client.post("/search", data={"gallery_id": some_id, "top_k": 2}, headers=SEARCH).json()["hits"]
    assert {h["id"] for h in hits} == ids_by_identity[2] - {some_id}
    audit = client.get("/audit", params={"action": "search"}, headers=ADMIN).json()
    assert audit["total"] == 4 and audit["items"][0]["hits"] == 2
    assert (
        audit["items"][0]["key_name"] == "dev-search-key"
        and audit["items"][0]["detail"]["gallery_id"] == some_id
    )


def test_search_filters_still_fill_top_k(client):
    # Identity 0 floods camera "busy"; the other identities are on camera "quiet" at other times.
    ingest(
        client,
        [identity_image(0, s) for s in range(12)],
        camera_id="busy",
        captured_at="2026-11-20T10:00:00Z",
    )
    quiet = []
    for identity in range(1, 6):
        r = ingest(
            client, [identity_image(identity, 0)], camera_id="quiet", captured_at="2026-11-20T12:00:00Z"
        )
        quiet.append(r.json()["items"][0]["id"])
    query = upload([identity_image(0, 50)])
    r = client.post("/search", files=query, data={"top_k": 4, "camera_id": "quiet"}, headers=SEARCH)
    hits = r.json()["hits"]
    assert len(hits) == 4 and all(h["camera_id"] == "quiet" for h in hits)
    r = client.post(
        "/search",
        files=query,
        data={"top_k": 5, "start": "2026-11-20T11:00:00Z", "end": "2026-11-20T13:00Z"},
        headers=SEARCH,
    )
    assert sorted(h["id"] for h in r.json()["hits"]) == sorted(quiet)
    r = client.post(
        "/search", files=query, data={"top_k": 50, "camera_id": ["busy", "quiet"]}, headers=SEARCH
    )
    assert len(r.json()["hits"]) == 17
    r = client.post("/search", files=query, data={"top_k": 5, "camera_id": "nowhere"}, headers=SEARCH)
    assert r.status_code == 200 and r.json()["hits"] == []
    best = client.post("/search", files=query, data={"top_k": 50}, headers=SEARCH).json()["hits"]
    cut = (best[11]["score"] + best[12]["score"]) / 2
    r = client.post("/search", files=query, data={"top_k": 50, "min_score": cut}, headers=SEARCH)
    assert len(r.json()["hits"]) == 12 and all(h["camera_id"] == "busy" for h in r.json()["hits"])
