"""Database engine and sessions (SQLAlchemy 2). SQLite gets WAL mode, foreign keys and a busy timeout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for `url`; for a SQLite file its directory is created and pragmas set on every connection."""
    parsed = make_url(url)
    # Request handlers run in a thread pool of 40: enough connections that none waits for one.
    kwargs: dict = {"pool_size": 10, "max_overflow": 40, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        kwargs = {}  # in-memory SQLite: one connection per thread, no pool settings
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling breaks SAVEPOINT (used per image at ingest); let
        # SQLAlchemy emit BEGIN itself, as its SQLite documentation recommends.
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


# Key of the PostgreSQL advisory lock that write transactions take (any fixed 64-bit number; b"reid-wr").
WRITE_LOCK_KEY = 0x72656964_2D7772


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a transaction that writes, holding the database's write lock from its first statement:
    on SQLite BEGIN IMMEDIATE, on PostgreSQL a transaction-level advisory lock. Writers (threads of one
    process or several processes on one database) run one after another, so a read followed by a write sees
    every earlier commit: two ingests of the same bytes give one item, and 'database is locked' cannot happen
    half-way through on SQLite. The lock is released at commit or rollback."""
    with sessions() as session, session.begin():
        connection = session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
        yield session


# Key of the advisory lock migrations take (b"reid-mig"), so two processes never migrate at once.
MIGRATION_LOCK_KEY = 0x72656964_2D6D6967


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config():
    """An Alembic config pointing at the migrations package (works installed or from a checkout)."""
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` on `engine`."""
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # replicas starting at once migrate one after another
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("database at %s is at revision %s", engine.url.render_as_string(hide_password=True), revision)
