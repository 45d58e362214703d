"""Ingest: uploads + their metadata in, one result per image out (`ingest`, the only entry point).

Each image is stored completely (file, row, vector, index entry) or not at all:
0. prepare (thread pool, in parallel): read, check and decode each upload; images already stored
   under the same content hash are answered without embedding them; the others are embedded
   through the micro-batcher.
1. stage (any thread, in parallel): encode, thumbnail, write both files atomically under their
   content-hash names (skipped when already on disk: same name = same bytes).
2. commit (under the ingest lock, one transaction per request, one SAVEPOINT per image): dedupe by
   content hash -> make sure the files are there -> visitor assignment -> row with its embedding.
   An image that fails rolls back only its savepoint; then the transaction commits.
3. index add for the new rows, after the commit.
4. commit listeners (ctx.commit_listeners) are called with the committed items (id, vector, camera,
   capture time, visitor).
Files of images that did not end up in a committed row are removed (unless a committed row
uses the same content). A failed index add removes its rows and files again. A process killed
anywhere leaves at worst files without a row (swept at start) or committed rows missing from
the saved index (the index is rebuilt at start).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service import repository, validation
from service.db import write_session
from service.errors import ApiError
from service.gallery_index import attributes
from service.tables import GalleryItem
from service.validation import PreparedImage
from service.visitors import VisitorMatcher

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ItemMeta:
    """What the client says about one image."""

    camera_id: str
    captured_at: datetime
    external_ref: str | None = None
    track_ref: str | None = None  # the person track the crop was cut from (one track = one visitor)


@dataclass(frozen=True)
class CommittedItem:
    """A gallery item this ingest committed and indexed (what commit listeners receive)."""

    id: int
    vector: np.ndarray
    camera_id: str
    captured_at: datetime
    visitor_id: int | None


@dataclass
class ItemResult:
    """The answer for one upload: created / exists with its ids, or error with (HTTP status, detail)."""

    status: str  # "created" | "exists" | "error"
    id: int | None = None
    visitor_id: int | None = None
    http_status: int | None = None
    error: dict | None = None


@dataclass
class IngestResult:
    items: list[ItemResult]  # one per upload, in order
    committed: list[CommittedItem]


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
    track_ref: str | None = None


def _before_commit(session: Session, item: GalleryItem) -> None:
    """Hook after an image's row is flushed, before the commit (tests use it to simulate crashes)."""


def stage(
    ctx, prepared: PreparedImage, vector, camera_id, captured_at, external_ref, track_ref=None
) -> Staged:
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
        track_ref,
    )


def _ensure_files(ctx, staged: Staged) -> None:
    """Re-write files removed meanwhile (another request with the same bytes failed and cleaned up)."""
    store = ctx.store
    if not (store.root / staged.image_rel).is_file() or not (store.root / staged.thumb_rel).is_file():
        thumbnail = staged.thumbnail or store.thumbnail(staged.prepared.image)
        store.write(staged.prepared.content_hash, staged.data, staged.ext, thumbnail)


def known_items(ctx, hashes: list[str]) -> dict[str, Stored]:
    """Items already stored under these content hashes (read-only; `commit` re-checks under the lock)."""
    with ctx.sessions() as session:
        return {
            h: Stored("exists", *found) for h, found in repository.by_content_hash(session, hashes).items()
        }


