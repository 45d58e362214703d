"""Person tracks (video ingest): track_ref stored, listed, filtered and in search hits; one track is one
visitor (must-link) online and in recluster; two overlapping tracks of one camera are two visitors
(cannot-link)."""

from __future__ import annotations

import numpy as np
import pytest

from service import footfall
from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, identity_image, upload

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

DAY = "2024-06-03T"


def post(client, images, cameras, times, tracks):
    data = {"camera_id": cameras, "captured_at": times, "track_ref": tracks}
    response = client.post("/gallery", files=upload(images), data=data, headers=INGEST)
    assert response.status_code == 200, response.text
    return [item["visitor_id"] for item in response.json()["items"]]


def test_track_ref_is_stored_listed_filtered_and_in_hits(client):
    images = [identity_image(0, 0), identity_image(1, 0), identity_image(2, 0)]
    post(
        client,
        images,
        ["cam-1"] * 3,
        [DAY + "10:00:00Z", DAY + "10:00:01Z", DAY + "10:00:02Z"],
        ["cam-1/abc/1", "cam-1/abc/1", "cam-1/abc/2"],
    )
    listed = client.get("/gallery", headers=SEARCH).json()
    assert sorted(i["track_ref"] for i in listed["items"]) == ["cam-1/abc/1", "cam-1/abc/1", "cam-1/abc/2"]
    one = client.get("/gallery", params={"track_ref": "cam-1/abc/1"}, headers=SEARCH).json()
    assert one["total"] == 2 and {i["track_ref"] for i in one["items"]} == {"cam-1/abc/1"}
    assert client.get("/gallery", params={"track_ref": "none"}, headers=SEARCH).json()["total"] == 0
    item = client.get(f"/gallery/{one['items'][0]['id']}", headers=SEARCH).json()
    assert item["track_ref"] == "cam-1/abc/1"
    hits = client.post("/search", files=upload([identity_image(2, 5)]), headers=SEARCH).json()["hits"]
    assert hits[0]["track_ref"] == "cam-1/abc/2"


def test_bad_track_refs_are_refused_and_store_nothing(client):
    data = {"camera_id": "cam-1", "captured_at": DAY + "10:00:00Z", "track_ref": "x" * 129}
    response = client.post("/gallery", files=upload([identity_image(0, 0)]), data=data, headers=INGEST)
    assert response.status_code == 422 and response.json()["error"]["field"] == "track_ref"
    data["track_ref"] = ["a", "b"]
    response = client.post("/gallery", files=upload([identity_image(0, 0)]), data=data, headers=INGEST)
    assert response.status_code == 422 and "one per file" in response.json()["error"]["message"]
    data["track_ref"] = "bad\x01ref"
    response = client.post("/gallery", files=upload([identity_image(0, 0)]), data=data, headers=INGEST)
    assert response.status_code == 422
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 0


def test_one_track_is_one_visitor_even_when_the_crops_look_different(client):
    """Different-looking crops (re-ID alone would make them two visitors) share their track's visitor,
    within one request and across requests."""
    first = post(
        client,
        [identity_image(0, 0), identity_image(3, 0)],
        ["cam-1"] * 2,
        [DAY + "10:00:00Z", DAY + "10:00:01Z"],
        ["t/1", "t/1"],
    )
    later = post(client, [identity_image(5, 0)], ["cam-1"], [DAY + "10:00:02Z"], ["t/1"])
    untracked = post(client, [identity_image(4, 0)], ["cam-1"], [DAY + "10:00:01Z"], [""])
    assert first[0] == first[1] == later[0]
    assert untracked[0] != first[0]
    metrics = client.get(
        "/metrics", params={"start": DAY + "09:00:00Z", "end": DAY + "11:00:00Z"}, headers=SEARCH
    ).json()
    assert metrics["totals"]["unique_visitors"] == 2


def test_overlapping_tracks_of_one_camera_are_two_visitors(client):
    """Near-identical crops (re-ID alone: one visitor) on two tracks of one camera at the same time are
    two people; the same look on another camera, or later on the same camera, is linked by re-ID."""
    a = post(
        client,
        [identity_image(1, 0), identity_image(1, 1)],
        ["cam-1"] * 2,
        [DAY + "10:00:00Z", DAY + "10:00:10Z"],
        ["cam-1/s/1"] * 2,
    )
    b = post(client, [identity_image(1, 2)], ["cam-1"], [DAY + "10:00:05Z"], ["cam-1/s/2"])
    other_camera = post(client, [identity_image(1, 3)], ["cam-2"], [DAY + "10:00:05Z"], ["cam-2/s/1"])
    reentry = post(client, [identity_image(1, 4)], ["cam-1"], [DAY + "10:05:00Z"], ["cam-1/s/3"])
    assert a[0] == a[1]
    assert b[0] != a[0]
    assert other_camera[0] in (a[0], b[0])
    assert reentry[0] in (a[0], b[0])


