"""`reid migrate-store`: copy a gallery (database rows, vectors, image files) to another database and vector store.

The usual move is from the embedded default, SQLite + a faiss file in one data directory, to PostgreSQL +
Milvus (docs/scale.md). What is copied and how:

- Rows: every table of ``service.tables`` in primary-key order, in batches, with their ids unchanged (track
  refs, visitors, watch matches and audit lines still join). The target gets the migrations first. A batch
  inserts only the keys the target lacks and commits on its own, so a run stopped anywhere (Ctrl-C, kill -9)
  is continued by running the same command again, without duplicates. PostgreSQL id sequences are moved past
  the highest id ever given out (SQLite's AUTOINCREMENT counter), so ids are never reused.
- Vectors: from the stored float32 embeddings (the source of truth), not from the faiss file; ids the target
  store already holds are skipped.
- Image files: the rows keep their relative paths. Without ``images_to`` the files stay where they are (point
  the new deployment's REID_DATA_DIR, or its shared image volume, at them); with it they are copied there
  (a file already there with the same size is skipped).
- At the end: row counts per table and the id fingerprints (database vs database, vector store vs database)
  are compared; any difference is a ``MigrationError``.

The source must not change while this runs (stop the service, or run again after it stopped: new rows are
picked up, rows deleted in the meantime fail the check).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Integer, Table, func, select, text
from sqlalchemy.engine import Connection, Engine, make_url

from model.errors import ReidError
from service.tables import Base
from service.vectorstore.base import id_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
FALLBACK_DIM = 2048  # an empty gallery has no embedding to read the dimension from
TRAIN_SAMPLE = 50_000
# Tables in the order they are copied (none references another through a foreign key; this is just stable).
TABLES = ("gallery_items", "api_keys", "audit_log", "service_state", "watches", "watch_matches")


class MigrationError(ReidError):
    """The migration cannot start, failed, or its final check found a difference."""


@dataclass
class TableReport:
    name: str
    copied: int = 0
    present: int = 0  # already in the target (an earlier, interrupted run)
    source_count: int = 0
    target_count: int = 0


@dataclass
class Report:
    tables: dict[str, TableReport] = field(default_factory=dict)
    vectors_added: int = 0
    vectors_held: int = 0
    vector_target: str = ""
    images_copied: int = 0
    images_present: int = 0
    images_missing: int = 0  # referenced by a row but absent in the source folder
    images_dir: Path | None = None

    def summary(self, target_url: str) -> str:
        items = self.tables["gallery_items"]
        others = ", ".join(
            f"{r.target_count} {name}" for name, r in self.tables.items() if name != "gallery_items"
        )
        copied = sum(r.copied for r in self.tables.values())
        present = sum(r.present for r in self.tables.values())
        if self.images_dir is None:
            images = "images left in place"
        else:
            images = (
                f"images: {self.images_copied} copied, {self.images_present} already in {self.images_dir}"
            )
            if self.images_missing:
                images += f", {self.images_missing} missing in the source"
        return (
            f"migrated {items.target_count} items ({others}) to {safe_url(target_url)}: {copied} rows copied, "
            f"{present} already there; vectors in {self.vector_target}: {self.vectors_held} "
            f"({self.vectors_added} added), fingerprint matches the database; {images}"
        )


def safe_url(url: str) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


# --------------------------------------------------------------------------------------------- vector targets


class VectorTarget:
    """Where the vectors go: a store that keeps what was added across runs, so a re-run skips it."""

    description = ""

    def open(self, dim: int, sample: Callable[[], np.ndarray]) -> None:
        """Open or create the store for `dim`-dimensional vectors; `sample()` gives training vectors."""
        raise NotImplementedError

    def held_ids(self) -> np.ndarray:
        raise NotImplementedError

    def add(self, ids: np.ndarray, vectors: np.ndarray, rows: list) -> None:
        """Add vectors; `rows` are their gallery_items rows (for engines that also store camera and time)."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Make what was added so far durable (called after every batch and when interrupted)."""

    def fingerprint(self) -> str:
        return id_fingerprint(np.sort(self.held_ids()))

    def close(self) -> None:
        pass


