"""Live watches: "tell me when this person is seen again".

A watch is a query vector (the unit mean embedding of photos and/or stored items, as for a search), a
similarity threshold, optional cameras and an expiry. Active watches are held in memory as one matrix;
after every ingest commit (a commit listener, service/ingest.py) the new items' vectors are compared with
all of them in one matrix product. A match above a watch's threshold, on one of its cameras, before its
expiry, is stored (watch_matches, and the audit log) and pushed to the watch's subscribers (Server-Sent
Events, GET /watches/{id}/events). Watches live in the database, so active ones survive a restart; expired
and deleted ones stop matching.

Several processes on one database (replicas): before matching, a process re-reads the active watches when
their version (count of undeleted watches, highest id) changed, so a watch created through another replica
matches here at once. Events reach subscribers only from the database: ``publish_new`` reads the matches
after a cursor in id order (right after this process stored some, and every REID_REPLICA_POLL_S for those
other replicas stored), so a subscriber on any replica gets every match once, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select

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
        self._version: tuple[int, int] | None = None  # of the watches table when the matrix was loaded
        self._publish_lock = threading.Lock()
        self._cursor: int | None = None  # the highest watch_matches id published (None: not started)

    # -- the active set ------------------------------------------------------------------------
    def load(self, now: datetime | None = None) -> int:
        """(Re)read the active watches from the database (at start-up: they survive a restart)."""
        now = now or datetime.now(UTC)
        with self.sessions() as session:
            version = self._version_of(session)  # before the rows: a change in between reloads next time
            if self._cursor is None:
                self._cursor = session.execute(select(func.coalesce(func.max(WatchMatch.id), 0))).scalar_one()
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
            self._version = version
            self._watches = watches
            self._matrix = (
                np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, self.dim), np.float32)
            )
        return len(watches)

    def __len__(self) -> int:
        return len(self._watches)

    @staticmethod
    def _version_of(session) -> tuple[int, int]:
        """Changes when a watch is created (highest id) or deleted (undeleted count)."""
        count, highest = session.execute(
            select(func.count(Watch.id), func.coalesce(func.max(Watch.id), 0)).where(
                Watch.deleted_at.is_(None)
            )
        ).one()
        return int(count), int(highest)

    def refresh(self) -> bool:
        """Reload when another process created or deleted a watch since the last load; True if it did."""
        with self.sessions() as session:
            if self._version_of(session) == self._version:
                return False
        self.load()
        return True

    # -- matching (a commit listener) --------------------------------------------------------------
    def on_commit(self, ctx, items) -> None:
        """Compare newly committed items with every active watch in one matrix product; store and push matches."""
        if items:
            self.refresh()  # watches created or deleted through another replica
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
        self.publish_new()
        logger.info("watches: %d match(es) in %d new item(s)", len(rows), len(items))

    def publish_new(self, limit: int = 1000) -> int:
        """Push the matches stored since the last call (by any process) to this process's subscribers, in id
        order; returns how many were read."""
        with self._publish_lock:
            if self._cursor is None:
                return 0
            read = 0
            while True:
                with self.sessions() as session:
                    rows = session.execute(
                        select(WatchMatch)
                        .where(WatchMatch.id > self._cursor)
                        .order_by(WatchMatch.id)
                        .limit(limit)
                    ).scalars()
                    events = [match_dict(row) for row in rows]
                for event in events:
                    self._publish(event["watch_id"], event)
                    self._cursor = event["id"]
                read += len(events)
                if len(events) < limit:
                    return read

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
