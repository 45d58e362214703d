"""Live watches: "tell me when this person is seen again".

A watch is a query vector (the unit mean embedding of photos and/or stored items, as for a search), a
similarity threshold, optional cameras and an expiry. Active watches are held in memory as one matrix;
after every ingest commit (a commit listener, service/ingest.py) the new items' vectors are compared with
all of them in one matrix product. A match above a watch's threshold, on one of its cameras, before its
expiry, is stored (watch_matches, and the audit log) and pushed to the watch's subscribers (Server-Sent
Events, GET /watches/{id}/events). Watches live in the database, so active ones survive a restart; expired
and deleted ones stop matching.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select

from service import audit
from service.db import write_session
from service.schemas import iso
from service.tables import Watch, WatchMatch, decode_embedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveWatch:
    id: int
    threshold: float
    cameras: frozenset[str] | None
    expires_at: datetime


def watch_dict(watch: Watch, matches: int | None = None, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    state = (
        "deleted" if watch.deleted_at is not None else ("expired" if watch.expires_at <= now else "active")
    )
    body = {
        "id": watch.id,
        "label": watch.label,
        "threshold": watch.threshold,
        "camera_id": json.loads(watch.cameras) if watch.cameras else None,
        "created_at": iso(watch.created_at),
        "created_by": watch.created_by,
        "expires_at": iso(watch.expires_at),
        "state": state,
        "events_url": f"/watches/{watch.id}/events",
        "matches_url": f"/watches/{watch.id}/matches",
    }
    if matches is not None:
        body["matches"] = matches
    return body


def match_dict(match: WatchMatch) -> dict:
    return {
        "id": match.id,
        "watch_id": match.watch_id,
        "item_id": match.item_id,
        "score": round(match.score, 6),
        "camera_id": match.camera_id,
        "captured_at": iso(match.captured_at),
        "matched_at": iso(match.matched_at),
        "image_url": f"/gallery/{match.item_id}/image",
        "thumbnail_url": f"/gallery/{match.item_id}/image?size=thumb",
    }


class WatchRegistry:
    """The active watches as one (W, D) matrix, and the event queues of their subscribers."""

    def __init__(self, sessions, dim: int) -> None:
        self.sessions = sessions
        self.dim = dim
        self._lock = threading.Lock()
        self._watches: list[ActiveWatch] = []
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._subscribers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}

    # -- the active set ------------------------------------------------------------------------
    def load(self, now: datetime | None = None) -> int:
        """(Re)read the active watches from the database (at start-up: they survive a restart)."""
        now = now or datetime.now(UTC)
        with self.sessions() as session:
            rows = session.execute(
                select(Watch).where(Watch.deleted_at.is_(None), Watch.expires_at > now).order_by(Watch.id)
            ).scalars()
            watches, vectors = [], []
            for row in rows:
                vector = decode_embedding(row.query_vector)
                if vector.shape[0] != self.dim:
                    logger.warning(
                        "watch %d has a %d-d query; the model gives %d: skipped",
                        row.id,
                        vector.shape[0],
                        self.dim,
                    )
                    continue
                cameras = frozenset(json.loads(row.cameras)) if row.cameras else None
                watches.append(ActiveWatch(row.id, row.threshold, cameras, row.expires_at))
                vectors.append(vector)
        with self._lock:
            self._watches = watches
            self._matrix = (
                np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, self.dim), np.float32)
            )
        return len(watches)

    def __len__(self) -> int:
        return len(self._watches)

    # -- matching (a commit listener) --------------------------------------------------------------
    def on_commit(self, ctx, items) -> None:
        """Compare newly committed items with every active watch in one matrix product; store and push matches."""
        with self._lock:
            watches, matrix = self._watches, self._matrix
        if not watches or not items:
            return
        now = datetime.now(UTC)
        vectors = np.stack([np.asarray(item.vector, dtype=np.float32) for item in items])
        scores = vectors @ matrix.T  # (items, watches)
        found = []
        for i, j in zip(
            *np.nonzero(scores >= np.array([w.threshold for w in watches], dtype=np.float32)), strict=True
        ):
            watch, item = watches[j], items[i]
            if watch.expires_at <= now or (watch.cameras is not None and item.camera_id not in watch.cameras):
                continue
            found.append((watch, item, float(scores[i, j])))
        if any(w.expires_at <= now for w in watches):
            self.load(now)  # expired watches stop
        if not found:
            return
        found.sort(key=lambda f: (f[0].id, f[1].id))
        with write_session(self.sessions) as session:
            rows = []
            for watch, item, score in found:
                row = WatchMatch(
                    watch_id=watch.id,
                    item_id=item.id,
                    score=score,
                    camera_id=item.camera_id,
                    captured_at=item.captured_at,
                    matched_at=now,
                )
                session.add(row)
                rows.append(row)
            session.flush()
            for row in rows:
                audit.record(
                    session,
                    None,
                    "watch_match",
                    {"watch_id": row.watch_id, "item_id": row.item_id, "score": round(row.score, 6)},
                    hits=1,
                )
            events = [match_dict(row) for row in rows]
        for event in events:
            self._publish(event["watch_id"], event)
        logger.info("watches: %d match(es) in %d new item(s)", len(events), len(items))

    # -- subscribers (Server-Sent Events) ------------------------------------------------------------
    def subscribe(self, watch_id: int) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.setdefault(watch_id, set()).add(entry)
        queue._reid_entry = entry  # type: ignore[attr-defined]
        return queue

    def unsubscribe(self, watch_id: int, queue: asyncio.Queue) -> None:
        with self._lock:
            subscribers = self._subscribers.get(watch_id, set())
            subscribers.discard(queue._reid_entry)  # type: ignore[attr-defined]
            if not subscribers:
                self._subscribers.pop(watch_id, None)

    def _publish(self, watch_id: int, event: dict) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(watch_id, ()))
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # that subscriber's loop is closed
                pass