class FaissTarget(VectorTarget):
    """A faiss file (the service's in-process store), saved atomically every few batches and at the end."""

    SAVE_EVERY = 10

    def __init__(self, path: Path, kind: str = "flat", storage: str = "fp32") -> None:
        self.path = Path(path)
        self.kind, self.storage = kind, storage
        self.description = f"faiss {kind} file {self.path}"
        self.store = None
        self._unsaved = 0

    def open(self, dim: int, sample: Callable[[], np.ndarray]) -> None:
        from service.vectorstore import create_store, load_store

        if self.path.exists():
            try:
                store = load_store(self.path)
            except Exception as exc:  # noqa: BLE001 - a half-written or foreign file is replaced
                logger.warning("cannot read %s (%s); starting a new store there", self.path, exc)
            else:
                if store.dim == dim and (store.kind, getattr(store, "storage", "fp32")) == (
                    self.kind,
                    self.storage,
                ):
                    self.store = store
                    logger.info("continuing the faiss file %s (%d vectors held)", self.path, len(store))
                    return
                logger.warning(
                    "%s is a different index (%s, dim %d); starting a new one",
                    self.path,
                    store.kind,
                    store.dim,
                )
        self.store = create_store(dim, self.kind, storage=self.storage)
        if self.kind != "flat":
            vectors = sample()
            if len(vectors):
                self.store.train_if_needed(vectors)
        self._unsaved = 1

    def held_ids(self) -> np.ndarray:
        return self.store.ids()

    def add(self, ids: np.ndarray, vectors: np.ndarray, rows: list) -> None:
        self.store.add(ids, vectors)
        self._unsaved += 1
        if self._unsaved >= self.SAVE_EVERY:
            self.checkpoint()

    def checkpoint(self) -> None:
        if self.store is not None and self._unsaved:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.store.save(self.path)
            self._unsaved = 0

    def fingerprint(self) -> str:
        return self.store.fingerprint()


def parse_vector_target(spec: str, settings) -> VectorTarget:
    """`faiss` (the index file the settings name), `faiss:PATH`, or `milvus://HOST:PORT/COLLECTION`."""
    if spec == "faiss" or spec.startswith("faiss:"):
        path = Path(spec[len("faiss:") :]) if spec.startswith("faiss:") else settings.index_path
        if not str(path):
            raise MigrationError("--to-vectors faiss:PATH needs a file path")
        return FaissTarget(path, settings.index_kind, settings.index_storage)
    if spec.startswith(("milvus://", "milvuss://")):
        return milvus_target(spec, settings)
    raise MigrationError(
        f"--to-vectors {spec!r} is not a vector store; give faiss, faiss:PATH or milvus://HOST:PORT/COLLECTION"
    )


class MilvusTarget(VectorTarget):
    """A Milvus collection (created when missing, with the settings' index type); every insert is durable."""

    def __init__(self, uri: str, collection: str, settings) -> None:
        self.uri, self.collection, self.settings = uri, collection, settings
        self.description = f"Milvus collection {collection} at {uri}"
        self.store = None

    def open(self, dim: int, sample: Callable[[], np.ndarray]) -> None:
        try:
            from service.vectorstore.milvus_store import MilvusVectorStore
        except ImportError as exc:
            raise MigrationError(f"the Milvus vector store cannot be used here ({exc})") from None
        options = {}
        for setting, option in (
            ("milvus_index_type", "index_type"),
            ("milvus_index_params", "index_params"),
            ("milvus_search_params", "search_params"),
            ("milvus_token", "token"),
            ("milvus_segment_max_mb", "segment_max_mb"),
            ("milvus_partition_key", "partition_key"),
        ):
            value = getattr(self.settings, setting, None)
            if value:
                options[option] = value
        try:
            self.store = MilvusVectorStore(dim, uri=self.uri, collection=self.collection, **options)
        except ValueError as exc:
            raise MigrationError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - pymilvus' connection errors have no common base
            raise MigrationError(f"cannot reach Milvus at {self.uri}: {str(exc).splitlines()[0]}") from None

    def held_ids(self) -> np.ndarray:
        return self.store.ids()

    def add(self, ids: np.ndarray, vectors: np.ndarray, rows: list) -> None:
        from service.vectorstore.base import ItemAttributes

        attributes = ItemAttributes(
            camera_ids=tuple(row.camera_id for row in rows),
            captured_us=tuple(epoch_us(row.captured_at) for row in rows),
        )
        self.store.add(ids, vectors, attributes=attributes)

    def fingerprint(self) -> str:
        return self.store.fingerprint()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def milvus_target(spec: str, settings) -> MilvusTarget:
    """`milvus://HOST:PORT/COLLECTION` (`milvuss://` for TLS) -> a target on http(s)://HOST:PORT."""
    scheme, rest = spec.split("://", 1)
    address, _, collection = rest.partition("/")
    if not address or not collection or "/" in collection:
        raise MigrationError(f"--to-vectors {spec!r}: give milvus://HOST:PORT/COLLECTION")
    if ":" not in address:
        address += ":19530"
    return MilvusTarget(f"{'https' if scheme == 'milvuss' else 'http'}://{address}", collection, settings)


