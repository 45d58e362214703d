"""Re-grouping the items of a time window into visitors (`reid recluster`, POST /visitors/recluster)."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service import footfall, repository
from service.db import write_session

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
    with lock or contextlib.nullcontext(), write_session(sessions) as session:
        ids, vectors, times, cameras, tracks = repository.window_for_clustering(session, start, end)
        if not len(ids):
            return {"items": 0, "visitors": 0}
        labels = np.asarray(
            footfall.cluster_visitors(vectors, times, cameras, threshold, horizon_s, tracks=tracks)
        )
        names: dict[int, int] = {}
        for label, item_id in zip(labels.tolist(), ids.tolist(), strict=True):
            names[label] = min(names.get(label, item_id), item_id)
        by_visitor: dict[int, list[int]] = {}
        for label, item_id in zip(labels.tolist(), ids.tolist(), strict=True):
            by_visitor.setdefault(names[label], []).append(item_id)
        for visitor_id, members in by_visitor.items():
            repository.set_visitor(session, members, visitor_id)
    logger.info("reclustered %d items into %d visitors", len(ids), len(by_visitor))
    return {"items": len(ids), "visitors": len(by_visitor)}
