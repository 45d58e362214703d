"""Background jobs that must run once across replicas (retention purge, reconcile of a shared vector store):
one process holds the jobs lease and runs them; the others wait and take over when it goes.

On PostgreSQL the lease is a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its
own, kept open while the process holds it. PostgreSQL releases it when that session ends: the process
exits, is killed (kill -9 closes its socket at once), or its connection breaks (a network partition is
noticed by TCP keepalive; the holder itself notices at its next check, ``SELECT 1`` failing, and stops
running jobs). Every REID_REPLICA_POLL_S each process checks it still holds the lease, or tries to take it.
SQLite means one process: the lease is always held.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

# Key of the advisory lock (any fixed 64-bit number, other than db.WRITE_LOCK_KEY; b"reid-job").
JOBS_LOCK_KEY = 0x72656964_2D6A6F62


class JobLease:
    """``held``: this process runs the once-across-replicas jobs now. ``refresh()`` checks or tries to take it."""

    def __init__(self, engine: Engine, key: int = JOBS_LOCK_KEY) -> None:
        self.key = key
        self.shared_database = engine.dialect.name == "postgresql"
        # A connection outside the request pool, so that the lock's session is never handed to a request.
        self._engine = create_engine(engine.url, poolclass=NullPool) if self.shared_database else None
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self.held = not self.shared_database

    def refresh(self) -> bool:
        """Still held (the lock's session answers), or taken now; False while another process holds it."""
        if not self.shared_database:
            return True
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                if self.held:
                    self._connection.execute(text("SELECT 1"))
                else:
                    got = self._connection.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                    ).scalar()
                    if got:
                        logger.info("this replica now runs the background jobs (retention, reconcile)")
                    self.held = bool(got)
            except Exception as exc:  # the session is gone, and with it the lock (if we held it)
                if self.held:
                    logger.warning("lost the background jobs lease (%s); another replica takes over", exc)
                self.held = False
                self._close()
            return self.held

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken
                pass
            self._connection = None

    def release(self) -> None:
        """Give the lease up (shut-down): closing the session releases the lock at once."""
        if not self.shared_database:
            return
        with self._lock:
            self.held = False
            self._close()
            self._engine.dispose()
