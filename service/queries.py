"""Selections of gallery items shared by the routes: cameras, a half-open time window [start, end), a
visitor, a person track."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select

from service.tables import GalleryItem


def filter_items(
    query: Select,
    cameras: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    visitor_id: int | None = None,
    track_ref: str | None = None,
) -> Select:
    """`query` restricted to items of these cameras, captured in [start, end), of this visitor and this
    person track (None = any)."""
    if cameras:
        query = query.where(GalleryItem.camera_id.in_(cameras))
    if start is not None:
        query = query.where(GalleryItem.captured_at >= start)
    if end is not None:
        query = query.where(GalleryItem.captured_at < end)
    if visitor_id is not None:
        query = query.where(GalleryItem.visitor_id == visitor_id)
    if track_ref is not None:
        query = query.where(GalleryItem.track_ref == track_ref)
    return query