def test_recluster_keeps_tracks_whole_and_overlapping_tracks_apart(client):
    post(
        client,
        [identity_image(0, 0), identity_image(3, 0)],
        ["cam-1"] * 2,
        [DAY + "10:00:00Z", DAY + "10:00:10Z"],
        ["cam-1/r/1"] * 2,
    )
    post(client, [identity_image(0, 1)], ["cam-1"], [DAY + "10:00:05Z"], ["cam-1/r/2"])
    response = client.post(
        "/visitors/recluster", json={"start": DAY + "09:00:00Z", "end": DAY + "11:00:00Z"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    items = client.get("/gallery", headers=SEARCH).json()["items"]
    by_track = {}
    for item in items:
        by_track.setdefault(item["track_ref"], set()).add(item["visitor_id"])
    assert all(len(v) == 1 for v in by_track.values())
    assert by_track["cam-1/r/1"] != by_track["cam-1/r/2"]


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cluster_visitors_must_link_and_cannot_link_hand_worked():
    # 0, 1: one track (orthogonal looks); 2 looks like 0; 3 looks like 0 on another camera
    vectors = _unit([[1, 0, 0], [0, 1, 0], [1, 0.01, 0], [1, 0, 0.01]])
    times = np.array([0.0, 10.0, 5.0, 5.0])
    cameras = np.array(["c1", "c1", "c1", "c2"], dtype=object)
    plain = footfall.cluster_visitors(vectors, times, cameras, 0.9, 3600)
    assert plain[0] != plain[1] and plain[0] == plain[2] == plain[3]
    tracks = np.array(["c1/1", "c1/1", "c1/2", None], dtype=object)
    labels = footfall.cluster_visitors(vectors, times, cameras, 0.4, 3600, tracks=tracks)
    assert labels[0] == labels[1]  # must-link
    assert labels[2] != labels[0]  # cannot-link: same camera, overlapping in time
    # item 3 on another camera: mean similarity to {0, 1} is ~0.5 >= 0.4, to {2} ~1: it joins 2 first
    assert labels[3] == labels[2]


@pytest.mark.parametrize(
    ("span", "expected"), [((0, 10), {7}), ((11, 19), set()), ((20, 30), {8}), ((-5, 100), {7, 8})]
)
def test_overlapping_visitors(span, expected):
    assert footfall.overlapping_visitors(span, [(7, 5.0, 10.0), (8, 20.0, 25.0)]) == expected


def test_assign_visitor_never_picks_an_excluded_visitor():
    vectors = _unit([[1, 0], [1, 0.05]])
    args = (vectors[0], 0.0, vectors, np.array([3, 4]), np.array([0.0, 0.0]), 0.9, 60)
    assert footfall.assign_visitor(*args) == 3
    assert footfall.assign_visitor(*args, exclude={3}) == 4
    assert footfall.assign_visitor(*args, exclude={3, 4}) is None


def test_a_new_track_is_decided_by_all_its_crops_not_by_its_first(client):
    """A track sent whole (as the ingest does when it ends) whose first crop looks like an earlier visitor
    but whose other crops do not is a new visitor; a track whose crops all look like that visitor joins it."""
    earlier = post(client, [identity_image(1, 0)], ["cam-2"], [DAY + "10:00:00Z"], ["cam-2/a/1"])
    times = [DAY + "10:00:10Z", DAY + "10:00:11Z", DAY + "10:00:12Z"]
    shots = [identity_image(1, 2), identity_image(1, 3), identity_image(1, 4)]
    assert post(client, shots, ["cam-3"] * 3, times, ["cam-3/c/1"] * 3) == [earlier[0]] * 3
    # one crop of that person, alone, links to the visitor
    assert post(client, [identity_image(1, 1)], ["cam-4"], [DAY + "10:00:20Z"], ["cam-4/d/1"]) == [earlier[0]]
    # the same kind of crop first in a track of someone else: the rest of the track says no
    shots = [identity_image(1, 5), identity_image(2, 0), identity_image(2, 1)]
    odd_first = post(client, shots, ["cam-1"] * 3, times, ["cam-1/b/1"] * 3)
    assert len(set(odd_first)) == 1 and odd_first[0] != earlier[0]
