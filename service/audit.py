"""The audit log: each search and each deletion, with the key that did it.

Deletions are recorded in their own transaction (`record`: the record commits with the delete or not
at all). Searches only read, so their records go through an `AuditWriter`: queued by the request
(no database write, no write lock on the search's path) and written in batches by one background
thread; a failed write is retried, `flush` waits for what was queued, and `close` (at shut-down)
writes everything still queued before the service stops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from service.db import write_session
from service.tables import AuditLog, utcnow

logger = logging.getLogger(__name__)


def _row(key_name: str | None, action: str, detail: dict[str, Any], hits: int | None) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "key_name": key_name,
        "action": action,
        "detail": json.dumps(detail, default=str),
        "hits": hits,
    }


def record(
    session: Session, key_name: str | None, action: str, detail: dict[str, Any], hits: int | None = None
):
    """Add an audit entry to `session` (committed with the caller's transaction)."""
    session.add(AuditLog(**_row(key_name, action, detail, hits)))


class AuditWriter:
    """Audit records written off the request path, in batches, by one background thread.

    `submit` never touches the database. Records are kept in memory until a write of them commits
    (a failed write is retried every `retry_s`), so none is lost while the process runs; `close`
    writes the rest (records submitted after `close` are written at once, in the caller's thread).
    """

    def __init__(self, sessions: sessionmaker[Session], batch_size: int = 500, retry_s: float = 1.0) -> None:
        self.sessions = sessions
        self.batch_size = batch_size
        self.retry_s = retry_s
        self._pending: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._submitted = 0
        self._written = 0
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(
        self, key_name: str | None, action: str, detail: dict[str, Any], hits: int | None = None
    ) -> None:
        row = _row(key_name, action, detail, hits)
        with self._cond:
            if not self._closed:
                self._pending.append(row)
                self._submitted += 1
                self._cond.notify_all()
                return
        self._write([row])  # after close: no writer thread any more

    @property
    def backlog(self) -> int:
        with self._cond:
            return self._submitted - self._written

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is written; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._cond.notify_all()
            while self._written < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread (records that could not be written by then
        are logged as lost)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            self._closed = True
            lost = len(self._pending)
        if lost:
            logger.error("audit: %d record(s) could not be written before shut-down", lost)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with write_session(self.sessions) as session:
            session.execute(insert(AuditLog), rows)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:  # closing, all written
                    return
                batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
            try:
                self._write(batch)
            except Exception:
                logger.exception("audit: writing %d record(s) failed; will retry", len(batch))
                with self._cond:
                    if self._closed:  # close() gave up waiting; it has logged what is lost
                        return
                time.sleep(self.retry_s)
                continue
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                self._written += len(batch)
                self._cond.notify_all()