# --------------------------------------------------------------------------------------------- the copy


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _key_batches(conn: Connection, table: Table, batch: int) -> Iterator[list]:
    """The source rows of `table` in primary-key order, `batch` at a time (keyset pagination)."""
    (key,) = table.primary_key.columns
    last = None
    while True:
        query = select(table).order_by(key).limit(batch)
        if last is not None:
            query = query.where(key > last)
        rows = conn.execute(query).all()
        if not rows:
            return
        yield rows
        last = getattr(rows[-1], key.name)


def _count(conn: Connection, table: Table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _ids(conn: Connection) -> np.ndarray:
    table = _table("gallery_items")
    return np.fromiter(conn.execute(select(table.c.id).order_by(table.c.id)).scalars(), dtype=np.int64)


def _sqlite_sequences(conn: Connection) -> dict[str, int]:
    """SQLite AUTOINCREMENT counters (the highest id ever given out, deleted rows included)."""
    if conn.dialect.name != "sqlite":
        return {}
    try:
        return {name: int(seq) for name, seq in conn.execute(text("SELECT name, seq FROM sqlite_sequence"))}
    except Exception:  # noqa: BLE001 - no AUTOINCREMENT table yet
        return {}


def _advance_sequences(conn: Connection, source_sequences: dict[str, int]) -> None:
    """On PostgreSQL, move each serial id sequence past every id given out in the source or present now."""
    if conn.dialect.name != "postgresql":
        return
    for name in TABLES:
        table = _table(name)
        (key,) = table.primary_key.columns
        if not isinstance(key.type, Integer):
            continue
        sequence = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": name, "c": key.name}
        ).scalar()
        if sequence is None:
            continue
        highest = max(conn.execute(select(func.max(key))).scalar() or 0, source_sequences.get(name, 0))
        if highest > 0:
            conn.execute(text("SELECT setval(CAST(:s AS regclass), :v, true)"), {"s": sequence, "v": highest})


def _present_keys(conn: Connection, table: Table, rows: list) -> set:
    (key,) = table.primary_key.columns
    first, last = getattr(rows[0], key.name), getattr(rows[-1], key.name)
    return set(conn.execute(select(key).where(key >= first, key <= last)).scalars())


def _copy_image(source_root: Path, target_root: Path, relative: str, report: Report) -> None:
    from service.storage import TMP_PREFIX, ImageStore

    source = ImageStore.path(_Root(source_root), relative)
    target = ImageStore.path(_Root(target_root), relative)
    if not source.is_file():
        report.images_missing += 1
        return
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        report.images_present += 1
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{target.name}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.images_copied += 1


