"""GET /cameras: the cameras seen in the gallery, with counts and first/last capture times."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from service.deps import DbSession, SearchKey
from service.schemas import CameraList, ErrorBody, iso
from service.tables import GalleryItem

router = APIRouter(tags=["gallery"])


@router.get(
    "/cameras", response_model=CameraList, responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)
def cameras(session: DbSession, _: SearchKey):
    rows = session.execute(
        select(
            GalleryItem.camera_id,
            func.count(GalleryItem.id),
            func.min(GalleryItem.captured_at),
            func.max(GalleryItem.captured_at),
        )
        .group_by(GalleryItem.camera_id)
        .order_by(GalleryItem.camera_id)
    ).all()
    type_ = GalleryItem.__table__.c.captured_at.type

    def as_utc(value):  # aggregates bypass the column type on some backends
        return (
            type_.process_result_value(value, None) if value is not None and value.tzinfo is None else value
        )

    return {
        "cameras": [
            {"camera_id": cam, "items": n, "first_seen": iso(as_utc(lo)), "last_seen": iso(as_utc(hi))}
            for cam, n, lo, hi in rows
        ]
    }
