"""Image files on a folder several replicas share: concurrent writes of the same content, deletes that
another replica's new row still needs, and the start-up sweep's grace for files in flight."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from service import repository
from service.db import write_session
from service.retention import remove_unreferenced_files
from service.storage import ImageStore
from service.tables import GalleryItem
from tests.service.service_fixtures import identity_image, ingest

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from service.storage import ImageStore

    store = ImageStore(Path(sys.argv[1]))
    data = bytes(range(256)) * 4096  # 1 MiB: a torn write would show
    for _ in range(int(sys.argv[2])):
        store.write("ab" * 32, data, "png", data[:1000])
    """
)


def test_two_processes_writing_the_same_content_never_leave_a_torn_file(tmp_path):
    root = Path(__file__).resolve().parents[2]
    data = bytes(range(256)) * 4096
    target = tmp_path / "ab" / "ab" / ("ab" * 32 + ".png")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "60"],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        for _ in range(2)
    ]
    reads = 0
    try:
        while any(w.poll() is None for w in writers):
            if target.exists():
                assert target.read_bytes() == data  # whole, whichever writer's copy it is
                reads += 1
    finally:
        for w in writers:
            assert w.wait(timeout=120) == 0
    assert target.read_bytes() == data and reads > 0
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_files_a_row_refers_to_again_are_not_deleted(client):
    """After a delete commits, another replica may store the same bytes again before the files go: the
    files are removed only when no row refers to their content (checked under the write lock)."""
    r = ingest(client, [identity_image(0, 0)])
    item_id = r.json()["items"][0]["id"]
    ctx = client.app.state.ctx
    with ctx.sessions() as session:
        row = next(repository.rows_by_id(session, (GalleryItem.image_path,), [item_id]))
    files = [row.image_path, row.image_path.replace(".png", ".thumb.jpg")]
    assert all((ctx.store.root / f).is_file() for f in files)
    remove_unreferenced_files(ctx.sessions, ctx.store, files)  # the row is there: kept
    assert all((ctx.store.root / f).is_file() for f in files)
    with write_session(ctx.sessions) as session:
        repository.delete_rows(session, [item_id])
    remove_unreferenced_files(ctx.sessions, ctx.store, files)
    assert not any((ctx.store.root / f).exists() for f in files)


def test_the_sweep_keeps_recent_files_for_a_grace_period(tmp_path):
    store = ImageStore(tmp_path)
    kept, _ = store.write("cd" * 32, b"kept", "png", b"thumb")
    orphan, orphan_thumb = store.write("ef" * 32, b"in flight on another replica", "png", b"thumb")
    tmp = tmp_path / "ef" / "ef" / ".tmp-123-x.png"
    tmp.write_bytes(b"being written")
    assert store.sweep({kept, store.relative_paths("cd" * 32, "png")[1]}, min_age_s=600) == 0
    old = time.time() - 3600
    for path in (tmp_path / "ef" / "ef").iterdir():
        os.utime(path, (old, old))
    assert store.sweep({kept, store.relative_paths("cd" * 32, "png")[1]}, min_age_s=600) == 3
    assert (tmp_path / kept).is_file() and not (tmp_path / orphan).exists() and not tmp.exists()
    assert not (tmp_path / orphan_thumb).exists()
