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
from sqlalchemy.orm import Session

from service import footfall, repository
from service.db import write_session
from service.tables import GalleryItem, decode_embedding
from service.validation import PreparedImage

logger = logging.getLogger(__name__)

# Candidates for visitor matching: all recent items when few, else the nearest among them via the index.
DIRECT_CANDIDATES = 256
INDEX_CANDIDATES = 32


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


class VisitorMatcher:
    """Visitor assignment for one request's images, with one candidate lookup for all of them.

    Candidates of an image are the items captured within the horizon of it. When the request's time
    span holds few items, all of them are compared; when it holds many, only each image's
    INDEX_CANDIDATES nearest (one batched index search restricted to those ids). Rows this request
    adds are candidates of the images after them (they are not in the index yet).
    """

    def __init__(self, ctx, session: Session, staged: list[Staged]) -> None:
        self.threshold = ctx.settings.visitor_threshold
        self.horizon = ctx.settings.visitor_horizon_s
        self.per_image: list[np.ndarray] | None = None
        self.rows: dict[int, tuple[np.ndarray, int, float]] = {}  # id -> (vector, visitor id, time)
        self.added: list[tuple[np.ndarray, int, float]] = []
        if not staged:
            return
        span = timedelta(seconds=self.horizon)
        lo = min(s.captured_at for s in staged) - span
        hi = max(s.captured_at for s in staged) + span
        window = repository.ids_with_visitor_between(session, lo, hi)
        if not len(window):
            return
        wanted = window
        if len(window) > DIRECT_CANDIDATES:
            queries = np.stack([s.vector for s in staged])
            _, found = ctx.index.search(queries, INDEX_CANDIDATES, allowed_ids=window)
            self.per_image = [row[row >= 0] for row in found]
            wanted = np.unique(np.concatenate(self.per_image))
        columns = (GalleryItem.id, GalleryItem.embedding, GalleryItem.visitor_id, GalleryItem.captured_at)
        for row in repository.rows_by_id(session, columns, wanted):
            vector = decode_embedding(row.embedding)
            self.rows[row.id] = (vector, row.visitor_id, row.captured_at.timestamp())

    def assign(self, position: int, vector: np.ndarray, captured_at: datetime) -> int | None:
        """The visitor of the best match among this image's candidates, or None for a new visitor."""
        ids = self.rows.keys() if self.per_image is None else self.per_image[position]
        candidates = [self.rows[int(i)] for i in ids if int(i) in self.rows] + self.added
        if not candidates:
            return None
        match = footfall.assign_visitor(
            vector,
            captured_at.timestamp(),
            np.stack([c[0] for c in candidates]),
            np.array([c[1] for c in candidates], dtype=np.int64),
            np.array([c[2] for c in candidates], dtype=np.float64),
            self.threshold,
            self.horizon,
        )
        return None if match is None else int(match)

    def added_row(self, vector: np.ndarray, visitor_id: int, captured_at: datetime) -> None:
        self.added.append((vector, visitor_id, captured_at.timestamp()))


def _referenced_hashes(ctx, hashes: list[str]) -> set[str]:
    with ctx.sessions() as session:
        return set(repository.by_content_hash(session, hashes))


def known_items(ctx, hashes: list[str]) -> dict[str, Stored]:
    """Items already stored under these content hashes (read-only; `commit` re-checks under the lock)."""
    with ctx.sessions() as session:
        return {
            h: Stored("exists", *found) for h, found in repository.by_content_hash(session, hashes).items()
        }


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
                known = repository.by_content_hash(session, [s.prepared.content_hash for s in staged])
                matcher = VisitorMatcher(ctx, session, staged)
                for pos, item_in in enumerate(staged):
                    existing = known.get(item_in.prepared.content_hash)
                    if existing is not None:  # stored before, or earlier in this request
                        results[pos] = Stored("exists", *existing)
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
                                visitor_id=matcher.assign(pos, item_in.vector, item_in.captured_at),
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
                    matcher.added_row(item_in.vector, item.visitor_id, item_in.captured_at)
                    known[item_in.prepared.content_hash] = (item.id, item.visitor_id)
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
