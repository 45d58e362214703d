"""Response bodies (documented in OpenAPI) and their construction from rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from service.tables import GalleryItem


def iso(value: datetime | None) -> str | None:
    """UTC with an explicit +00:00 offset."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Item(BaseModel):
    id: int
    camera_id: str
    captured_at: str
    external_ref: str | None
    track_ref: str | None
    visitor_id: int | None
    width: int
    height: int
    created_at: str
    image_url: str
    thumbnail_url: str


class ItemPage(BaseModel):
    items: list[Item]
    total: int
    limit: int
    offset: int


class IngestResult(BaseModel):
    index: int
    filename: str
    status: str  # created | exists | error
    id: int | None = None
    visitor_id: int | None = None
    error: ErrorDetail | None = None


class IngestResponse(BaseModel):
    items: list[IngestResult]
    created: int
    existing: int
    failed: int


class Hit(BaseModel):
    rank: int
    id: int
    score: float
    camera_id: str
    captured_at: str
    visitor_id: int | None
    external_ref: str | None
    track_ref: str | None
    image_url: str
    thumbnail_url: str


class SearchResponse(BaseModel):
    hits: list[Hit]
    top_k: int
    query_images: int


class Deleted(BaseModel):
    deleted: list[int]


class VisitorDeleted(BaseModel):
    visitor_id: int
    deleted: list[int]


class ReclusterRequest(BaseModel):
    start: str
    end: str


class ReclusterResponse(BaseModel):
    items: int
    visitors: int


class Camera(BaseModel):
    camera_id: str
    items: int
    first_seen: str
    last_seen: str


class CameraList(BaseModel):
    cameras: list[Camera]


class AuditEntry(BaseModel):
    id: int
    at: str
    key_name: str | None
    action: str
    detail: Any
    hits: int | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int


def item_dict(item: GalleryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "camera_id": item.camera_id,
        "captured_at": iso(item.captured_at),
        "external_ref": item.external_ref,
        "track_ref": item.track_ref,
        "visitor_id": item.visitor_id,
        "width": item.width,
        "height": item.height,
        "created_at": iso(item.created_at),
        "image_url": f"/gallery/{item.id}/image",
        "thumbnail_url": f"/gallery/{item.id}/image?size=thumb",
    }
