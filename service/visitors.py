"""Re-grouping the items of a time window into visitors (`reid recluster`, POST /visitors/recluster)."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service import footfall
from service.db import write_session
from service.tables import GalleryItem

logger = logging.getLogger(__name__)


def recluster(
    sessions: sessionmaker[Session],
    start: datetime,
    end: datetime,
    threshold: float,
    horizon_s: float,
    lock=None,
) -> dict[str, int]:
    """Recompute visitor ids for items captured in [start, end). Each group is named after its smallest
    item id (ids are never reused, so names stay unique). Returns {"items", "visitors"}."""
    import contextlib

    with lock or contextlib.nullcontext(), write_session(sessions) as session:
        rows = session.execute(
            select(GalleryItem.id, GalleryItem.embedding, GalleryItem.captured_at, GalleryItem.camera_id)
            .where(GalleryItem.captured_at >= start, GalleryItem.captured_at < end)
            .order_by(GalleryItem.captured_at, GalleryItem.id)
        ).all()
        if not rows:
            return {"items": 0, "visitors": 0}
        ids = np.array([r.id for r in rows], dtype=np.int64)
        vectors = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
        times = np.array([r.captured_at.timestamp() for r in rows], dtype=np.float64)
        cameras = np.array([r.camera_id for r in rows], dtype=object)
        labels = np.asarray(footfall.cluster_visitors(vectors, times, cameras, threshold, horizon_s))
        names: dict[int, int] = {}
        for label, item_id in zip(labels.tolist(), ids.tolist(), strict=True):
            names[label] = min(names.get(label, item_id), item_id)
        by_visitor: dict[int, list[int]] = {}
        for label, item_id in zip(labels.tolist(), ids.tolist(), strict=True):
            by_visitor.setdefault(names[label], []).append(item_id)
        for visitor_id, members in by_visitor.items():
            for i in range(0, len(members), 900):
                session.execute(
                    update(GalleryItem)
                    .where(GalleryItem.id.in_(members[i : i + 900]))
                    .values(visitor_id=visitor_id)
                )
    logger.info("reclustered %d items into %d visitors", len(rows), len(by_visitor))
    return {"items": len(rows), "visitors": len(by_visitor)}
