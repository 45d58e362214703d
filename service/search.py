"""Search: a query vector (the mean embedding of photos of one person, or a stored item's) -> ranked
gallery hits, restricted by cameras / time window / a minimum score, and an audit record per search."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from fastapi.concurrency import run_in_threadpool

from service import repository, validation
from service.context import ServiceContext
from service.errors import invalid, not_found
from service.gallery_index import item_filter
from service.schemas import iso
from service.security import Principal
from service.tables import GalleryItem

# Stored items one search may start from (a confirmed set of sightings).
MAX_QUERY_ITEMS = 64
# Extra candidates fetched beyond top_k, in case the index holds ids deleted since (e.g. by `reid purge`).
OVERFETCH = 16
HIT_COLUMNS = (  # not the embedding blobs
    GalleryItem.id,
    GalleryItem.camera_id,
    GalleryItem.captured_at,
    GalleryItem.visitor_id,
    GalleryItem.external_ref,
    GalleryItem.track_ref,
)


def query_sources(files, gallery_id, max_files: int, noun: str = "query photos") -> tuple[list, list[int]]:
    """The photos and stored items a query starts from (POST /search, POST /watches): at least one,
    at most `max_files` photos and MAX_QUERY_ITEMS items (each once, in order); 422 otherwise."""
    files = list(files or [])
    gallery_ids = list(dict.fromkeys(gallery_id or []))
    if not files and not gallery_ids:
        raise invalid(f"send 1..{max_files} {noun} in 'files' and/or 'gallery_id' values", "files", code="missing")
    if len(gallery_ids) > MAX_QUERY_ITEMS:
        raise invalid(
            f"{len(gallery_ids)} gallery ids; the limit is {MAX_QUERY_ITEMS}", "gallery_id", code="too_many_items"
        )
    if len(files) > max_files:
        raise invalid(f"{len(files)} {noun}; the limit is {max_files}", "files", code="too_many_files")
    return files, gallery_ids


@dataclass(frozen=True)
class SearchFilters:
    top_k: int
    cameras: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    min_score: float | None = None
    exclude_ids: frozenset[int] = frozenset()  # the query's own items, when searching from stored items

    @property
    def restricts_items(self) -> bool:
        return bool(self.cameras) or self.start is not None or self.end is not None


async def query_vector(
    ctx: ServiceContext, photos: Sequence[validation.PreparedImage] = (), gallery_ids: Sequence[int] = ()
) -> np.ndarray:
    """The unit-length mean embedding of photos of one person and/or stored items (each weighs the same);
    404 when an item does not exist."""
    vectors = []
    if photos:
        vectors += list(await ctx.batcher.submit([p.image for p in photos]))
    if gallery_ids:
        vectors += await run_in_threadpool(_item_vectors, ctx, gallery_ids)
    return _unit(np.mean(vectors, axis=0))


def _item_vectors(ctx: ServiceContext, item_ids: Sequence[int]) -> list[np.ndarray]:
    """The stored embeddings of these items, in order (404 naming the first id that does not exist)."""
    vectors = []
    with ctx.sessions() as session:
        for item_id in item_ids:
            vector = repository.stored_vector(session, item_id)
            if vector is None:
                raise not_found(f"no gallery item with id {item_id}", "gallery_id")
            vectors.append(vector)
    return vectors


def _unit(query: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(query))
    if norm == 0.0 or not np.isfinite(norm):
        raise invalid("the query photos cancel out (zero mean embedding); send other photos", "files")
    return (query / norm).astype(np.float32)


def find(ctx: ServiceContext, query: np.ndarray, filters: SearchFilters) -> list[dict]:
    """The best `filters.top_k` hits for a unit query vector, best first (blocking: call in a thread)."""
    if any(ctx.index.sync(ctx.sessions)):  # items other processes (replicas) committed or deleted
        ctx.metrics.index_size.set(len(ctx.index))
    k = filters.top_k + OVERFETCH + len(filters.exclude_ids)
    where = item_filter(filters.cameras, filters.start, filters.end)  # inside the engine, or resolved to ids
    scores, ids = ctx.index.search(query[None, :], k, where=where)
    pairs = [
        (int(i), float(s))
        for s, i in zip(scores[0], ids[0], strict=True)
        if i >= 0 and int(i) not in filters.exclude_ids
    ]
    if filters.min_score is not None:
        pairs = [(i, s) for i, s in pairs if s >= filters.min_score]
    with ctx.sessions() as session:  # a read: no write lock
        rows = {r.id: r for r in repository.rows_by_id(session, HIT_COLUMNS, [i for i, _ in pairs])}
    hits = []
    for item_id, score in pairs:
        row = rows.get(item_id)
        if row is None:  # deleted since the index was searched
            continue
        hits.append(
            {
                "rank": len(hits) + 1,
                "id": item_id,
                "score": round(score, 6),
                "camera_id": row.camera_id,
                "captured_at": iso(row.captured_at),
                "visitor_id": row.visitor_id,
                "external_ref": row.external_ref,
                "track_ref": row.track_ref,
                "image_url": f"/gallery/{item_id}/image",
                "thumbnail_url": f"/gallery/{item_id}/image?size=thumb",
            }
        )
        if len(hits) == filters.top_k:
            break
    return hits


async def search(
    ctx: ServiceContext,
    principal: Principal,
    filters: SearchFilters,
    *,
    photos: Sequence[validation.PreparedImage] = (),
    gallery_ids: Sequence[int] = (),
) -> list[dict]:
    """Search from photos of one person and/or stored items (a confirmed set): the query is the unit mean of
    their embeddings, each photo and item weighing the same; the query items are left out of the hits.
    Every search is audited."""
    query = await query_vector(ctx, photos, gallery_ids)
    filters = replace(filters, exclude_ids=frozenset(gallery_ids))
    hits = await run_in_threadpool(find, ctx, query, filters)
    detail = {
        "query_images": len(photos),
        "gallery_id": list(gallery_ids) if len(gallery_ids) > 1 else (gallery_ids[0] if gallery_ids else None),
        "top_k": filters.top_k,
        "camera_id": list(filters.cameras),
        "start": iso(filters.start),
        "end": iso(filters.end),
        "min_score": filters.min_score,
    }
    ctx.audit.submit(principal.name, "search", detail, hits=len(hits))  # written in the background
    return hits


async def prepare_photos(ctx: ServiceContext, uploads) -> list[validation.PreparedImage]:
    """Read, check and decode query photos in parallel; the first bad one is the answer (none is kept)."""
    settings = ctx.settings
    prepared = await asyncio.gather(
        *(
            run_in_threadpool(validation.prepare_upload, f, settings.max_upload_bytes, settings.max_pixels)
            for f in uploads
        ),
        return_exceptions=True,
    )
    for p in prepared:
        if isinstance(p, BaseException):
            raise p
    return list(prepared)
