"""Gallery: ingest (POST), list, read, image bytes, delete."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import ingest, validation
from service.context import ServiceContext, get_ctx
from service.db import get_session
from service.errors import ApiError, error_response, invalid, not_found
from service.queries import filter_items
from service.retention import delete_items
from service.schemas import Deleted, ErrorBody, IngestResponse, Item, ItemPage, item_dict
from service.security import Principal, require_admin, require_ingest, require_search
from service.tables import MAX_ID, GalleryItem
from service.validation import WHOLE_NUMBER

logger = logging.getLogger(__name__)
router = APIRouter(tags=["gallery"])

ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def _item_error(exc: Exception) -> tuple[int, dict]:
    if isinstance(exc, ApiError):
        return exc.status, exc.detail()
    logger.error("storing an image failed", exc_info=exc)
    return 500, {"code": "internal", "message": "the image could not be stored (server error)", "field": None}


@router.post(
    "/gallery",
    response_model=IngestResponse,
    response_model_exclude_none=True,
    responses={**ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    summary="Add person images (one result per image; the same bytes again return the existing id)",
)
async def add_images(
    files: list[UploadFile] = File(..., description="1..max_files_per_request images"),
    camera_id: list[str] = Form(..., description="one for all files, or one per file"),
    captured_at: list[str] = Form(..., description="ISO 8601; one for all files, or one per file"),
    external_ref: list[str] | None = Form(None, description="optional, one per file"),
    principal: Principal = Depends(require_ingest),
    ctx: ServiceContext = Depends(get_ctx),
):
    settings = ctx.settings
    n = len(files)
    if n == 0:
        raise invalid("no files were sent", "files", code="missing")
    if n > settings.max_files_per_request:
        raise invalid(
            f"{n} files in one request; the limit is {settings.max_files_per_request}",
            "files",
            code="too_many_files",
        )
    cameras = [validation.camera_id(c) for c in validation.per_file(camera_id, n, "camera_id", required=True)]
    times = [
        validation.timestamp(t, "captured_at", not_future=True)
        for t in validation.per_file(captured_at, n, "captured_at", required=True)
    ]
    if settings.retention_days > 0:
        oldest = datetime.now(UTC) - timedelta(days=settings.retention_days)
        if any(t < oldest for t in times):
            raise invalid(
                f"captured_at is older than the retention period of {settings.retention_days:g} days "
                "(it would be purged at once)",
                "captured_at",
                code="expired",
            )
    if external_ref and not any(external_ref):  # empty form fields = not given
        external_ref = None
    if external_ref and len(external_ref) not in (n,) and not (n == 1 and len(external_ref) == 1):
        raise invalid(
            f"{len(external_ref)} external_ref values for {n} files: give one per file", "external_ref"
        )
    refs = [validation.external_ref(r) for r in (external_ref or [None] * n)]

    results: list[dict] = [{"index": i, "filename": f.filename or f"file{i}"} for i, f in enumerate(files)]
    statuses: list[int] = []

    async def prepare(i: int):
        try:
            return await run_in_threadpool(
                validation.prepare_upload, files[i], settings.max_upload_bytes, settings.max_pixels
            )
        except ApiError as exc:
            return exc

    prepared = await asyncio.gather(*(prepare(i) for i in range(n)))
    good = [i for i, p in enumerate(prepared) if not isinstance(p, Exception)]
    outcome: dict[int, object] = {i: prepared[i] for i in range(n) if i not in good}
    # The same bytes again (a camera retrying, a re-run import) are answered without embedding them.
    known = await run_in_threadpool(ingest.known_items, ctx, [prepared[i].content_hash for i in good])
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

    async def stage(i: int, vector):
        try:
            return await run_in_threadpool(
                ingest.stage, ctx, prepared[i], vector, cameras[i], times[i], refs[i]
            )
        except Exception as exc:  # noqa: BLE001 - reported per item
            return exc

    staged = await asyncio.gather(*(stage(i, vector) for i, vector in embedded))
    ready = []
    for (i, _), result in zip(embedded, staged, strict=True):
        if isinstance(result, BaseException):
            outcome[i] = result
        else:
            ready.append((i, result))
    if ready:
        try:
            stored = await run_in_threadpool(ingest.commit, ctx, [s for _, s in ready])
        except Exception as exc:  # noqa: BLE001 - the whole transaction failed
            stored = [exc] * len(ready)
        outcome.update({i: result for (i, _), result in zip(ready, stored, strict=True)})
    for i in range(n):
        result = outcome[i]
        if isinstance(result, ingest.Stored):
            results[i].update(status=result.status, id=result.id, visitor_id=result.visitor_id)
            ctx.metrics.ingested.labels(result.status).inc()
            continue
        status, detail = _item_error(result)
        statuses.append(status)
        results[i].update(status="error", error=detail)
        ctx.metrics.ingested.labels("error").inc()
    created = sum(r["status"] == "created" for r in results)
    existing = sum(r["status"] == "exists" for r in results)
    body = {"items": results, "created": created, "existing": existing, "failed": len(statuses)}
    if statuses and len(statuses) == n:
        first = results[0]["error"]
        if len(set(statuses)) == 1:
            status = statuses[0]
            code = (
                first["code"] if all(r["error"]["code"] == first["code"] for r in results) else "all_failed"
            )
        else:
            status, code = 422, "all_failed"
        message = (
            first["message"]
            if n == 1
            else f"none of the {n} files could be stored; first: {first['message']}"
        )
        return error_response(status, code, message, "files", extra=body)
    ctx.metrics.index_size.set(len(ctx.index))
    return body


@router.get(
    "/gallery", response_model=ItemPage, responses=ERRORS, summary="List items (newest capture first)"
)
def list_items(
    camera_id: list[str] | None = Query(None),
    start: str | None = Query(None, description="ISO 8601, inclusive"),
    end: str | None = Query(None, description="ISO 8601, exclusive"),
    visitor_id: Annotated[int | None, Query(ge=1, le=MAX_ID), WHOLE_NUMBER] = None,
    limit: Annotated[int, Query(ge=1, le=500), WHOLE_NUMBER] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000), WHOLE_NUMBER] = 0,
    _: Principal = Depends(require_search),
    session: Session = Depends(get_session),
):
    cameras = validation.camera_ids(camera_id)
    t0 = validation.timestamp(start, "start", required=False)
    t1 = validation.timestamp(end, "end", required=False)
    validation.window(t0, t1)
    total = session.execute(
        filter_items(select(func.count(GalleryItem.id)), cameras, t0, t1, visitor_id)
    ).scalar_one()
    rows = session.execute(
        filter_items(select(GalleryItem), cameras, t0, t1, visitor_id)
        .order_by(GalleryItem.captured_at.desc(), GalleryItem.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    return {"items": [item_dict(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def _get_item(session: Session, item_id: int) -> GalleryItem:
    item = session.get(GalleryItem, item_id)
    if item is None:
        raise not_found(f"no gallery item with id {item_id}", "item_id")
    return item


@router.get("/gallery/{item_id}", response_model=Item, responses={**ERRORS, 404: {"model": ErrorBody}})
def get_item(
    item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER],
    _: Principal = Depends(require_search),
    session: Session = Depends(get_session),
):
    return item_dict(_get_item(session, item_id))


@router.get(
    "/gallery/{item_id}/image",
    response_class=FileResponse,
    responses={**ERRORS, 404: {"model": ErrorBody}},
    summary="The stored image (size=thumb for the JPEG thumbnail)",
)
def get_image(
    request: Request,
    item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER],
    size: str = Query("original", pattern="^(original|thumb)$"),
    _: Principal = Depends(require_search),
    session: Session = Depends(get_session),
):
    item = _get_item(session, item_id)
    ctx = request.app.state.ctx
    relative, media = (
        (item.thumbnail_path, "image/jpeg") if size == "thumb" else (item.image_path, item.media_type)
    )
    path = ctx.store.path(relative)
    if not path.is_file():
        raise not_found(f"the image file of item {item_id} is missing", "item_id")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=300"})


@router.delete("/gallery/{item_id}", response_model=Deleted, responses={**ERRORS, 404: {"model": ErrorBody}})
def delete_item(
    item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER],
    principal: Principal = Depends(require_admin),
    ctx: ServiceContext = Depends(get_ctx),
):
    deleted = delete_items(
        ctx.sessions, ctx.store, ctx.index, [item_id], audit=(principal.name, "delete_item", {"id": item_id})
    )
    if not deleted:
        raise not_found(f"no gallery item with id {item_id}", "item_id")
    ctx.metrics.index_size.set(len(ctx.index))
    return {"deleted": deleted}
