"""POST /search: parse the form, check the key, answer. The search itself is service/search.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import Field

from service import search as searching
from service import validation
from service.deps import Ctx, SearchKey
from service.schemas import ErrorBody, SearchResponse
from service.tables import MAX_ID
from service.validation import DECIMAL, WHOLE_NUMBER, no_empty_form_fields

router = APIRouter(tags=["search"])


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
    summary="Find a person: photos of one person and/or stored items (their mean embedding) as the query",
)
async def search(
    ctx: Ctx,
    principal: SearchKey,
    files: list[UploadFile] | None = File(None, description="1..8 photos of the same person"),
    gallery_id: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID), WHOLE_NUMBER]] | None,
        Form(description="stored items of the same person (repeatable, e.g. a confirmed set of hits); "
             "with or instead of photos"),
    ] = None,
    top_k: Annotated[int, Form(ge=1, le=1000), WHOLE_NUMBER] = 20,
    camera_id: list[str] | None = Form(None),
    start: str | None = Form(None),
    end: str | None = Form(None),
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0), DECIMAL] = None,
    _strict: None = Depends(no_empty_form_fields("gallery_id", "top_k", "min_score")),
):
    settings = ctx.settings
    files, gallery_ids = searching.query_sources(files, gallery_id, settings.max_query_files)
    cameras = validation.camera_ids(camera_id)
    t0 = validation.timestamp(start, "start", required=False)
    t1 = validation.timestamp(end, "end", required=False)
    validation.window(t0, t1)
    photos = await searching.prepare_photos(ctx, files) if files else []
    filters = searching.SearchFilters(top_k, cameras, t0, t1, min_score)
    hits = await searching.search(ctx, principal, filters, photos=photos, gallery_ids=gallery_ids)
    return {"hits": hits, "top_k": top_k, "query_images": len(files) + len(gallery_ids)}
