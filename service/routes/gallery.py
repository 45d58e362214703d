"""Gallery: ingest (POST), list, read, image bytes, delete. Parsing, keys and answers only: the work is
service/ingest.py (POST), service/repository.py (reads) and service/retention.py (delete)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from service import ingest, repository, validation
from service.deps import AdminKey, Ctx, DbSession, IngestKey, SearchKey
from service.errors import error_response, invalid, not_found
from service.retention import delete_items
from service.schemas import Deleted, ErrorBody, IngestResponse, Item, ItemPage, item_dict
from service.tables import MAX_ID, GalleryItem
from service.validation import WHOLE_NUMBER

router = APIRouter(tags=["gallery"])

ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.post(
    "/gallery",
    response_model=IngestResponse,
    response_model_exclude_none=True,
    responses={**ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    summary="Add person images (one result per image; the same bytes again return the existing id)",
)
async def add_images(
    ctx: Ctx,
    _: IngestKey,
    files: list[UploadFile] = File(..., description="1..max_files_per_request images"),
    camera_id: list[str] = Form(..., description="one for all files, or one per file"),
    captured_at: list[str] = Form(..., description="ISO 8601; one for all files, or one per file"),
    external_ref: list[str] | None = Form(None, description="optional, one per file"),
    track_ref: list[str] | None = Form(
        None,
        description="optional, one per file: the person track the crop was cut from (`reid ingest-video`); "
        "all crops of a track are one visitor",
    ),
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
    if track_ref and not any(track_ref):
        track_ref = None
    if track_ref and len(track_ref) != n:
        raise invalid(f"{len(track_ref)} track_ref values for {n} files: give one per file", "track_ref")
    tracks = [validation.track_ref(t) for t in (track_ref or [None] * n)]
    meta = [ingest.ItemMeta(cameras[i], times[i], refs[i], tracks[i]) for i in range(n)]

    result = await ingest.ingest(ctx, files, meta)

    results = []
    for i, (upload, item) in enumerate(zip(files, result.items, strict=True)):
        entry = {"index": i, "filename": upload.filename or f"file{i}", "status": item.status}
        if item.status == "error":
            entry["error"] = item.error
        else:
            entry.update(id=item.id, visitor_id=item.visitor_id)
        results.append(entry)
    failed = [item for item in result.items if item.status == "error"]
    body = {
        "items": results,
        "created": sum(item.status == "created" for item in result.items),
        "existing": sum(item.status == "exists" for item in result.items),
        "failed": len(failed),
    }
    if failed and len(failed) == n:
        first = failed[0].error
        statuses = {item.http_status for item in failed}
        if len(statuses) == 1:
            (status,) = statuses
            code = (
                first["code"] if all(item.error["code"] == first["code"] for item in failed) else "all_failed"
            )
        else:
            status, code = 422, "all_failed"
        message = (
            first["message"]
            if n == 1
            else f"none of the {n} files could be stored; first: {first['message']}"
        )
        return error_response(status, code, message, "files", extra=body)
    return body


@router.get(
    "/gallery", response_model=ItemPage, responses=ERRORS, summary="List items (newest capture first)"
)
def list_items(
    session: DbSession,
    _: SearchKey,
    camera_id: list[str] | None = Query(None),
    start: str | None = Query(None, description="ISO 8601, inclusive"),
    end: str | None = Query(None, description="ISO 8601, exclusive"),
    visitor_id: Annotated[int | None, Query(ge=1, le=MAX_ID), WHOLE_NUMBER] = None,
    limit: Annotated[int, Query(ge=1, le=500), WHOLE_NUMBER] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000), WHOLE_NUMBER] = 0,
    track_ref: str | None = Query(None, description="only the crops of this person track"),
):
    cameras = validation.camera_ids(camera_id)
    t0 = validation.timestamp(start, "start", required=False)
    t1 = validation.timestamp(end, "end", required=False)
    validation.window(t0, t1)
    track = validation.track_ref(track_ref)
    total, rows = repository.page(
        session, cameras, t0, t1, visitor_id, limit=limit, offset=offset, track_ref=track
    )
    return {"items": [item_dict(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def _get_item(session: Session, item_id: int) -> GalleryItem:
    item = session.get(GalleryItem, item_id)
    if item is None:
        raise not_found(f"no gallery item with id {item_id}", "item_id")
    return item


@router.get("/gallery/{item_id}", response_model=Item, responses={**ERRORS, 404: {"model": ErrorBody}})
def get_item(session: DbSession, _: SearchKey, item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER]):
    return item_dict(_get_item(session, item_id))


@router.get(
    "/gallery/{item_id}/image",
    response_class=FileResponse,
    responses={**ERRORS, 404: {"model": ErrorBody}},
    summary="The stored image (size=thumb for the JPEG thumbnail)",
)
def get_image(
    ctx: Ctx,
    session: DbSession,
    _: SearchKey,
    item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER],
    size: str = Query("original", pattern="^(original|thumb)$"),
):
    item = _get_item(session, item_id)
    relative, media = (
        (item.thumbnail_path, "image/jpeg") if size == "thumb" else (item.image_path, item.media_type)
    )
    path = ctx.store.path(relative)
    if not path.is_file():
        raise not_found(f"the image file of item {item_id} is missing", "item_id")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=300"})


@router.delete("/gallery/{item_id}", response_model=Deleted, responses={**ERRORS, 404: {"model": ErrorBody}})
def delete_item(
    ctx: Ctx,
    principal: AdminKey,
    item_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER],
):
    deleted = delete_items(
        ctx.sessions, ctx.store, ctx.index, [item_id], audit=(principal.name, "delete_item", {"id": item_id})
    )
    if not deleted:
        raise not_found(f"no gallery item with id {item_id}", "item_id")
    ctx.metrics.index_size.set(len(ctx.index))
    return {"deleted": deleted}
