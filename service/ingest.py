"""Storing one validated, embedded image: all of it (file, row, vector, index entry) or nothing.

Steps, under the ingest lock: dedupe by content hash -> files written (atomically) -> row with
its embedding and visitor id in one transaction -> index add after the commit. A failure
before the commit removes the files; a failure of the index add removes the row and files
again. A process killed between the steps leaves at worst files without a row (swept at start)
or a row missing from the saved index (the index is rebuilt at start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import footfall
from service.models import GalleryItem
from service.validation import PreparedImage

logger = logging.getLogger(__name__)

# Candidates for visitor matching: all recent items when few, else the nearest among them via the index.
DIRECT_CANDIDATES = 1024
INDEX_CANDIDATES = 128


@dataclass
class Stored:
    status: str  # "created" | "exists"
    id: int
    visitor_id: int | None


def _before_commit(session: Session, item: GalleryItem) -> None:
    """Hook between the row insert and the commit (tests use it to simulate a crash)."""


def assign_visitor(ctx, session: Session, vector: np.ndarray, captured_at: datetime) -> int | None:
    """The visitor id of the best matching recent item (within the horizon), or None for a new visitor."""
    settings = ctx.settings
    horizon = settings.visitor_horizon_s
    lo, hi = captured_at - timedelta(seconds=horizon), captured_at + timedelta(seconds=horizon)
    rows = session.execute(
        select(GalleryItem.id).where(
            GalleryItem.captured_at >= lo, GalleryItem.captured_at <= hi, GalleryItem.visitor_id.is_not(None)
        )
    ).scalars()
    ids = np.fromiter(rows, dtype=np.int64)
    if not len(ids):
        return None
    if len(ids) > DIRECT_CANDIDATES:
        _, found = ctx.index.search(vector[None, :], INDEX_CANDIDATES, allowed_ids=ids)
        ids = found[0][found[0] >= 0]
    candidates = session.execute(
        select(GalleryItem.id, GalleryItem.embedding, GalleryItem.visitor_id, GalleryItem.captured_at).where(
            GalleryItem.id.in_([int(i) for i in ids])
        )
    ).all()
    if not candidates:
        return None
    vectors = np.stack([np.frombuffer(c.embedding, dtype=np.float32) for c in candidates])
    visitors = np.array([c.visitor_id for c in candidates], dtype=np.int64)
    times = np.array([c.captured_at.timestamp() for c in candidates], dtype=np.float64)
    match = footfall.assign_visitor(
        vector, captured_at.timestamp(), vectors, visitors, times, settings.visitor_threshold, horizon
    )
    return None if match is None else int(match)


def store_image(
    ctx,
    prepared: PreparedImage,
    vector: np.ndarray,
    camera_id: str,
    captured_at: datetime,
    external_ref: str | None,
) -> Stored:
    """Store one image (see the module docstring). Runs in a worker thread."""
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    store = ctx.store
    data, ext, media_type = store.encode(prepared.data, prepared.image, prepared.format)
    thumbnail = store.thumbnail(prepared.image)
    with ctx.ingest_lock:
        with ctx.sessions() as session:
            existing = session.execute(
                select(GalleryItem.id, GalleryItem.visitor_id).where(
                    GalleryItem.content_hash == prepared.content_hash
                )
            ).first()
        if existing is not None:
            return Stored("exists", existing.id, existing.visitor_id)
        image_rel, thumb_rel = store.write(prepared.content_hash, data, ext, thumbnail)
        try:
            with ctx.sessions() as session, session.begin():
                visitor_id = assign_visitor(ctx, session, vector, captured_at)
                item = GalleryItem(
                    content_hash=prepared.content_hash,
                    camera_id=camera_id,
                    captured_at=captured_at,
                    external_ref=external_ref,
                    image_path=image_rel,
                    thumbnail_path=thumb_rel,
                    media_type=media_type,
                    width=prepared.width,
                    height=prepared.height,
                    embedding=vector.tobytes(),
                    embedding_dim=int(vector.shape[0]),
                    visitor_id=visitor_id,
                )
                session.add(item)
                session.flush()
                if item.visitor_id is None:  # a new visitor is named after its first item
                    item.visitor_id = item.id
                _before_commit(session, item)
                item_id, visitor_id = item.id, item.visitor_id
        except BaseException:
            store.delete([image_rel, thumb_rel])
            raise
        try:
            ctx.index.add(np.array([item_id], dtype=np.int64), vector[None, :])
        except BaseException:
            logger.exception("index add failed for item %d; removing the item again", item_id)
            from service.retention import delete_items

            delete_items(ctx.sessions, store, None, [item_id])
            raise
    return Stored("created", item_id, visitor_id)
