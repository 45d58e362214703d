"""Storing validated, embedded images: each one completely (file, row, vector, index entry) or not at all.

1. stage (any thread, in parallel): encode, thumbnail, write both files atomically under their
   content-hash names (skipped when already on disk: same name = same bytes).
2. commit (under the ingest lock, one transaction per request, one SAVEPOINT per image): dedupe by
   content hash -> make sure the files are there -> visitor assignment -> row with its embedding.
   An image that fails rolls back only its savepoint; then the transaction commits.
3. index add for the new rows, after the commit.
Files of images that did not end up in a committed row are removed (unless a committed row
uses the same content). A failed index add removes its rows and files again. A process killed
anywhere leaves at worst files without a row (swept at start) or committed rows missing from
the saved index (the index is rebuilt at start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import footfall
from service.db import write_session
from service.models import GalleryItem
from service.validation import PreparedImage

logger = logging.getLogger(__name__)

# Candidates for visitor matching: all recent items when few, else the nearest among them via the index.
DIRECT_CANDIDATES = 256
INDEX_CANDIDATES = 128


@dataclass
class Stored:
    status: str  # "created" | "exists"
    id: int
    visitor_id: int | None


@dataclass
class Staged:
    """An image whose files are on disk, waiting for its row."""

    prepared: PreparedImage
    vector: np.ndarray
    camera_id: str
    captured_at: datetime
    external_ref: str | None
    data: bytes
    thumbnail: bytes
    ext: str
    media_type: str
    image_rel: str
    thumb_rel: str


def _before_commit(session: Session, item: GalleryItem) -> None:
    """Hook after an image's row is flushed, before the commit (tests use it to simulate crashes)."""


def stage(ctx, prepared: PreparedImage, vector, camera_id, captured_at, external_ref) -> Staged:
    """Encode and write the image's files (atomic; not yet referenced by any row)."""
    store = ctx.store
    data, ext, media_type = store.encode(prepared.data, prepared.image, prepared.format)
    image_rel, thumb_rel = store.relative_paths(prepared.content_hash, ext)
    thumbnail = b""
    if not (store.root / image_rel).is_file() or not (store.root / thumb_rel).is_file():
        thumbnail = store.thumbnail(prepared.image)
        store.write(prepared.content_hash, data, ext, thumbnail)
    return Staged(
        prepared,
        np.ascontiguousarray(vector, dtype=np.float32),
        camera_id,
        captured_at,
        external_ref,
        data,
        thumbnail,
        ext,
        media_type,
        image_rel,
        thumb_rel,
    )


def _ensure_files(ctx, staged: Staged) -> None:
    """Re-write files removed meanwhile (another request with the same bytes failed and cleaned up)."""
    store = ctx.store
    if not (store.root / staged.image_rel).is_file() or not (store.root / staged.thumb_rel).is_file():
        thumbnail = staged.thumbnail or store.thumbnail(staged.prepared.image)
        store.write(staged.prepared.content_hash, staged.data, staged.ext, thumbnail)


def assign_visitor(
    ctx,
    session: Session,
    vector: np.ndarray,
    captured_at: datetime,
    pending_ids: frozenset[int] = frozenset(),
) -> int | None:
    """The visitor id of the best matching item within the horizon, or None for a new visitor.

    Candidates: the items captured within the horizon. When there are many, only the nearest
    INDEX_CANDIDATES of the committed ones (found with the index, restricted to those ids) are
    compared, plus the rows this transaction added (`pending_ids`, not in the index yet).
    """
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
        pending = np.isin(ids, np.fromiter(pending_ids, dtype=np.int64, count=len(pending_ids)))
        _, found = ctx.index.search(vector[None, :], INDEX_CANDIDATES, allowed_ids=ids[~pending])
        ids = np.concatenate([found[0][found[0] >= 0], ids[pending]])
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


def _referenced_hashes(ctx, hashes: list[str]) -> set[str]:
    with ctx.sessions() as session:
        rows = session.execute(select(GalleryItem.content_hash).where(GalleryItem.content_hash.in_(hashes)))
        return set(rows.scalars())


def _remove_unreferenced(ctx, staged: list[Staged]) -> None:
    if not staged:
        return
    referenced = _referenced_hashes(ctx, [s.prepared.content_hash for s in staged])
    ctx.store.delete(
        [p for s in staged if s.prepared.content_hash not in referenced for p in (s.image_rel, s.thumb_rel)]
    )


def commit(ctx, staged: list[Staged]) -> list[Stored | Exception]:
    """Rows for the staged images (see the module docstring); one result per image, in order."""
    results: list[Stored | Exception | None] = [None] * len(staged)
    created: list[tuple[int, int, np.ndarray]] = []  # (position, id, vector)
    with ctx.ingest_lock:
        try:
            with write_session(ctx.sessions) as session:
                for pos, item_in in enumerate(staged):
                    existing = session.execute(
                        select(GalleryItem.id, GalleryItem.visitor_id).where(
                            GalleryItem.content_hash == item_in.prepared.content_hash
                        )
                    ).first()
                    if existing is not None:
                        results[pos] = Stored("exists", existing.id, existing.visitor_id)
                        continue
                    try:
                        with session.begin_nested():
                            _ensure_files(ctx, item_in)
                            item = GalleryItem(
                                content_hash=item_in.prepared.content_hash,
                                camera_id=item_in.camera_id,
                                captured_at=item_in.captured_at,
                                external_ref=item_in.external_ref,
                                image_path=item_in.image_rel,
                                thumbnail_path=item_in.thumb_rel,
                                media_type=item_in.media_type,
                                width=item_in.prepared.width,
                                height=item_in.prepared.height,
                                embedding=item_in.vector.tobytes(),
                                embedding_dim=int(item_in.vector.shape[0]),
                                visitor_id=assign_visitor(
                                    ctx,
                                    session,
                                    item_in.vector,
                                    item_in.captured_at,
                                    frozenset(c[1] for c in created),
                                ),
                            )
                            session.add(item)
                            session.flush()
                            if item.visitor_id is None:  # a new visitor is named after its first item
                                item.visitor_id = item.id
                                session.flush()
                            _before_commit(session, item)
                    except Exception as exc:  # this image only; the others go on
                        results[pos] = exc
                        continue
                    results[pos] = Stored("created", item.id, item.visitor_id)
                    created.append((pos, item.id, item_in.vector))
        except BaseException:
            _remove_unreferenced(ctx, staged)
            raise
        _remove_unreferenced(
            ctx, [s for s, r in zip(staged, results, strict=True) if isinstance(r, Exception)]
        )
        if created:
            try:
                ctx.index.add(
                    np.array([c[1] for c in created], dtype=np.int64), np.stack([c[2] for c in created])
                )
            except Exception as exc:
                logger.exception("index add failed; removing the %d new item(s) again", len(created))
                from service.retention import delete_items

                delete_items(ctx.sessions, ctx.store, None, [c[1] for c in created])
                for pos, _, _ in created:
                    results[pos] = exc
    return results  # type: ignore[return-value]
