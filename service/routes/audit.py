"""GET /audit: the audit log, newest first (admin)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from service.deps import AdminKey, Ctx, DbSession
from service.schemas import AuditPage, ErrorBody, iso
from service.tables import AuditLog
from service.validation import WHOLE_NUMBER

router = APIRouter(tags=["audit"])


@router.get(
    "/audit", response_model=AuditPage, responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)
def audit_log(
    ctx: Ctx,
    session: DbSession,
    _: AdminKey,
    limit: Annotated[int, Query(ge=1, le=500), WHOLE_NUMBER] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000), WHOLE_NUMBER] = 0,
    action: str | None = Query(None, max_length=32),
):
    ctx.audit.flush(timeout=10)  # the searches answered so far are in the log
    query = select(AuditLog)
    count = select(func.count(AuditLog.id))
    if action:
        query, count = query.where(AuditLog.action == action), count.where(AuditLog.action == action)
    total = session.execute(count).scalar_one()
    rows = session.execute(query.order_by(AuditLog.id.desc()).limit(limit).offset(offset)).scalars()
    return {
        "items": [
            {
                "id": r.id,
                "at": iso(r.at),
                "key_name": r.key_name,
                "action": r.action,
                "detail": json.loads(r.detail) if r.detail else None,
                "hits": r.hits,
            }
            for r in rows
        ],
        "total": total,
    }
