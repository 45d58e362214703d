"""The gallery's index as the service uses it: a vector store bound to its file and kept in step
with the database (the source of truth). Loaded from disk at start when it holds exactly the
database's ids, else rebuilt from the stored embeddings; saved when changed; reconciled with rows
another process added or deleted. Thread safety is the store's (one lock, inside the store), plus one lock
here that makes "add the ids not yet held" atomic.

Several processes on one database (replicas, docs/service.md "Replicas"): an in-process store (faiss) is
kept in step with rows other processes commit by ``sync``, called before every search. It reads the items
with an id above the highest one it has seen (writers hold the database's write lock, so ids are committed
in increasing order: nothing can appear below the cursor later) and the deletion counter that every
deleting transaction increments (repository.deletes_generation); only when that changed does it compare
all ids. A store that is itself shared between processes (``VectorStore.shared``: a server engine) needs
none of this.

A server engine (Milvus) persists itself: at start its collection is reconciled with the database and the
file is only a reference to it. ``reconcile`` (at start for a server engine, periodically for both) walks
the id space in ranges, so neither side's ids travel all at once. Camera / time filters go to an engine
that evaluates them itself (``filters_inside``: Milvus); for the others they are resolved to ids here."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service import repository
from service.db import write_session
from service.vectorstore import ItemAttributes, ItemFilter, VectorStore, create_store, load_store

logger = logging.getLogger(__name__)

REBUILD_CHUNK = 4096
SYNC_CHUNK = 4096  # rows read per query when catching up with other processes' commits
RECONCILE_RANGE = 65_536  # database ids compared per range (both sides' ids of one range at a time)
ID_SPACE_END = 2**62  # above every item id (Milvus parses filter literals as int64)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_microseconds(moment: datetime) -> int:
    """A capture time as microseconds since the epoch, UTC, exactly (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_microseconds(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def item_filter(cameras=(), start: datetime | None = None, end: datetime | None = None) -> ItemFilter:
    """The search restriction of cameras and a capture window [start, end)."""
    return ItemFilter(
        tuple(cameras or ()),
        None if start is None else to_microseconds(start),
        None if end is None else to_microseconds(end),
    )


def attributes(cameras, times) -> ItemAttributes:
    """What a filtering engine keeps per vector, from camera ids and capture times."""
    return ItemAttributes(tuple(str(c) for c in cameras), tuple(to_microseconds(t) for t in times))


def _subset(attrs: ItemAttributes | None, mask: np.ndarray) -> ItemAttributes | None:
    if attrs is None:
        return None
    keep = np.flatnonzero(mask).tolist()
    return ItemAttributes(tuple(attrs.camera_ids[i] for i in keep), tuple(attrs.captured_us[i] for i in keep))


def db_items(session: Session, ids, dim: int) -> tuple[np.ndarray, np.ndarray, ItemAttributes]:
    """(ids, vectors, attributes) of the ids that exist, in the given order (each checked to have `dim`)."""
    rows = repository.index_rows(session, ids)
    present = np.array([int(i) for i in ids if int(i) in rows], dtype=np.int64)
    if not len(present):
        return present, np.zeros((0, dim), dtype=np.float32), ItemAttributes((), ())
    for vector, _, _ in rows.values():
        if vector.shape[0] != dim:
            raise ValueError(f"a stored embedding has {vector.shape[0]} values, expected {dim}")
    vectors = np.stack([rows[int(i)][0] for i in present]).astype(np.float32)
    attrs = attributes([rows[int(i)][1] for i in present], [rows[int(i)][2] for i in present])
    return present, vectors, attrs


def db_ids(session: Session) -> np.ndarray:
    return repository.all_ids(session)


def db_vectors(session: Session, ids: np.ndarray | list[int], dim: int) -> dict[int, np.ndarray]:
    """id -> stored embedding, for the ids that exist (each checked to have `dim` values)."""
    vectors = repository.vectors_by_id(session, ids)
    for vector in vectors.values():
        if vector.shape[0] != dim:
            raise ValueError(f"a stored embedding has {vector.shape[0]} values, expected {dim}")
    return vectors


def database_watermark(sessions: sessionmaker[Session]):
    """(read, record) of the vector store's write watermark in the database (VectorStore.attach_write_watermark).
    Recording takes the write lock, so concurrent writers (threads, replicas) only ever raise it."""

    def read() -> int:
        with sessions() as session:
            return repository.vector_watermark(session)

    def record(ts: int) -> None:
        with write_session(sessions) as session:
            repository.raise_vector_watermark(session, ts)

    return read, record


def database_source(sessions: sessionmaker[Session], dim: int):
    """The store's exact-vector source: float32 embeddings read from the database by id."""

    def read(ids: np.ndarray) -> dict[int, np.ndarray]:
        with sessions() as session:
            return db_vectors(session, ids, dim)

    return read


class GalleryIndex:
    """A VectorStore plus the file it is saved to; ``dirty`` while it holds changes not yet saved."""

    def __init__(self, store: VectorStore, path: Path, sessions: sessionmaker[Session] | None = None) -> None:
        self.store = store
        self.path = Path(path)
        self.sessions = sessions  # resolves camera / time filters for engines that do not hold them
        self.rebuilt = False
        self._saved_generation: int | None = store.generation  # None: never saved
        self._add_lock = threading.Lock()  # check-then-add of add_new is atomic
        self._sync_lock = threading.Lock()
        # What sync has seen of the database: the highest item id, and the deletion counter.
        self._cursor = 0 if self.shared or not len(store) else int(store.ids()[-1])
        self._deletes_seen: int | None = None  # None: not tracking (sync compares all ids once)
        self._probe = None  # PostgreSQL: a connection of its own, autocommit, for sync's one-statement check

    @property
    def shared(self) -> bool:
        """The store is one copy every process uses (nothing to keep in step here)."""
        return bool(getattr(self.store, "shared", False))

    @property
    def dirty(self) -> bool:
        return self._saved_generation != self.store.generation

    @classmethod
    def open(
        cls,
        path: Path,
        dim: int,
        kind: str = "flat",
        sessions: sessionmaker[Session] | None = None,
        storage: str = "fp32",
        engine: str = "faiss",
        **store_options,
    ) -> GalleryIndex:
        """faiss: load the saved index if it holds exactly the database's ids, else rebuild it from the
        database. A server engine (Milvus): open (or create) the collection and reconcile it with the database.

        An fp16 store re-scores from the database (``attach_vector_source``); bf16 from its own float32."""
        path = Path(path)
        if engine != "faiss":
            store = create_store(dim, engine=engine, **store_options)
            store.attach_write_watermark(*database_watermark(sessions))
            gallery = cls(store, path, sessions)
            removed, added = gallery.reconcile(sessions)
            gallery.rebuilt = bool(removed or added)
            store.attach_vector_source(database_source(sessions, dim))
            gallery._saved_generation = None
            gallery.save()
            logger.info("opened the %s vector store (%s): %d vectors", engine, path.name, len(store))
            return gallery
        with sessions() as session:  # the counter before the ids: a delete in between is seen by sync
            deletes = repository.deletes_generation(session)
            ids = db_ids(session)
        gallery = cls._open(path, dim, kind, sessions, storage, ids)
        gallery.store.prepare()  # before the service reports ready: no slow first search
        gallery._deletes_seen = deletes
        gallery._cursor = int(ids[-1]) if len(ids) else 0
        return gallery

    @classmethod
    def _open(
        cls, path: Path, dim: int, kind: str, sessions: sessionmaker[Session], storage: str, ids: np.ndarray
    ) -> GalleryIndex:
        if path.exists():
            try:
                store = load_store(path)
            except Exception as exc:  # corrupt or unreadable: never served, rebuilt
                logger.warning("index file %s cannot be loaded (%s); rebuilding from the database", path, exc)
            else:
                held = (store.kind, getattr(store, "storage", "fp32"))
                if held != (kind, storage):
                    logger.warning(
                        "index file %s is %s, the settings ask for %s; rebuilding",
                        path,
                        held,
                        (kind, storage),
                    )
                elif store.dim == dim and np.array_equal(store.ids(), ids):
                    logger.info(
                        "loaded index %s with %d vectors (consistent with the database)", path, len(store)
                    )
                    store.attach_vector_source(database_source(sessions, dim))
                    return cls(store, path, sessions)
                else:
                    logger.warning(
                        "index file %s holds %d vectors that do not match the database's %d items; rebuilding",
                        path,
                        len(store),
                        len(ids),
                    )
        else:
            logger.info("no index file at %s; building it from the database (%d items)", path, len(ids))
        store = cls._build(dim, kind, storage, ids, sessions)
        store.attach_vector_source(database_source(sessions, dim))
        gallery = cls(store, path, sessions)
        gallery.rebuilt = True
        gallery._saved_generation = None
        gallery.save()
        return gallery

    @staticmethod
    def _build(
        dim: int, kind: str, storage: str, ids: np.ndarray, sessions: sessionmaker[Session]
    ) -> VectorStore:
        index = create_store(dim, kind, storage=storage)
        with sessions() as session:
            if kind != "flat" and len(ids):
                sample = ids[np.linspace(0, len(ids) - 1, min(len(ids), 50_000)).astype(np.int64)]
                vectors = db_vectors(session, sample, dim)
                index.train_if_needed(np.stack([vectors[int(i)] for i in sample]))
            for start in range(0, len(ids), REBUILD_CHUNK):
                present, vectors, attrs = db_items(session, ids[start : start + REBUILD_CHUNK], dim)
                index.add(present, vectors, attrs)
        return index

    def __len__(self) -> int:
        return len(self.store)

    def _upserts(self, attrs: ItemAttributes | None) -> bool:
        return self.shared and attrs is not None

    def add(self, ids: np.ndarray, vectors: np.ndarray, attrs: ItemAttributes | None = None) -> None:
        """Add these rows. A server engine that replaces rows by id (Milvus upsert) writes them whether or not
        held: they are the database's rows, so one that another replica's reconcile wrote first is harmless."""
        ids, vectors = np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32)
        if self._upserts(attrs):
            self.store.upsert(ids, vectors, attrs)
        else:
            self.store.add(ids, vectors, attrs)

    def add_new(self, ids, vectors, attrs: ItemAttributes | None = None) -> int:
        """Add the ids not held yet (a sync may have added some of them first); returns how many were added
        (a server engine that upserts: how many were written). ``attrs``: camera and capture time per id, for
        an engine that filters inside (Milvus)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        if self._upserts(attrs):  # no "held?" round trip: see add
            self.add(ids, vectors, attrs)
            return len(ids)
        with self._add_lock:
            held = self.store.ids_in_range(int(ids.min()), int(ids.max()) + 1)  # one query on a server
            new = ~np.isin(ids, held)
            if new.any():
                self.add(ids[new], np.asarray(vectors, dtype=np.float32)[new], _subset(attrs, new))
            return int(new.sum())

    def sync(self, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """Catch up with what other processes committed (see the module docstring); (removed, added).
        Cheap when nothing changed: one statement (the deletion counter and the highest id)."""
        if self.shared:
            return 0, 0
        with self._sync_lock:
            deletes, highest = self._change_marks(sessions)
            if deletes == self._deletes_seen and highest <= self._cursor:
                return 0, 0  # nothing committed or deleted since the last look: one read
            with sessions() as session:
                added = 0
                while highest > self._cursor:
                    ids, vectors = repository.vectors_after(session, self._cursor, SYNC_CHUNK)
                    if not len(ids):
                        break
                    dim = self.store.dim
                    for vector in vectors:
                        if vector.shape[0] != dim:
                            raise ValueError(
                                f"a stored embedding has {vector.shape[0]} values, expected {dim}"
                            )
                    added += self.add_new(ids, np.stack(vectors))
                    self._cursor = int(ids[-1])
                    if len(ids) < SYNC_CHUNK:
                        break
            removed = 0
            if deletes != self._deletes_seen:
                held = self.store.ids()  # before the truth: every id held is committed, so none is lost
                with sessions() as session:
                    truth = db_ids(session)
                extra = np.setdiff1d(held, truth, assume_unique=True)
                removed = self.remove(extra)
                self._deletes_seen = deletes
            if added or removed:
                logger.debug("index synced with the database: %d removed, %d added", removed, added)
            return removed, added

    def _change_marks(self, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """repository.change_marks in one round trip on PostgreSQL (a pooled session would add a ping, BEGIN
        and ROLLBACK: about 4x the time per search on a loaded machine); a broken connection is replaced."""
        engine = sessions.kw.get("bind")
        if engine is None or engine.dialect.name != "postgresql":
            with sessions() as session:
                return repository.change_marks(session)
        for attempt in (1, 2):
            try:
                if self._probe is None:
                    self._probe = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                return repository.change_marks(self._probe)
            except DBAPIError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release sync's connection (shut-down)."""
        if self._probe is not None:
            try:
                self._probe.close()
            except DBAPIError:
                pass
            self._probe = None

    def remove(self, ids) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids):
            return 0
        return self.store.remove(ids)

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None, where: ItemFilter | None = None
    ):
        """Top k (scores, ids) among the allowed ids and the items matching ``where``; an engine that holds
        the items' cameras and times filters itself, for the others ``where`` is resolved to ids here."""
        if where is not None and not where.restricts:
            where = None
        if where is not None and not self.store.filters_inside:
            if self.sessions is None:
                raise ValueError("a camera / time filter needs the database (GalleryIndex without sessions)")
            with self.sessions() as session:
                matching = repository.ids_where(
                    session,
                    where.cameras,
                    None if where.start_us is None else from_microseconds(where.start_us),
                    None if where.end_us is None else from_microseconds(where.end_us),
                )
            allowed_ids = matching if allowed_ids is None else np.intersect1d(matching, allowed_ids)
            where = None
        if allowed_ids is not None and not len(allowed_ids):
            q = 1 if np.ndim(query) == 1 else len(query)
            return np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)
        if allowed_ids is not None:
            k = min(k, len(allowed_ids))  # no more than can qualify (the store pads the rest)
        if where is None:
            return self.store.search(query, k, allowed_ids=allowed_ids)
        return self.store.search(query, k, allowed_ids=allowed_ids, where=where)

    def ids(self) -> np.ndarray:
        return self.store.ids()

    def reconcile(self, sessions: sessionmaker[Session], range_size: int = RECONCILE_RANGE) -> tuple[int, int]:
        """Bring the index in step with the database (rows deleted or added by another process or replica,
        e.g. `reid purge` while the service runs): ids the database lacks are removed, vectors it has are
        backfilled from the stored embeddings. The id space is walked in ranges of ``range_size`` database
        ids, so neither side's ids travel all at once (a server store is asked for one range at a time).
        Call with the ingest lock held (no ingest of this process is then between its commit and its
        index add). Returns (removed, added)."""
        held_all = None if self.shared else self.store.ids()  # in-process: one cheap copy
        removed = added = 0
        low = -ID_SPACE_END
        after = None
        while True:
            with sessions() as session:
                truth = repository.ids_after(session, after, range_size)
            last_range = len(truth) < range_size
            high = ID_SPACE_END if last_range else int(truth[-1]) + 1
            if held_all is None:
                have = self.store.ids_in_range(low, high)
            else:
                have = held_all[np.searchsorted(held_all, low) : np.searchsorted(held_all, high)]
            extra = np.setdiff1d(have, truth, assume_unique=True)
            missing = np.setdiff1d(truth, have, assume_unique=True)
            if len(extra):
                removed += self.remove(extra)
            if len(missing):
                with sessions() as session:
                    present, vectors, attrs = db_items(session, missing, self.store.dim)
                if len(present):
                    added += self.add_new(present, vectors, attrs)
            if last_range:
                break
            low, after = high, int(truth[-1])
        if removed or added:
            logger.warning("index reconciled with the database: %d removed, %d added", removed, added)
        return removed, added

    def save(self) -> None:
        """Save when changed since the last save (or the file is missing). A change made while saving
        leaves the index dirty, so it is saved next time."""
        generation = self.store.generation
        if generation == self._saved_generation and self.path.exists():
            return
        self.store.save(self.path)
        self._saved_generation = generation
        logger.debug("saved index (%d vectors) to %s", len(self), self.path)