def _remove_unreferenced(ctx, staged: list[Staged]) -> None:
    """Remove the files of staged images no row refers to. Under the write lock: another process (replica)
    cannot commit a row for the same bytes between the check and the delete (its commit re-writes files
    that are missing: _ensure_files)."""
    if not staged:
        return
    with write_session(ctx.sessions) as session:
        referenced = set(repository.by_content_hash(session, [s.prepared.content_hash for s in staged]))
        ctx.store.delete(
            [
                p
                for s in staged
                if s.prepared.content_hash not in referenced
                for p in (s.image_rel, s.thumb_rel)
            ]
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
                                track_ref=item_in.track_ref,
                                image_path=item_in.image_rel,
                                thumbnail_path=item_in.thumb_rel,
                                media_type=item_in.media_type,
                                width=item_in.prepared.width,
                                height=item_in.prepared.height,
                                embedding=item_in.vector.tobytes(),
                                embedding_dim=int(item_in.vector.shape[0]),
                                visitor_id=matcher.assign(
                                    pos,
                                    item_in.vector,
                                    item_in.captured_at,
                                    item_in.camera_id,
                                    item_in.track_ref,
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
                    matcher.added_row(item_in.vector, item.visitor_id, item_in.captured_at, item_in.track_ref)
                    known[item_in.prepared.content_hash] = (item.id, item.visitor_id)
                    results[pos] = Stored("created", item.id, item.visitor_id)
                    created.append((pos, item.id, item_in.vector, item_in.camera_id, item_in.captured_at))
        except BaseException:
            _remove_unreferenced(ctx, staged)
            raise
        _remove_unreferenced(
            ctx, [s for s, r in zip(staged, results, strict=True) if isinstance(r, Exception)]
        )
        if created:
            try:
                ctx.index.add_new(  # a sync (service/gallery_index.py) may have added some already
                    np.array([c[1] for c in created], dtype=np.int64),
                    np.stack([c[2] for c in created]),
                    attributes([c[3] for c in created], [c[4] for c in created]),
                )
            except Exception as exc:
                logger.exception("index add failed; removing the %d new item(s) again", len(created))
                from service.retention import delete_items

                delete_items(ctx.sessions, ctx.store, None, [c[1] for c in created])
                for pos, *_ in created:
                    results[pos] = exc
    return results  # type: ignore[return-value]


def _error_result(exc: BaseException) -> ItemResult:
    if isinstance(exc, ApiError):
        return ItemResult("error", http_status=exc.status, error=exc.detail())
    logger.error("storing an image failed", exc_info=exc)
    detail = {"code": "internal", "message": "the image could not be stored (server error)", "field": None}
    return ItemResult("error", http_status=500, error=detail)


def _notify(ctx, committed: list[CommittedItem]) -> None:
    for listener in list(ctx.commit_listeners):
        try:
            listener(ctx, committed)
        except Exception:  # a listener's failure is its own: the items are stored
            logger.exception("commit listener %r failed", listener)


async def _prepared(ctx, upload: UploadFile) -> PreparedImage | ApiError:
    settings = ctx.settings
    try:
        return await run_in_threadpool(
            validation.prepare_upload, upload, settings.max_upload_bytes, settings.max_pixels
        )
    except ApiError as exc:
        return exc


async def ingest(ctx, uploads: Sequence[UploadFile], meta: Sequence[ItemMeta]) -> IngestResult:
    """Store these uploads (meta[i] describes uploads[i]); one result per upload, in order. A bad
    upload fails alone; the same bytes again answer "exists" with the stored item's ids."""
    if len(uploads) != len(meta):
        raise ValueError(f"{len(uploads)} uploads but {len(meta)} metadata entries")
    n = len(uploads)
    prepared = await asyncio.gather(*(_prepared(ctx, upload) for upload in uploads))
    outcome: dict[int, Stored | BaseException] = {
        i: p for i, p in enumerate(prepared) if isinstance(p, BaseException)
    }
    good = [i for i in range(n) if i not in outcome]
    # The same bytes again (a camera retrying, a re-run import) are answered without embedding them.
    known = await run_in_threadpool(known_items, ctx, [prepared[i].content_hash for i in good])
    outcome.update({i: known[prepared[i].content_hash] for i in good if prepared[i].content_hash in known})
    good = [i for i in good if i not in outcome]
    vectors = await asyncio.gather(
        *(ctx.batcher.submit([prepared[i].image]) for i in good), return_exceptions=True
    )
    embedded = []
    for i, vector in zip(good, vectors, strict=True):
        if isinstance(vector, BaseException):
            outcome[i] = vector
        else:
            embedded.append((i, vector[0]))

    async def stage_one(i: int, vector):
        try:
            m = meta[i]
            return await run_in_threadpool(
                stage, ctx, prepared[i], vector, m.camera_id, m.captured_at, m.external_ref, m.track_ref
            )
        except Exception as exc:  # noqa: BLE001 - reported per item
            return exc

    staged = await asyncio.gather(*(stage_one(i, vector) for i, vector in embedded))
    ready = []
    for (i, _), result in zip(embedded, staged, strict=True):
        if isinstance(result, BaseException):
            outcome[i] = result
        else:
            ready.append((i, result))
    committed: list[CommittedItem] = []
    if ready:
        try:
            stored = await run_in_threadpool(commit, ctx, [s for _, s in ready])
        except Exception as exc:  # noqa: BLE001 - the whole transaction failed
            stored = [exc] * len(ready)
        for (i, staged_item), result in zip(ready, stored, strict=True):
            outcome[i] = result
            if isinstance(result, Stored) and result.status == "created":
                committed.append(
                    CommittedItem(
                        result.id,
                        staged_item.vector,
                        staged_item.camera_id,
                        staged_item.captured_at,
                        result.visitor_id,
                    )
                )
    if committed and ctx.commit_listeners:
        await run_in_threadpool(_notify, ctx, committed)
    items = []
    for i in range(n):
        result = outcome[i]
        if isinstance(result, Stored):
            items.append(ItemResult(result.status, result.id, result.visitor_id))
        else:
            items.append(_error_result(result))
        ctx.metrics.ingested.labels(items[-1].status).inc()
    ctx.metrics.index_size.set(len(ctx.index))
    return IngestResult(items, committed)
