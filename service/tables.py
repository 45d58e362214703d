"""Database tables (SQLAlchemy ORM). The database is the source of truth, embeddings included (float32 bytes).

Not to be confused with `model/`, the network package.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MAX_ID = 2**63 - 1  # ids are signed 64-bit everywhere (SQLite, faiss)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (portable, sortable in SQLite); read back as timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; give a timezone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def decode_embedding(blob: bytes, dim: int | None = None) -> np.ndarray:
    """A stored embedding (float32 bytes) as a read-only vector; `dim` checks its length."""
    vector = np.frombuffer(blob, dtype=np.float32)
    if dim is not None and vector.shape[0] != dim:
        raise ValueError(f"a stored embedding has {vector.shape[0]} values, expected {dim}")
    return vector


class Base(DeclarativeBase):
    pass


class GalleryItem(Base):
    """One stored person crop: where and when it was seen, its files, its embedding, its visitor."""

    __tablename__ = "gallery_items"
    __table_args__ = (
        Index("ix_gallery_items_camera_captured", "camera_id", "captured_at"),
        # covers GET /metrics's counts (window of captured_at, by camera and visitor): no row reads
        Index("ix_gallery_items_footfall", "captured_at", "camera_id", "visitor_id"),
        {"sqlite_autoincrement": True},  # ids are never reused (they are index ids and visitor ids)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(256))
    image_path: Mapped[str] = mapped_column(String(512))
    thumbnail_path: Mapped[str] = mapped_column(String(512))
    media_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    visitor_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # the person track this crop was cut from (`<camera>/<source>/<id>`, sent by `reid ingest-video`):
    # all crops of one track are one visitor
    track_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    def vector(self) -> np.ndarray:
        return decode_embedding(self.embedding, self.embedding_dim)


class ApiKey(Base):
    """An API key: only its HMAC-SHA256 digest is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditLog(Base):
    """Who searched / deleted what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    key_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON
    hits: Mapped[int | None] = mapped_column(Integer)


class ServiceState(Base):
    """Small key/value facts about the stored data (e.g. the embedding model the vectors came from)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Watch(Base):
    """A live watch: every newly ingested item is compared with its query vector (service/watches.py)."""

    __tablename__ = "watches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(200))
    query_vector: Mapped[bytes] = mapped_column(LargeBinary)  # unit-norm float32
    threshold: Mapped[float] = mapped_column(Float)
    cameras: Mapped[str | None] = mapped_column(Text)  # JSON list; NULL = every camera
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WatchMatch(Base):
    """A newly ingested item that matched a watch (the item may be purged later; the match stays)."""

    __tablename__ = "watch_matches"
    __table_args__ = (Index("ix_watch_matches_watch", "watch_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    camera_id: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime())
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


__all__ = [
    "MAX_ID",
    "ApiKey",
    "AuditLog",
    "Base",
    "GalleryItem",
    "ServiceState",
    "UTCDateTime",
    "Watch",
    "WatchMatch",
    "decode_embedding",
    "utcnow",
]
