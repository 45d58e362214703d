"""Two service processes writing to one PostgreSQL database at once: the same bytes become one item, and
two pictures of one person ingested at the same moment on both become one visitor, not two.

Dedupe rests on the unique constraint on gallery_items.content_hash and on the write lock that every write
transaction takes (service/db.py: write_session; an advisory lock on PostgreSQL). Each child process holds
its transaction open for a while per image (the _before_commit hook), so the two ingests overlap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import inspect

from service.app import create_app
from service.db import make_engine
from tests.service.service_fixtures import SEARCH, identity_image, make_settings

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import tests.service.service_fixtures as c
    import service.ingest
    from fastapi.testclient import TestClient
    from model.embedder import Embedder
    from service.app import create_app

    data_dir, database_url, go, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    shots = [int(s) for s in sys.argv[5].split(",")]
    service.ingest._before_commit = lambda session, item: time.sleep(0.3)  # hold the transaction open
    emb = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu")
    images = [c.identity_image(0, shot) if shot >= 0 else c.identity_image(-shot, 0) for shot in shots]
    with TestClient(create_app(c.make_settings(data_dir, database_url=database_url), embedder=emb)) as client:
        (out.parent / (out.name + ".ready")).write_text("")
        while not go.exists():
            time.sleep(0.005)
        r = c.ingest(client, images)
        out.write_text(json.dumps({"status": r.status_code, "body": r.json()}))
    """
)


def _race(tmp_path, postgres_url, embedder, shots: list[str]) -> list[dict]:
    """Two writer processes on one database and one image folder, released at the same moment; their answers."""
    settings = make_settings(tmp_path, database_url=postgres_url)
    with TestClient(create_app(settings, embedder=embedder)):  # migrations and keys before the race
        pass
    root = Path(__file__).resolve().parents[2]
    go = tmp_path / "go"
    outs = [tmp_path / f"writer{i}.json" for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), postgres_url, str(go), str(out), shot_list],
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
        )
        for out, shot_list in zip(outs, shots, strict=True)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((out.parent / (out.name + ".ready")).exists() for out in outs):
            assert all(w.poll() is None for w in writers), [w.stderr.read().decode()[-2000:] for w in writers]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        go.write_text("")
        for w in writers:
            assert w.wait(timeout=120) == 0, w.stderr.read().decode()[-2000:]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    answers = [json.loads(out.read_text()) for out in outs]
    assert [a["status"] for a in answers] == [200, 200], answers
    return [a["body"] for a in answers]


IMAGES_OF_THE_SAME_BYTES_RACE = [identity_image(i, 0) for i in range(4)]


def test_two_processes_ingesting_the_same_bytes_store_one_item_each(tmp_path, embedder, postgres_url):
    # identity 0..3, shot 0 (negative numbers: identity -n, shot 0)
    answers = _race(tmp_path, postgres_url, embedder, ["0,-1,-2,-3", "0,-1,-2,-3"])
    settings = make_settings(tmp_path, database_url=postgres_url)
    statuses = [[item["status"] for item in a["items"]] for a in answers]
    # all four images were created by exactly one of the writers; the other one found them
    assert sorted(statuses[0] + statuses[1]) == ["created"] * 4 + ["exists"] * 4, statuses
    ids = [[item["id"] for item in a["items"]] for a in answers]
    assert ids[0] == ids[1]
    with TestClient(create_app(settings, embedder=embedder)) as client:
        listed = client.get("/gallery", headers=SEARCH).json()
        assert listed["total"] == 4
        assert sorted(i["id"] for i in listed["items"]) == sorted(ids[0])
        for item_id, image in zip(ids[0], IMAGES_OF_THE_SAME_BYTES_RACE, strict=True):  # files kept
            r = client.get(f"/gallery/{item_id}/image", headers=SEARCH)
            assert r.status_code == 200 and r.content == image
    engine = make_engine(postgres_url)
    unique = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("gallery_items")}
    engine.dispose()
    assert ("content_hash",) in unique  # the database itself refuses a second row for the same bytes


def test_one_person_ingested_on_two_processes_at_once_is_one_visitor(tmp_path, embedder, postgres_url):
    """Different pictures of one person (shots 1-2 and 3-4 of identity 0) arrive on both processes at the
    same moment: whoever writes second sees the first one's items as candidates and joins their visitor."""
    answers = _race(tmp_path, postgres_url, embedder, ["1,2", "3,4"])
    items = [item for a in answers for item in a["items"]]
    assert [item["status"] for item in items] == ["created"] * 4
    assert len({item["id"] for item in items}) == 4
    assert len({item["visitor_id"] for item in items}) == 1, items
