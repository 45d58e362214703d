"""Visitors: erase one person everywhere; regroup a window's items into visitors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from service import audit, repository, validation
from service.db import write_session
from service.deps import AdminKey, Ctx
from service.errors import not_found
from service.retention import delete_items
from service.schemas import ErrorBody, ReclusterRequest, ReclusterResponse, VisitorDeleted
from service.tables import MAX_ID
from service.validation import WHOLE_NUMBER
from service.visitors import recluster

router = APIRouter(tags=["visitors"])
ERRORS = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.delete(
    "/visitors/{visitor_id}",
    response_model=VisitorDeleted,
    responses=ERRORS,
    summary="Erase everything of one visitor (rows, vectors, files)",
)
def erase_visitor(
    ctx: Ctx, principal: AdminKey, visitor_id: Annotated[int, Path(ge=1, le=MAX_ID), WHOLE_NUMBER]
):
    with ctx.ingest_lock:  # no new item joins this visitor while it is being erased
        with ctx.sessions() as session:
            ids = repository.ids_where(session, visitor_id=visitor_id).tolist()
        if not ids:
            raise not_found(f"no items of visitor {visitor_id}", "visitor_id")
        deleted = delete_items(
            ctx.sessions,
            ctx.store,
            ctx.index,
            ids,
            audit=(principal.name, "erase_visitor", {"visitor_id": visitor_id}),
        )
    ctx.metrics.index_size.set(len(ctx.index))
    return {"visitor_id": visitor_id, "deleted": deleted}


@router.post(
    "/visitors/recluster",
    response_model=ReclusterResponse,
    responses=ERRORS,
    summary="Recompute the visitor grouping of the items captured in [start, end)",
)
async def recluster_window(ctx: Ctx, principal: AdminKey, body: ReclusterRequest):
    t0 = validation.timestamp(body.start, "start")
    t1 = validation.timestamp(body.end, "end")
    validation.window(t0, t1, ctx.settings.metrics_max_window_days)
    settings = ctx.settings
    result = await run_in_threadpool(
        recluster,
        ctx.sessions,
        t0,
        t1,
        settings.visitor_threshold,
        settings.visitor_horizon_s,
        ctx.ingest_lock,
    )

    def record():
        with write_session(ctx.sessions) as session:
            audit.record(
                session,
                principal.name,
                "recluster",
                {"start": t0.isoformat(), "end": t1.isoformat()},
                hits=result["items"],
            )

    await run_in_threadpool(record)
    return result
