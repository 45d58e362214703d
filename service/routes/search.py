"""Search: query photos of one person (mean embedding) or a stored item -> ranked gallery hits."""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from service import audit, repository, validation
from service.context import ServiceContext, get_ctx
from service.db import write_session
from service.errors import invalid, not_found
from service.schemas import ErrorBody, SearchResponse, iso
from service.security import Principal, require_search
from service.tables import MAX_ID, GalleryItem
from service.validation import DECIMAL, WHOLE_NUMBER, no_empty_form_fields

router = APIRouter(tags=["search"])
# Extra candidates fetched beyond top_k, in case the index holds ids deleted since (e.g. by `reid purge`).
OVERFETCH = 16


def _allowed_ids(ctx: ServiceContext, cameras, start, end) -> np.ndarray | None:
    if not cameras and start is None and end is None:
        return None
    with ctx.sessions() as session:
        return repository.ids_where(session, cameras, start, end)


def _stored_vector(ctx: ServiceContext, item_id: int) -> np.ndarray:
    with ctx.sessions() as session:
        vector = repository.stored_vector(session, item_id)
    if vector is None:
        raise not_found(f"no gallery item with id {item_id}", "gallery_id")
    return vector


def _hits(ctx, query, top_k, allowed, exclude, min_score, principal, filters) -> list[dict]:
    k = top_k + OVERFETCH + (1 if exclude is not None else 0)
    if allowed is not None:
        k = min(k, max(len(allowed), 1))
    scores, ids = ctx.index.search(query[None, :], k, allowed_ids=allowed)
    pairs = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and i != exclude]
    if min_score is not None:
        pairs = [(i, s) for i, s in pairs if s >= min_score]
    columns = (
        GalleryItem.id,
        GalleryItem.camera_id,
        GalleryItem.captured_at,
        GalleryItem.visitor_id,
        GalleryItem.external_ref,
    )  # not the embedding blobs
    with ctx.sessions() as session:  # a read: no write lock
        rows = {r.id: r for r in repository.rows_by_id(session, columns, [i for i, _ in pairs])}
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
                "image_url": f"/gallery/{item_id}/image",
                "thumbnail_url": f"/gallery/{item_id}/image?size=thumb",
            }
        )
        if len(hits) == top_k:
            break
    with write_session(ctx.sessions) as session:
        audit.record(session, principal.name, "search", filters, hits=len(hits))
    return hits


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    summary="Find a person: photos of one person (their mean embedding) or a stored item as the query",
)
async def search(
    files: list[UploadFile] | None = File(None, description="1..8 photos of the same person"),
    gallery_id: Annotated[
        int | None,
        Form(ge=1, le=MAX_ID, description="search from a stored item instead of photos"),
        WHOLE_NUMBER,
    ] = None,
    top_k: Annotated[int, Form(ge=1, le=1000), WHOLE_NUMBER] = 20,
    camera_id: list[str] | None = Form(None),
    start: str | None = Form(None),
    end: str | None = Form(None),
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0), DECIMAL] = None,
    principal: Principal = Depends(require_search),
    ctx: ServiceContext = Depends(get_ctx),
    _strict: None = Depends(no_empty_form_fields("gallery_id", "top_k", "min_score")),
):
    settings = ctx.settings
    files = files or []
    if files and gallery_id is not None:
        raise invalid("send either query files or gallery_id, not both", "gallery_id")
    if not files and gallery_id is None:
        raise invalid("send 1..8 query photos in 'files' or a 'gallery_id'", "files", code="missing")
    if len(files) > settings.max_query_files:
        raise invalid(
            f"{len(files)} query photos; the limit is {settings.max_query_files}",
            "files",
            code="too_many_files",
        )
    cameras = validation.camera_ids(camera_id)
    t0 = validation.timestamp(start, "start", required=False)
    t1 = validation.timestamp(end, "end", required=False)
    validation.window(t0, t1)
    if files:
        prepared = await asyncio.gather(
            *(
                run_in_threadpool(
                    validation.prepare_upload, f, settings.max_upload_bytes, settings.max_pixels
                )
                for f in files
            ),
            return_exceptions=True,
        )
        for p in prepared:  # the first bad photo is the answer (all were read, none is kept)
            if isinstance(p, BaseException):
                raise p
        vectors = await ctx.batcher.submit([p.image for p in prepared])
        query = vectors.mean(axis=0)
    else:
        query = await run_in_threadpool(_stored_vector, ctx, gallery_id)
    norm = float(np.linalg.norm(query))
    if norm == 0.0 or not np.isfinite(norm):
        raise invalid("the query photos cancel out (zero mean embedding); send other photos", "files")
    query = (query / norm).astype(np.float32)
    allowed = await run_in_threadpool(_allowed_ids, ctx, cameras, t0, t1)
    filters = {
        "query_images": len(files),
        "gallery_id": gallery_id,
        "top_k": top_k,
        "camera_id": cameras,
        "start": iso(t0),
        "end": iso(t1),
        "min_score": min_score,
    }
    if allowed is not None and len(allowed) == 0:
        hits = await run_in_threadpool(_record_empty, ctx, principal, filters)
    else:
        hits = await run_in_threadpool(
            _hits, ctx, query, top_k, allowed, gallery_id, min_score, principal, filters
        )
    return {"hits": hits, "top_k": top_k, "query_images": len(files) if files else 1}


def _record_empty(ctx, principal, filters) -> list:
    with write_session(ctx.sessions) as session:
        audit.record(session, principal.name, "search", filters, hits=0)
    return []
