"""Deleting items (rows, vectors, files) and the retention purge.

Order: rows deleted and committed first (the database is the truth), then vectors removed from
the index, then files removed. A crash between the steps leaves only things the start-up
checks repair: an index that no longer matches is rebuilt, orphaned files are swept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from sqlalchemy.orm import Session, sessionmaker

from service import audit as audit_log
from service import repository
from service.db import write_session
from service.gallery_index import GalleryIndex
from service.storage import ImageStore

logger = logging.getLogger(__name__)


def delete_items(
    sessions: sessionmaker[Session],
    store: ImageStore,
    index: GalleryIndex | None,
    ids: Iterable[int],
    audit: tuple[str | None, str, dict] | None = None,
) -> list[int]:
    """Delete these items everywhere; returns the ids that existed. `audit` = (key name, action, detail)."""
    ids = sorted({int(i) for i in ids})
    with write_session(sessions) as session:
        deleted, files = repository.delete_rows(session, ids)
        if audit is not None and deleted:
            key_name, action, detail = audit
            audit_log.record(session, key_name, action, {**detail, "ids": deleted}, hits=len(deleted))
    if index is not None and deleted:
        index.remove(deleted)
    remove_unreferenced_files(sessions, store, files)
    return deleted


def remove_unreferenced_files(sessions: sessionmaker[Session], store: ImageStore, files: list[str]) -> None:
    """Delete these image files unless a row refers to their content again (another replica re-ingested the
    same bytes after our delete committed). Under the write lock, so no such row is committed meanwhile."""
    if not files:
        return
    hashes = {PurePosixPath(f).name.split(".")[0]: f for f in files}
    with write_session(sessions) as session:
        referenced = set(repository.by_content_hash(session, hashes))
        store.delete([f for f in files if PurePosixPath(f).name.split(".")[0] not in referenced])


def expired_ids(session: Session, cutoff: datetime) -> list[int]:
    return repository.ids_captured_before(session, cutoff)


def purge(
    sessions: sessionmaker[Session],
    store: ImageStore,
    index: GalleryIndex | None,
    older_than_days: float,
    now: datetime | None = None,
) -> list[int]:
    """Delete items captured more than `older_than_days` ago (0 = keep forever: nothing is deleted)."""
    if older_than_days <= 0:
        return []
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    with sessions() as session:
        ids = expired_ids(session, cutoff)
    if not ids:
        return []
    deleted = delete_items(
        sessions, store, index, ids, audit=(None, "retention_purge", {"cutoff": cutoff.isoformat()})
    )
    logger.info("retention: purged %d item(s) captured before %s", len(deleted), cutoff.isoformat())
    return deleted


async def purge_periodically(ctx, interval_s: float) -> None:
    """Background task: purge now and then every `interval_s` seconds, saving the index after a purge.
    With several replicas only the holder of the jobs lease purges (service/jobs.py); the others wait."""
    while True:
        if ctx.jobs is not None and not ctx.jobs.held:
            await asyncio.sleep(ctx.settings.replica_poll_s)
            continue
        ctx.metrics.job_runs.labels("retention").inc()
        try:
            deleted = await asyncio.to_thread(
                purge, ctx.sessions, ctx.store, ctx.index, ctx.settings.retention_days
            )
            if deleted:
                await asyncio.to_thread(ctx.index.save)
                ctx.metrics.index_size.set(len(ctx.index))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("retention purge failed; will retry")
        await asyncio.sleep(interval_s)
