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
none of this."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service import repository
from service.vectorstore import VectorStore, create_store, load_store

logger = logging.getLogger(__name__)

REBUILD_CHUNK = 4096
SYNC_CHUNK = 4096  # rows read per query when catching up with other processes' commits


def db_ids(session: Session) -> np.ndarray:
    return repository.all_ids(session)


def db_vectors(session: Session, ids: np.ndarray | list[int], dim: int) -> dict[int, np.ndarray]:
    """id -> stored embedding, for the ids that exist (each checked to have `dim` values)."""
    vectors = repository.vectors_by_id(session, ids)
    for vector in vectors.values():
        if vector.shape[0] != dim:
            raise ValueError(f"a stored embedding has {vector.shape[0]} values, expected {dim}")
    return vectors


def database_source(sessions: sessionmaker[Session], dim: int):
    """The store's exact-vector source: float32 embeddings read from the database by id."""

    def read(ids: np.ndarray) -> dict[int, np.ndarray]:
        with sessions() as session:
            return db_vectors(session, ids, dim)

    return read


class GalleryIndex:
    """A VectorStore plus the file it is saved to; ``dirty`` while it holds changes not yet saved."""

    def __init__(self, store: VectorStore, path: Path) -> None:
        self.store = store
        self.path = Path(path)
        self.rebuilt = False
        self._saved_generation: int | None = store.generation  # None: never saved
        self._add_lock = threading.Lock()  # check-then-add of add_new is atomic
        self._sync_lock = threading.Lock()
        # What sync has seen of the database: the highest item id, and the deletion counter.
        self._cursor = int(store.ids()[-1]) if len(store) else 0
        self._deletes_seen: int | None = None  # None: not tracking (sync compares all ids once)

    @property
    def shared(self) -> bool:
        """The store is one copy every process uses (nothing to keep in step here)."""
        return bool(getattr(self.store, "shared", False))

    @property
    def dirty(self) -> bool:
        return self._saved_generation != self.store.generation

    @classmethod
    def open(
        cls, path: Path, dim: int, kind: str, sessions: sessionmaker[Session], storage: str = "fp32"
    ) -> GalleryIndex:
        """Load the saved index if it holds exactly the database's ids, else rebuild it from the database.

        An fp16 store re-scores from the database (``attach_vector_source``); bf16 from its own float32."""
        path = Path(path)
        with sessions() as session:  # the counter before the ids: a delete in between is seen by sync
            deletes = repository.deletes_generation(session)
            ids = db_ids(session)
        gallery = cls._open(path, dim, kind, sessions, storage, ids)
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
                    return cls(store, path)
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
        gallery = cls(store, path)
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
                chunk = ids[start : start + REBUILD_CHUNK]
                vectors = db_vectors(session, chunk, dim)
                index.add(chunk, np.stack([vectors[int(i)] for i in chunk]).astype(np.float32))
        return index

    def __len__(self) -> int:
        return len(self.store)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.store.add(np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32))

    def add_new(self, ids, vectors) -> int:
        """Add the ids not held yet (a sync may have added some of them first); returns how many were added."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        with self._add_lock:
            new = np.array([i not in self.store for i in ids.tolist()], dtype=bool)
            if new.any():
                self.add(ids[new], np.asarray(vectors, dtype=np.float32)[new])
            return int(new.sum())

    def sync(self, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """Catch up with what other processes committed (see the module docstring); (removed, added).
        Cheap when nothing changed: two indexed reads."""
        if self.shared:
            return 0, 0
        with self._sync_lock:
            with sessions() as session:
                deletes = repository.deletes_generation(session)
                added = 0
                while True:
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

    def remove(self, ids) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids):
            return 0
        return self.store.remove(ids)

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        return self.store.search(query, k, allowed_ids=allowed_ids)

    def ids(self) -> np.ndarray:
        return self.store.ids()

    def reconcile(self, sessions: sessionmaker[Session]) -> tuple[int, int]:
        """Bring the index in step with the database (rows deleted or added by another process, e.g.
        `reid purge` while the service runs). Call with the ingest lock held (no ingest is then between
        its commit and its index add). Returns (removed, added)."""
        with sessions() as session:
            truth = db_ids(session)
        have = self.store.ids()
        extra = np.setdiff1d(have, truth, assume_unique=True)
        missing = np.setdiff1d(truth, have, assume_unique=True)
        if len(extra):
            self.remove(extra)
        if len(missing):
            with sessions() as session:
                vectors = db_vectors(session, missing, self.store.dim)
            present = np.array([i for i in missing.tolist() if i in vectors], dtype=np.int64)
            if len(present):
                self.add_new(present, np.stack([vectors[int(i)] for i in present]))
        if len(extra) or len(missing):
            logger.warning(
                "index reconciled with the database: %d removed, %d added", len(extra), len(missing)
            )
        return len(extra), len(missing)

    def save(self) -> None:
        """Save when changed since the last save (or the file is missing). A change made while saving
        leaves the index dirty, so it is saved next time."""
        generation = self.store.generation
        if generation == self._saved_generation and self.path.exists():
            return
        self.store.save(self.path)
        self._saved_generation = generation
        logger.debug("saved index (%d vectors) to %s", len(self), self.path)