class _Root:
    """Just enough of an ImageStore for its path check (a relative path may not leave the root)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)


def migrate(
    source: Engine,
    target: Engine,
    vectors: VectorTarget,
    *,
    source_images: Path,
    images_to: Path | None = None,
    batch: int = DEFAULT_BATCH,
    on_batch: Callable[[str, int], None] | None = None,
) -> Report:
    """Copy everything from `source` to `target` and `vectors`, then check; see the module docstring.

    `on_batch(table, rows_done)` is called after each committed batch (progress; tests stop a run there)."""
    from service.db import upgrade_database

    if batch < 1:
        raise MigrationError(f"the batch size must be at least 1, got {batch}")
    if source.url == target.url:
        raise MigrationError("the target database is the source database; give another --to-database")
    if images_to is not None and Path(images_to).resolve() == Path(source_images).resolve():
        images_to = None  # the files are already where they should be
    upgrade_database(target)
    report = Report(vector_target=vectors.description, images_dir=images_to)
    items = _table("gallery_items")
    with source.connect() as src:
        first = src.execute(select(items.c.embedding_dim).order_by(items.c.id).limit(1)).scalar()
        dim = int(first) if first else FALLBACK_DIM
        vectors.open(dim, lambda: _sample_vectors(src, dim))
        held = set(vectors.held_ids().tolist())
        try:
            for name in TABLES:
                table = _table(name)
                done = report.tables.setdefault(name, TableReport(name))
                for rows in _key_batches(src, table, batch):
                    with target.begin() as dst:
                        present = _present_keys(dst, table, rows)
                        missing = [row._asdict() for row in rows if _key(table, row) not in present]
                        if missing:
                            dst.execute(table.insert(), missing)
                    done.copied += len(missing)
                    done.present += len(rows) - len(missing)
                    if name == "gallery_items":
                        _add_vectors(vectors, rows, held, dim, report)
                        if images_to is not None:
                            for row in rows:
                                for relative in (row.image_path, row.thumbnail_path):
                                    _copy_image(Path(source_images), Path(images_to), relative, report)
                    if on_batch is not None:
                        on_batch(name, done.copied + done.present)
            with target.begin() as dst:
                _advance_sequences(dst, _sqlite_sequences(src))
        finally:
            vectors.checkpoint()
        _verify(src, target, vectors, report)
    return report


def _key(table: Table, row):
    (key,) = table.primary_key.columns
    return getattr(row, key.name)


def _add_vectors(vectors: VectorTarget, rows: list, held: set, dim: int, report: Report) -> None:
    new = [row for row in rows if row.id not in held]
    if new:
        for row in new:
            if row.embedding_dim != dim or len(row.embedding) != 4 * dim:
                raise MigrationError(
                    f"item {row.id} has a {row.embedding_dim}-value embedding, the others {dim}: "
                    "the gallery mixes models; re-embed it before migrating"
                )
        ids = np.array([row.id for row in new], dtype=np.int64)
        matrix = np.stack([np.frombuffer(row.embedding, dtype=np.float32) for row in new])
        vectors.add(ids, matrix, new)
        held.update(ids.tolist())
        report.vectors_added += len(new)


def _sample_vectors(conn: Connection, dim: int) -> np.ndarray:
    """Up to TRAIN_SAMPLE embeddings spread over the id range (for an IVF target's training)."""
    ids = _ids(conn)
    if not len(ids):
        return np.empty((0, dim), dtype=np.float32)
    chosen = ids[np.linspace(0, len(ids) - 1, min(len(ids), TRAIN_SAMPLE)).astype(np.int64)]
    from service.repository import chunked

    items = _table("gallery_items")
    blobs = []
    for chunk in chunked(np.unique(chosen)):
        blobs += conn.execute(select(items.c.embedding).where(items.c.id.in_(chunk))).scalars().all()
    return np.stack([np.frombuffer(blob, dtype=np.float32) for blob in blobs])


def _verify(src: Connection, target: Engine, vectors: VectorTarget, report: Report) -> None:
    problems = []
    with target.connect() as dst:
        for name in TABLES:
            table = _table(name)
            done = report.tables[name]
            done.source_count, done.target_count = _count(src, table), _count(dst, table)
            if done.source_count != done.target_count:
                problems.append(
                    f"{name}: {done.source_count} rows in the source, {done.target_count} in the target"
                )
        source_print = id_fingerprint(_ids(src))
        target_print = id_fingerprint(_ids(dst))
    if source_print != target_print:
        problems.append("gallery item ids differ between the source and the target database")
    vector_print = vectors.fingerprint()
    report.vectors_held = int(vector_print.split(":")[0])
    if vector_print != target_print:
        problems.append(
            f"the vector store holds {report.vectors_held} ids that do not match the database's "
            f"{target_print.split(':')[0]} items (use an empty collection or file)"
        )
    if report.images_missing:
        logger.warning(
            "%d image file(s) named by rows were missing in the source folder", report.images_missing
        )
    if problems:
        raise MigrationError("check failed after copying: " + "; ".join(problems))
