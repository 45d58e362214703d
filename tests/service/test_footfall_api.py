"""Footfall on a scripted scenario with known answers; reclustering; a process really killed mid-ingest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

import service.ingest
import service.visitors
from reid.cli import main as reid_main
from service.app import create_app
from tests.service.service_fixtures import ADMIN, SEARCH, identity_image, ingest, make_settings

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

# (identity, camera, time, shot): A = 0 visits entrance then till; B = 1 comes back 55 min later; C = 2 once.
SCENARIO = [
    (0, "entrance", "2026-11-20T10:05:00Z", 0),
    (1, "entrance", "2026-11-20T10:10:00Z", 0),
    (0, "till", "2026-11-20T10:20:00Z", 1),
    (0, "till", "2026-11-20T10:21:00Z", 2),
    (1, "entrance", "2026-11-20T11:05:00Z", 1),
    (2, "till", "2026-11-20T11:30:00Z", 0),
    (3, "entrance", "2026-11-20T13:00:00Z", 0),  # outside the window asked for below
]
WINDOW = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T12:00:00Z", "bucket": "1h"}


def _load_scenario(client):
    visitor_of = {}
    for identity, camera, at, shot in SCENARIO:
        item = ingest(client, [identity_image(identity, shot)], camera_id=camera, captured_at=at).json()[
            "items"
        ][0]
        visitor_of.setdefault(identity, set()).add(item["visitor_id"])
    return visitor_of


def _cells(body):
    return {
        (s["bucket_start"][11:16], s["camera_id"]): (s["sightings"], s["unique_visitors"])
        for s in body["series"]
    }


def _assert_known_answers(body):
    assert body["bucket_seconds"] == 3600 and body["cameras"] == ["entrance", "till"]
    assert _cells(body) == {
        ("10:00", "entrance"): (2, 2),
        ("10:00", "till"): (2, 1),
        ("11:00", "entrance"): (1, 1),
        ("11:00", "till"): (1, 1),
    }
    totals = body["totals"]
    assert (totals["sightings"], totals["unique_visitors"]) == (6, 3)  # A, B, C once each
    assert totals["by_camera"] == {
        "entrance": {"sightings": 3, "unique_visitors": 2},
        "till": {"sightings": 3, "unique_visitors": 2},
    }
    assert [(b["sightings"], b["unique_visitors"]) for b in totals["by_bucket"]] == [(4, 2), (2, 2)]


@pytest.mark.parametrize("direct_candidates", [256, 1], ids=["all-recent-items", "nearest-via-index"])
def test_footfall_on_a_scripted_scenario(client, monkeypatch, direct_candidates):
    monkeypatch.setattr(service.visitors, "DIRECT_CANDIDATES", direct_candidates)
    # Two shots of one person in one request: the second must join the first (not yet in the index).
    pair = ingest(
        client,
        [identity_image(5, 0), identity_image(5, 1)],
        camera_id="entrance",
        captured_at="2026-11-20T09:00:00Z",
    ).json()["items"]
    assert pair[0]["visitor_id"] == pair[1]["visitor_id"]
    visitor_of = _load_scenario(client)
    assert all(len(v) == 1 for v in visitor_of.values())  # each person got one visitor id
    assert len({next(iter(v)) for v in visitor_of.values()} | {pair[0]["visitor_id"]}) == 5
    r = client.get("/metrics", params=WINDOW, headers=SEARCH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["start"] == "2026-11-20T10:00:00+00:00" and body["end"] == "2026-11-20T12:00:00+00:00"
    _assert_known_answers(body)
    till = client.get(
        "/metrics", params={**WINDOW, "camera_id": "till", "bucket": "30m"}, headers=SEARCH
    ).json()
    assert till["cameras"] == ["till"]
    # series is sparse (only non-empty cells); by_bucket lists every bucket, zeros included
    assert [(s["bucket_start"][11:16], s["sightings"]) for s in till["series"]] == [
        ("10:00", 2),
        ("11:30", 1),
    ]
    assert [b["sightings"] for b in till["totals"]["by_bucket"]] == [2, 0, 0, 1]
    assert till["totals"]["unique_visitors"] == 2


def test_recluster_regroups_a_window(client, settings, monkeypatch):
    visitor_of = _load_scenario(client)
    # Scramble the stored grouping: everyone becomes one visitor.
    with client.app.state.ctx.sessions() as session, session.begin():
        session.execute(text("update gallery_items set visitor_id = 1"))
    assert client.get("/metrics", params=WINDOW, headers=SEARCH).json()["totals"]["unique_visitors"] == 1
    r = client.post(
        "/visitors/recluster", json={"start": "2026-11-20T00:00Z", "end": "2026-11-21T00:00Z"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json() == {"items": 7, "visitors": 4}
    _assert_known_answers(client.get("/metrics", params=WINDOW, headers=SEARCH).json())
    # The CLI does the same on the stored data (its settings come from the environment).
    monkeypatch.setenv("REID_VISITOR_THRESHOLD", str(settings.visitor_threshold))
    monkeypatch.setenv("REID_VISITOR_HORIZON_S", str(settings.visitor_horizon_s))
    if settings.database_url:
        monkeypatch.setenv("REID_DATABASE_URL", settings.database_url)
    with client.app.state.ctx.sessions() as session, session.begin():
        session.execute(text("update gallery_items set visitor_id = 1"))
    assert (
        reid_main(
            [
                "recluster",
                "--start",
                "2026-11-20",
                "--end",
                "2026-11-21",
                "--data-dir",
                str(settings.data_dir),
            ]
        )
        == 0
    )
    _assert_known_answers(client.get("/metrics", params=WINDOW, headers=SEARCH).json())
    assert len(visitor_of) == 4


KILLER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, os.getcwd())
    import tests.service.service_fixtures as c
    import service.ingest
    from fastapi.testclient import TestClient
    from model.embedder import Embedder
    from service.app import create_app

    def die(session, item):  # the file is on disk, the row is not committed: kill the process
        os._exit(137)

    service.ingest._before_commit = die
    emb = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu")
    with TestClient(create_app(c.make_settings(Path(sys.argv[1]), database_url=sys.argv[2] or None), embedder=emb)) as client:
        c.ingest(client, [c.identity_image(0, 0)])
    """
)


