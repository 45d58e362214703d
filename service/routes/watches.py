"""Live watches: create (query photos and/or gallery ids, threshold, cameras, expiry), list, read, delete,
their matches, and a Server-Sent Events stream of new matches. The matching is service/watches.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy import func, select

from service import audit, validation
from service import search as searching
from service.db import write_session
from service.deps import Ctx, SearchKey
from service.errors import invalid, not_found
from service.schemas import ErrorBody
from service.tables import MAX_ID, Watch, WatchMatch
from service.validation import DECIMAL, WHOLE_NUMBER, no_empty_form_fields
from service.watches import match_dict, watch_dict

router = APIRouter(tags=["watches"])
ERRORS = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
}
MAX_WATCH_HOURS = 7 * 24
DEFAULT_WATCH_HOURS = 2
KEEPALIVE_S = 15.0

# watches.id and watch_matches.id are 32-bit INTEGERs on PostgreSQL: a larger bound would be an
# out-of-range error there (500), not an empty answer.
MATCH_ID_MAX = 2**31 - 1


def _get_watch(session, watch_id: int) -> Watch:
    watch = session.get(Watch, watch_id) if watch_id <= MATCH_ID_MAX else None  # 32-bit ids on PostgreSQL
    if watch is None:
        raise not_found(f"no watch with id {watch_id}", "watch_id")
    return watch


@router.post("/watches", status_code=201, responses=ERRORS, summary="Watch new items for a person")
async def create_watch(
    ctx: Ctx,
    principal: SearchKey,
    files: list[UploadFile] | None = File(None, description="1..8 photos of the person"),
    gallery_id: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID), WHOLE_NUMBER]] | None,
        Form(description="stored items of the person (repeatable)"),
    ] = None,
    threshold: Annotated[
        float, Form(ge=-1.0, le=1.0, description="cosine similarity for a match"), DECIMAL
    ] = 0.8,
    camera_id: list[str] | None = Form(None, description="only these cameras (default: all)"),
    expires_at: str | None = Form(
        None, description=f"ISO 8601, within {MAX_WATCH_HOURS} h (default: in 2 h)"
    ),
    label: str | None = Form(None, max_length=200),
    _strict: None = Depends(no_empty_form_fields("gallery_id", "threshold")),
):
    files, gallery_ids = searching.query_sources(files, gallery_id, ctx.settings.max_query_files, "photos")
    cameras = validation.camera_ids(camera_id)
    now = datetime.now(UTC)
    until = validation.timestamp(expires_at, "expires_at", required=False) or now + timedelta(
        hours=DEFAULT_WATCH_HOURS
    )
    if until <= now:
        raise invalid("expires_at is in the past", "expires_at")
    if until > now + timedelta(hours=MAX_WATCH_HOURS):
        raise invalid(f"expires_at is more than {MAX_WATCH_HOURS} h away", "expires_at")
    photos = await searching.prepare_photos(ctx, files) if files else []
    query = await searching.query_vector(ctx, photos, gallery_ids)

    def store() -> dict:
        with write_session(ctx.sessions) as session:
            watch = Watch(
                created_at=now,
                created_by=principal.name,
                label=label or None,
                query_vector=np.asarray(query, dtype=np.float32).tobytes(),
                threshold=threshold,
                cameras=json.dumps(list(cameras)) if cameras else None,
                expires_at=until,
            )
            session.add(watch)
            session.flush()
            detail = {
                "watch_id": watch.id,
                "query_images": len(photos),
                "gallery_id": gallery_ids,
                "threshold": threshold,
                "camera_id": list(cameras),
                "expires_at": until.isoformat(),
            }
            audit.record(session, principal.name, "watch_create", detail)
            body = watch_dict(watch, matches=0, now=now)
        ctx.watches.load()
        return body

    return await run_in_threadpool(store)


@router.get("/watches", responses=ERRORS, summary="Watches, newest first, with their state and match counts")
def list_watches(ctx: Ctx, _: SearchKey):
    with ctx.sessions() as session:
        counts = dict(
            session.execute(select(WatchMatch.watch_id, func.count()).group_by(WatchMatch.watch_id)).all()
        )
        rows = session.execute(select(Watch).order_by(Watch.id.desc())).scalars().all()
        return {"watches": [watch_dict(w, counts.get(w.id, 0)) for w in rows]}


@router.get("/watches/{watch_id}", responses=ERRORS)
def get_watch(ctx: Ctx, _: SearchKey, watch_id: int = Path(ge=1, le=MAX_ID)):
    with ctx.sessions() as session:
        watch = _get_watch(session, watch_id)
        n = session.execute(select(func.count()).where(WatchMatch.watch_id == watch_id)).scalar_one()
        return watch_dict(watch, n)


@router.delete("/watches/{watch_id}", responses=ERRORS, summary="Stop a watch (its matches are kept)")
def delete_watch(ctx: Ctx, principal: SearchKey, watch_id: int = Path(ge=1, le=MAX_ID)):
    with write_session(ctx.sessions) as session:
        watch = _get_watch(session, watch_id)
        if watch.deleted_at is None:
            watch.deleted_at = datetime.now(UTC)
            audit.record(session, principal.name, "watch_delete", {"watch_id": watch_id})
        body = watch_dict(watch)
    ctx.watches.load()
    return body


def _matches_after(ctx, watch_id: int, after: int, limit: int) -> list[dict]:
    with ctx.sessions() as session:
        _get_watch(session, watch_id)
        if after >= MATCH_ID_MAX:
            return []
        rows = session.execute(
            select(WatchMatch)
            .where(WatchMatch.watch_id == watch_id, WatchMatch.id > after)
            .order_by(WatchMatch.id)
            .limit(limit)
        ).scalars()
        return [match_dict(r) for r in rows]


@router.get("/watches/{watch_id}/matches", responses=ERRORS, summary="A watch's matches, oldest first")
def list_matches(
    ctx: Ctx,
    principal: SearchKey,
    watch_id: int = Path(ge=1, le=MAX_ID),
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="only matches with a larger id"), WHOLE_NUMBER
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000), WHOLE_NUMBER] = 100,
):
    matches = _matches_after(ctx, watch_id, after, limit)
    with write_session(ctx.sessions) as session:
        audit.record(
            session, principal.name, "watch_read", {"watch_id": watch_id, "after": after}, hits=len(matches)
        )
    return {"matches": matches}


def _sse(event: dict) -> str:
    return f"id: {event['id']}\nevent: match\ndata: {json.dumps(event)}\n\n"


@router.get(
    "/watches/{watch_id}/events",
    responses=ERRORS,
    summary="Server-Sent Events: one `match` event per new match (after the Last-Event-ID / `after` given)",
)
async def watch_events(
    request: Request,
    ctx: Ctx,
    principal: SearchKey,
    watch_id: int = Path(ge=1, le=MAX_ID),
    after: Annotated[int | None, Query(ge=0, le=MAX_ID), WHOLE_NUMBER] = None,
    max_events: Annotated[
        int | None, Query(ge=1, le=10000, description="close after this many"), WHOLE_NUMBER
    ] = None,
    timeout_s: Annotated[
        float | None, Query(gt=0, le=3600, description="close after this long"), DECIMAL
    ] = None,
):
    last_id = request.headers.get("last-event-id")
    start_after = after if after is not None else (int(last_id) if last_id and last_id.isdigit() else None)
    queue = ctx.watches.subscribe(watch_id)  # before the replay: nothing falls between the two
    try:
        replay = (
            await run_in_threadpool(_matches_after, ctx, watch_id, start_after or 0, 1000)
            if start_after is not None
            else []
        )
        if start_after is None:
            await run_in_threadpool(_matches_after, ctx, watch_id, MAX_ID, 1)  # 404 for an unknown watch
    except BaseException:
        ctx.watches.unsubscribe(watch_id, queue)
        raise
    await run_in_threadpool(
        lambda: _record(ctx, principal.name, "watch_subscribe", {"watch_id": watch_id, "after": start_after})
    )

    async def stream():
        sent = 0
        seen = start_after or 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s if timeout_s else None
        try:
            yield ": watching\n\n"
            for event in replay:
                yield _sse(event)
                seen, sent = event["id"], sent + 1
                if max_events and sent >= max_events:
                    return
            while True:
                wait = KEEPALIVE_S if deadline is None else min(KEEPALIVE_S, deadline - loop.time())
                if wait <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if event["id"] <= seen:  # already sent in the replay
                    continue
                yield _sse(event)
                seen, sent = event["id"], sent + 1
                if max_events and sent >= max_events:
                    return
        finally:
            ctx.watches.unsubscribe(watch_id, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _record(ctx, key_name, action, detail) -> None:
    with write_session(ctx.sessions) as session:
        audit.record(session, key_name, action, detail)
