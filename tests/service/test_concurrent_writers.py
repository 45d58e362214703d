"""Two service processes writing to one PostgreSQL database at once: the same bytes become one item.

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
from tests.service.service_fixtures import SEARCH, make_settings

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
    service.ingest._before_commit = lambda session, item: time.sleep(0.3)  # hold the transaction open
    emb = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu")
    images = [c.identity_image(i, 0) for i in range(4)]
    with TestClient(create_app(c.make_settings(data_dir, database_url=database_url), embedder=emb)) as client:
        (out.parent / (out.name + ".ready")).write_text("")
        while not go.exists():
            time.sleep(0.005)
        r = c.ingest(client, images)
        out.write_text(json.dumps({"status": r.status_code, "body": r.json()}))
    """
)


def test_two_processes_ingesting_the_same_bytes_store_one_item_each(tmp_path, embedder, postgres_url):
    settings = make_settings(tmp_path, database_url=postgres_url)
    with TestClient(create_app(settings, embedder=embedder)):  # migrations and keys before the race
        pass
    root = Path(__file__).resolve().parents[2]
    go = tmp_path / "go"
    outs = [tmp_path / f"writer{i}.json" for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), postgres_url, str(go), str(out)],
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
        )
        for out in outs
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
    assert [a["status"] for a in answers] == [200, 200]
    statuses = [[item["status"] for item in a["body"]["items"]] for a in answers]
    # all four images were created by exactly one of the writers; the other one found them
    assert sorted(statuses[0] + statuses[1]) == ["created"] * 4 + ["exists"] * 4, statuses
    ids = [[item["id"] for item in a["body"]["items"]] for a in answers]
    assert ids[0] == ids[1]
    with TestClient(create_app(settings, embedder=embedder)) as client:
        listed = client.get("/gallery", headers=SEARCH).json()
        assert listed["total"] == 4
        assert sorted(i["id"] for i in listed["items"]) == sorted(ids[0])
    engine = make_engine(postgres_url)
    unique = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("gallery_items")}
    engine.dispose()
    assert ("content_hash",) in unique  # the database itself refuses a second row for the same bytes
