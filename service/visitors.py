"""Visitor ids: online assignment of a request's images at ingest (`VisitorMatcher`), and re-grouping
the items of a time window into visitors offline (`recluster`: `reid recluster`, POST /visitors/recluster)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service import footfall, repository
from service.db import write_session
from service.tables import GalleryItem, decode_embedding

if TYPE_CHECKING:
    from service.ingest import Staged

logger = logging.getLogger(__name__)

# Candidates for visitor matching: all recent items when few, else the nearest among them via the index.
DIRECT_CANDIDATES = 256
INDEX_CANDIDATES = 32


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


class VisitorMatcher:
    """Visitor assignment for one request's images, with one candidate lookup for all of them.

    Candidates of an image are the items captured within the horizon of it. When the request's time
    span holds few items, all of them are compared; when it holds many, only each image's
    INDEX_CANDIDATES nearest (one batched index search restricted to those ids). Rows this request
    adds are candidates of the images after them (they are not in the index yet).

    Person tracks (``track_ref``): an image of a track that already has a visitor joins it (must-link);
    otherwise visitors seen on another track of the same camera whose time span overlaps this track's
    are not candidates (cannot-link). A track's span is that of its stored crops and this request's.
    A new track with several crops in the request (the ingest sends a track's crops together when it
    ends) is decided once, for all of them, against the union of their candidates: a visitor's score is
    the mean over the crops of each crop's score (footfall.assign_visitor), so one odd crop (half hidden,
    cut by a passer-by) no longer decides the whole track.
    """

    def __init__(self, ctx, session: Session, staged: Sequence[Staged]) -> None:
        self.threshold = ctx.settings.visitor_threshold
        self.horizon = ctx.settings.visitor_horizon_s
        self.session = session
        self.per_image: list[np.ndarray] | None = None
        self.rows: dict[int, tuple[np.ndarray, int, float]] = {}  # id -> (vector, visitor id, time)
        self.added: list[tuple[np.ndarray, int, float]] = []
        self.track_visitor: dict[str, int] = {}
        self.track_span: dict[str, tuple[float, float]] = {}
        refs = {s.track_ref for s in staged if s.track_ref}
        if refs:
            for ref, (visitor, first, last) in repository.track_summaries(session, refs).items():
                if visitor is not None:
                    self.track_visitor[ref] = int(visitor)
                self.track_span[ref] = (first.timestamp(), last.timestamp())
            for s in staged:
                if s.track_ref:
                    t = s.captured_at.timestamp()
                    lo, hi = self.track_span.get(s.track_ref, (t, t))
                    self.track_span[s.track_ref] = (min(lo, t), max(hi, t))
        # a new track's crops in this request, decided together: (their vectors (k, d), positions)
        self.track_query: dict[str, tuple[np.ndarray, list[int]]] = {}
        positions: dict[str, list[int]] = {}
        for pos, s in enumerate(staged):
            if s.track_ref and s.track_ref not in self.track_visitor:
                positions.setdefault(s.track_ref, []).append(pos)
        for ref, where in positions.items():
            if len(where) > 1:
                self.track_query[ref] = (np.stack([staged[p].vector for p in where]), where)
        if not staged:
            return
        span = timedelta(seconds=self.horizon)
        lo = min(s.captured_at for s in staged) - span
        hi = max(s.captured_at for s in staged) + span
        window = repository.ids_with_visitor_between(session, lo, hi)
        if not len(window):
            return
        wanted = window
        if len(window) > DIRECT_CANDIDATES:
            ctx.index.sync(ctx.sessions)  # other replicas' items too (we hold the write lock: all are in)
            queries = np.stack([s.vector for s in staged])
            _, found = ctx.index.search(queries, INDEX_CANDIDATES, allowed_ids=window)
            self.per_image = [row[row >= 0] for row in found]
            wanted = np.unique(np.concatenate(self.per_image))
        columns = (GalleryItem.id, GalleryItem.embedding, GalleryItem.visitor_id, GalleryItem.captured_at)
        for row in repository.rows_by_id(session, columns, wanted):
            vector = decode_embedding(row.embedding)
            self.rows[row.id] = (vector, row.visitor_id, row.captured_at.timestamp())

    def _cannot_link(self, camera_id: str, track_ref: str) -> set[int]:
        lo, hi = self.track_span[track_ref]
        others = []
        low = datetime.fromtimestamp(lo, UTC) - timedelta(seconds=self.horizon)
        high = datetime.fromtimestamp(hi, UTC) + timedelta(seconds=self.horizon)
        for ref, visitor, first, last in repository.camera_tracks_between(self.session, camera_id, low, high):
            if ref != track_ref:
                span = self.track_span.get(ref, (first.timestamp(), last.timestamp()))
                others.append((visitor, *span))
        return footfall.overlapping_visitors((lo, hi), others)

    def assign(
        self,
        position: int,
        vector: np.ndarray,
        captured_at: datetime,
        camera_id: str | None = None,
        track_ref: str | None = None,
    ) -> int | None:
        """The visitor of the best match among this image's candidates, or None for a new visitor."""
        if track_ref and track_ref in self.track_visitor:
            return self.track_visitor[track_ref]
        exclude = self._cannot_link(camera_id, track_ref) if track_ref and camera_id else set()
        together = self.track_query.get(track_ref) if track_ref else None
        if together is not None:  # the track's crops in this request decide together
            vector, where = together  # (k, d)
            ids = (
                self.rows.keys()
                if self.per_image is None
                else np.unique(np.concatenate([self.per_image[p] for p in where]))
            )
        else:
            ids = self.rows.keys() if self.per_image is None else self.per_image[position]
        candidates = [self.rows[int(i)] for i in ids if int(i) in self.rows] + self.added
        if not candidates:
            return None
        match = footfall.assign_visitor(
            vector,
            captured_at.timestamp(),
            np.stack([c[0] for c in candidates]),
            np.array([c[1] for c in candidates], dtype=np.int64),
            np.array([c[2] for c in candidates], dtype=np.float64),
            self.threshold,
            self.horizon,
            exclude=exclude,
        )
        return None if match is None else int(match)

    def added_row(
        self, vector: np.ndarray, visitor_id: int, captured_at: datetime, track_ref: str | None = None
    ) -> None:
        self.added.append((vector, visitor_id, captured_at.timestamp()))
        if track_ref:
            self.track_visitor.setdefault(track_ref, visitor_id)
