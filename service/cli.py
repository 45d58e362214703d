"""`reid` subcommands of the service: serve, db upgrade, keys, purge, recluster, migrate-store."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from pathlib import Path

from model.errors import ReidError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands (each sets `func`, which returns an exit code)."""
    p = subparsers.add_parser("serve", help="run the re-ID web service (settings: REID_* environment, .env)")
    p.add_argument("--host", help="bind address (REID_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (REID_PORT, default 8000)")
    p.add_argument("--data-dir", type=Path, help="database, images and index (REID_DATA_DIR)")
    p.add_argument("--weights", type=Path, help="model checkpoint (REID_WEIGHTS)")
    p.add_argument(
        "--dev", action="store_true", help="dev mode: dev keys, random weights allowed (REID_DEV_MODE)"
    )
    p.set_defaults(func=run_serve)

    db = subparsers.add_parser("db", help="service database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    up = db_sub.add_parser("upgrade", help="apply the database migrations")
    _data_args(up)
    up.set_defaults(func=run_db_upgrade)

    keys = subparsers.add_parser("keys", help="manage the service's API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=("ingest", "search", "admin"))
    _data_args(create)
    create.set_defaults(func=run_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (names and roles, never secrets)")
    _data_args(listing)
    listing.set_defaults(func=run_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    _data_args(revoke)
    revoke.set_defaults(func=run_keys_revoke)

    purge = subparsers.add_parser("purge", help="delete gallery items older than the retention period")
    purge.add_argument("--older-than-days", type=float, help="default: REID_RETENTION_DAYS")
    _data_args(purge)
    purge.set_defaults(func=run_purge)

    rc = subparsers.add_parser("recluster", help="recompute visitor ids for items captured in a window")
    rc.add_argument("--start", required=True, help="ISO 8601 (no offset = UTC)")
    rc.add_argument("--end", required=True, help="ISO 8601 (no offset = UTC)")
    _data_args(rc)
    rc.set_defaults(func=run_recluster)

    ms = subparsers.add_parser(
        "migrate-store",
        help="copy the gallery (rows, vectors, images) to another database and vector store (docs/scale.md)",
        description="Copy the gallery that --data-dir / --database-url (REID_*) name into --to-database and "
        "--to-vectors; resumable (run it again after an interruption), verified at the end.",
    )
    ms.add_argument(
        "--to-database", required=True, help="target SQLAlchemy URL, e.g. postgresql+psycopg://..."
    )
    ms.add_argument(
        "--to-vectors",
        required=True,
        help="faiss (the index file of the settings), faiss:PATH, or milvus://HOST:PORT/COLLECTION",
    )
    ms.add_argument(
        "--images-to", type=Path, help="copy the image files to this folder (default: leave them)"
    )
    ms.add_argument("--batch-size", type=int, default=1000, help="rows per committed batch (default 1000)")
    _data_args(ms)
    ms.set_defaults(func=run_migrate_store)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory (REID_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (REID_DATABASE_URL)")


def _settings(args: argparse.Namespace, **extra):
    from pydantic import ValidationError

    from service.settings import Settings

    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ReidError(f"bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _sessions(settings):
    from service.db import make_engine, make_sessionmaker, upgrade_database

    engine = make_engine(settings.resolved_database_url)
    upgrade_database(engine)
    return engine, make_sessionmaker(engine)


def run_serve(args: argparse.Namespace) -> int:
    """Check what can fail before uvicorn starts (settings, port, database, weights), each as one line that
    says what to do; then serve with the loaded model."""
    import uvicorn

    from service.app import create_app

    settings = _settings(
        args, host=args.host, port=args.port, weights=args.weights, dev_mode=True if args.dev else None
    )
    settings.check_safe(warn=False)  # the service's start-up says it (once) in dev mode
    check_port_free(settings.host, settings.port)
    engine, sessions = _open_database(settings)
    try:
        if not settings.dev_mode and not settings.bootstrap_keys() and not _stored_keys(sessions):
            logger.warning(
                "no API key exists: every request but /healthz, /readyz and the console page will be refused "
                "(401). Create one with `reid keys create NAME --role admin` (or set REID_API_KEYS)"
            )
    finally:
        engine.dispose()
    app = create_app(settings, embedder=load_weights(settings))
    with _exit_zero_after_graceful_stop(app):
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    if not app.state.stopped_cleanly:
        logger.error("the service did not shut down completely")
        return 1
    return 0


@contextlib.contextmanager
def _exit_zero_after_graceful_stop(app):
    """uvicorn stops gracefully on SIGTERM, then raises the signal again, which would kill the process
    (status 143) and make supervisors report a crash. It raises it under the handler that was in place
    before it started: this one, which ignores the signal once the app's shut-down has run to its end and
    otherwise dies of it as before (a SIGTERM before serving, or an incomplete stop)."""

    def handler(signum, frame):
        if app.state.stopped_cleanly:
            return
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_port_free(host: str, port: int) -> None:
    """A ReidError naming the port and what to do when it cannot be bound (uvicorn would print a traceback)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ReidError(f"cannot resolve the bind address {host!r} ({exc}); set --host / REID_HOST") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ReidError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another `reid serve` running?); "
                "stop it, or pick another port with --port N / REID_PORT"
            ) from None


def _open_database(settings):
    """Engine and sessions on the migrated database, or a ReidError naming the URL and what to check."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return _sessions(settings)
    except ImportError as exc:
        raise ReidError(
            f"cannot open the database {_safe_url(settings.resolved_database_url)}: its driver is not installed "
            f"({exc}); install it, or use the default SQLite database (unset REID_DATABASE_URL)"
        ) from None
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).split("\n")[0]
        raise ReidError(
            f"cannot open the database {_safe_url(settings.resolved_database_url)}: {reason}; check "
            "REID_DATABASE_URL (or --data-dir): the server must be reachable and the folder writable"
        ) from None


def _safe_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def _stored_keys(sessions) -> int:
    from sqlalchemy import func, select

    from service.tables import ApiKey

    with sessions() as session:
        return session.execute(select(func.count()).select_from(ApiKey).where(~ApiKey.revoked)).scalar_one()


def load_weights(settings):
    """The service's embedder; a missing, damaged or unfitting weights file is one line with what to do."""
    from model.errors import CheckpointError
    from service.app import load_embedder

    advice = (
        "pass a checkpoint written by `reid train` or the official RGA code with --weights FILE / REID_WEIGHTS "
        "(`make demo` writes data/demo/model.pt)"
    )
    try:
        return load_embedder(settings)
    except CheckpointError as exc:
        message = str(exc).split("\n")[0]
        if message.startswith("cannot read weights file"):
            message = f"cannot read the weights file {settings.weights}: damaged, truncated or not a PyTorch checkpoint"
        raise ReidError(f"{message}; {advice}") from None
    except RuntimeError as exc:  # e.g. REID_DEVICE=cuda without a GPU
        raise ReidError(f"cannot load the model: {str(exc).splitlines()[0]}") from None


def run_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine, _ = _sessions(settings)
    engine.dispose()
    print(f"database {settings.resolved_database_url} is up to date")
    return 0


def run_keys_create(args: argparse.Namespace) -> int:
    from service.security import create_key

    engine, sessions = _sessions(_settings(args))
    with sessions() as session:
        try:
            secret = create_key(session, args.name, args.role)
        except ValueError as exc:
            raise ReidError(str(exc)) from None
    engine.dispose()
    print(secret)
    logger.info("created %s key %r; the secret above is shown only once", args.role, args.name)
    return 0


def run_keys_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from service.tables import ApiKey

    engine, sessions = _sessions(_settings(args))
    with sessions() as session:
        rows = session.execute(select(ApiKey).order_by(ApiKey.name)).scalars().all()
    engine.dispose()
    print(f"{'NAME':<24} {'ROLE':<8} {'STATUS':<8} CREATED")
    for row in rows:
        print(
            f"{row.name:<24} {row.role:<8} {'revoked' if row.revoked else 'active':<8} {row.created_at.isoformat()}"
        )
    return 0


def run_keys_revoke(args: argparse.Namespace) -> int:
    from service.security import revoke_key

    engine, sessions = _sessions(_settings(args))
    with sessions() as session:
        found = revoke_key(session, args.name)
    engine.dispose()
    if not found:
        raise ReidError(f"no key named {args.name!r}")
    print(f"revoked {args.name}")
    return 0


def _open_index(settings, sessions):
    """The saved index, for commands that change the gallery while the server may be down."""
    from service.gallery_index import GalleryIndex, database_watermark
    from service.vectorstore import load_store

    if not settings.index_path.exists():
        return None
    options = {}
    if settings.vector_store == "milvus":  # the settings name the collection (the file only refers to it)
        options = dict(
            uri=settings.milvus_uri,
            collection=settings.milvus_collection,
            token=settings.milvus_token,
            consistency=settings.milvus_consistency,
        )
    try:
        store = load_store(settings.index_path, **options)
    except Exception:  # unreadable: the server rebuilds (faiss) or reconciles (Milvus) it at start
        return None
    if store.shared:  # its deletes raise the write watermark that running replicas search at
        store.attach_write_watermark(*database_watermark(sessions))
    return GalleryIndex(store, settings.index_path)


def run_purge(args: argparse.Namespace) -> int:
    from service.retention import purge
    from service.storage import ImageStore

    settings = _settings(args)
    days = settings.retention_days if args.older_than_days is None else args.older_than_days
    if days <= 0:
        print("retention is 0 (keep forever): nothing purged")
        return 0
    engine, sessions = _sessions(settings)
    index = _open_index(settings, sessions)
    deleted = purge(sessions, ImageStore(settings.images_dir, settings.thumbnail_size), index, days)
    if index is not None and deleted:
        index.save()
    engine.dispose()
    print(f"purged {len(deleted)} item(s) captured more than {days:g} days ago")
    return 0


def run_recluster(args: argparse.Namespace) -> int:
    from service import validation
    from service.errors import ApiError
    from service.visitors import recluster

    settings = _settings(args)
    try:
        start = validation.timestamp(args.start, "start")
        end = validation.timestamp(args.end, "end")
        validation.window(start, end)
    except ApiError as exc:
        raise ReidError(exc.message) from None
    engine, sessions = _sessions(settings)
    result = recluster(sessions, start, end, settings.visitor_threshold, settings.visitor_horizon_s)
    engine.dispose()
    print(f"reclustered {result['items']} item(s) into {result['visitors']} visitor(s)")
    return 0


def run_migrate_store(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from service.db import make_engine
    from service.migrate import MigrationError, migrate, parse_vector_target, safe_url

    settings = _settings(args)
    source_url = settings.resolved_database_url
    if source_url.startswith("sqlite:///") and not Path(source_url[len("sqlite:///") :]).is_file():
        raise ReidError(
            f"no gallery database at {source_url[len('sqlite:///') :]}; give --data-dir or --database-url"
        )
    vectors = parse_vector_target(args.to_vectors, settings)
    source = make_engine(source_url)
    try:
        target = make_engine(args.to_database)
    except Exception as exc:  # noqa: BLE001 - an unparsable URL or a missing driver
        raise ReidError(f"cannot use --to-database {safe_url(args.to_database)}: {exc}") from None
    try:
        report = migrate(
            source,
            target,
            vectors,
            source_images=settings.images_dir,
            images_to=args.images_to,
            batch=args.batch_size,
            on_batch=lambda table, done: logger.info("%s: %d rows", table, done),
        )
    except KeyboardInterrupt:
        raise ReidError("interrupted; run the same command again to continue where it stopped") from None
    except MigrationError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).split("\n")[0]
        raise ReidError(
            f"migration stopped: {reason}; fix it and run the same command again to continue"
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the vector store's server failing half-way: one line
        reason = (str(exc).splitlines() or [""])[0]
        raise ReidError(
            f"migration stopped: {type(exc).__name__}: {reason}; run the same command again to continue"
        ) from None
    finally:
        vectors.close()
        source.dispose()
        target.dispose()
    print(report.summary(args.to_database))
    return 0