def test_process_killed_mid_ingest_leaves_no_half_item(
    tmp_path, embedder, database_url, vector_store_settings
):
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path), database_url or ""],
        cwd=root,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 137, done.stderr.decode()[-2000:]
    settings_dir = tmp_path / "data" / "images"
    assert [p for p in settings_dir.rglob("*") if p.is_file()]  # the half item's files were written
    # one process on this database: no replica can be between a file write and its commit (no sweep grace)
    settings = make_settings(tmp_path, database_url=database_url, sweep_grace_s=0, **vector_store_settings)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert client.get("/gallery", headers=SEARCH).json()["total"] == 0
        assert client.get("/readyz").json()["index_size"] == 0
        assert [p for p in settings_dir.rglob("*") if p.is_file()] == []
        r = ingest(client, [identity_image(0, 0)])  # the same image can be ingested again
        assert r.json()["created"] == 1


def test_too_many_buckets_x_cameras_is_refused_before_counting(
    tmp_path, embedder, monkeypatch, database_url, vector_store_settings
):
    """A year of 1 h buckets over 106 cameras once answered 133.8 MB in 13.6 s: buckets x cameras is capped,
    the refusal comes before any cell is counted, and it names a request that fits."""
    import service.repository

    settings = make_settings(
        tmp_path, metrics_max_cells=50, database_url=database_url, **vector_store_settings
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        for i, camera in enumerate(["a", "b", "c"]):
            ingest(client, [identity_image(i, 0)], camera_id=camera, captured_at="2026-11-20T10:05:00Z")
        window = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}
        counted = []
        real = service.repository.footfall_by_bucket
        monkeypatch.setattr(
            service.repository, "footfall_by_bucket", lambda *a, **k: counted.append(1) or real(*a, **k)
        )
        r = client.get("/metrics", params={**window, "bucket": "15m"}, headers=SEARCH)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "too_many_cells" and error["field"] == "bucket"
        assert error["message"].startswith("96 buckets x 3 cameras = 288 cells, over the limit of 50")
        assert "a bucket of at least 2h" in error["message"] and "a window of at most 4 h" in error["message"]
        assert counted == []  # refused before the cells were counted
        # the same window with the advised bucket, or with fewer cameras, is answered
        fits = client.get("/metrics", params={**window, "bucket": "2h"}, headers=SEARCH)
        assert fits.status_code == 200 and fits.json()["totals"]["sightings"] == 3 and counted == [1]
        hourly = client.get(
            "/metrics", params={**window, "bucket": "1h", "camera_id": ["a", "b"]}, headers=SEARCH
        )
        assert hourly.status_code == 200, hourly.text
        body = hourly.json()
        assert len(body["series"]) == 2 and len(body["totals"]["by_bucket"]) == 24  # sparse series
