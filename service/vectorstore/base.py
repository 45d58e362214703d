"""The vector-store interface the service programs against, whatever engine holds the vectors.

A vector store holds L2-normalised float32 vectors under int64 ids (gallery item ids) and answers
inner-product top-k queries. The database stays the source of truth: a store is a rebuildable
cache of its embeddings, and ``ids()`` / ``fingerprint()`` let the service check the two against
each other. Engines: ``FaissVectorStore`` (in-process faiss: flat / IVF / HNSW, fp32 or fp16
storage); ``MilvusVectorStore`` (a Milvus server or cluster: FLAT / HNSW / IVF_* indexes).

Filtering: ``search(..., allowed_ids=..., where=...)`` restricts the candidates to an id set and/or to
items matching an ``ItemFilter`` (cameras, capture-time window) and must still return the top k among
them whenever k qualifying ids are held. An engine that stores the items' attributes
(``filters_inside``: Milvus, given them by ``add(..., attributes=...)``) evaluates ``where`` itself; for
the others (faiss) the caller resolves ``where`` to ids in the database and passes ``allowed_ids``
(``GalleryIndex.search`` does this, so the service never asks which engine it has).

Thread safety: every method may be called from several threads; an implementation serialises what
needs serialising with one lock of its own (callers hold none).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.errors import ReidError

# ids (n,) int64 -> {id: float32 vector (dim,)} for the ids that still exist
VectorSource = Callable[[np.ndarray], dict[int, np.ndarray]]


@dataclass(frozen=True)
class ItemFilter:
    """Items of these cameras (empty: any), captured in [start_us, end_us) (microseconds since the epoch,
    UTC; None: unbounded)."""

    cameras: tuple[str, ...] = ()
    start_us: int | None = None
    end_us: int | None = None

    @property
    def restricts(self) -> bool:
        return bool(self.cameras) or self.start_us is not None or self.end_us is not None


@dataclass(frozen=True)
class ItemAttributes:
    """What an engine that filters inside keeps next to each vector: camera id and capture time (us)."""

    camera_ids: tuple[str, ...]
    captured_us: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.camera_ids) != len(self.captured_us):
            raise ValueError("camera_ids and captured_us must have the same length")


class SearchIncompleteError(ReidError):
    """A filtered search could not be completed exactly (fewer hits than qualifying items, and the exact
    fallback was not possible): the caller answers 'unavailable' rather than a silently short list."""


class VectorStoreFileError(ReidError):
    """A saved vector store is missing, truncated or corrupt (rebuild it from the database)."""


class VectorStore(ABC):
    """Inner-product top-k over unit vectors keyed by int64 ids. See the module docstring."""

    dim: int
    kind: str  # the engine's own name for its layout, e.g. "flat", "ivf", "hnsw"
    filters_inside = False  # True: search(where=...) is evaluated by the engine (add needs attributes)
    shared = False  # True: one copy every process uses (a server engine); save() writes a reference to it

    # ----------------------------------------------------------------- changes
    @abstractmethod
    def add(self, ids, vectors, attributes: ItemAttributes | None = None) -> None:
        """Add vectors (n, dim) under ids (n,). An id already held, or repeated in ``ids`` -> ValueError,
        and nothing of the call is added. ``attributes`` (camera, capture time per id) are required by an
        engine with ``filters_inside`` and ignored by the others."""

    @abstractmethod
    def upsert(self, ids, vectors, attributes: ItemAttributes | None = None) -> int:
        """Add these rows, replacing any row held under the same id (the database's rows written again: an
        ingest and another replica's reconcile); returns how many rows were written. Bad input (shapes, an id
        repeated in ``ids``, attributes missing where ``filters_inside``) -> ValueError and nothing is changed."""

    @abstractmethod
    def remove(self, ids) -> int:
        """Remove ids; ids not held are ignored. Returns how many were removed."""

    def train_if_needed(self, sample_vectors: np.ndarray) -> bool:
        """Give an engine that learns a layout (IVF) a sample before bulk loading; True if it trained."""
        return False

    def attach_vector_source(self, source: VectorSource | None) -> None:
        """Where exact float32 vectors can be read by id (the database, the source of truth). An engine
        that scans a reduced-precision copy re-scores its best candidates from it; others ignore it."""
        return None

    def attach_write_watermark(self, read: Callable[[], int], record: Callable[[int], None]) -> None:
        """Where a shared engine (a server every replica writes to) keeps the timestamp of the newest write any
        replica acknowledged: ``record(ts)`` after each write, ``read()`` before each search, so that a search
        on one replica sees what another acknowledged. Engines in the process ignore it."""
        return None

    def prepare(self) -> None:
        """Make now what the first search would otherwise make (e.g. a reduced-precision scan copy), so that
        the first search after start-up is not the slow one. Engines with nothing to make ignore it."""
        return None

    def set_search_params(self, **params) -> None:
        """Engine-specific speed / recall knobs (e.g. nprobe, ef_search); unknown knobs are ignored."""
        return None

    # ----------------------------------------------------------------- queries
    @abstractmethod
    def search(
        self, queries, k: int, allowed_ids=None, where: ItemFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: queries (q, dim) or (dim,) -> (scores (q, k) float32, ids (q, k) int64),
        best first. Where fewer than k ids qualify the rest is id -1, score -inf. With ``allowed_ids``
        only those ids are candidates (ids not held are ignored), and the result is filled whenever
        k of them are held. ``where`` (only with ``filters_inside``; else ValueError) further restricts
        the candidates to matching items, with the same filling rule."""

    def ids_in_range(self, low: int, high: int) -> np.ndarray:
        """The ids held in [low, high), sorted ascending (reconciliation walks the id space in ranges so
        that a large store never sends all its ids at once)."""
        held = self.ids()
        return held[(held >= low) & (held < high)]

    # ----------------------------------------------------------------- reconciliation
    @abstractmethod
    def ids(self) -> np.ndarray:
        """The ids held, sorted ascending (a copy)."""

    @abstractmethod
    def __len__(self) -> int: ...

    def count(self) -> int:
        return len(self)

    def __contains__(self, item_id: int) -> bool:
        held = self.ids()
        position = np.searchsorted(held, item_id)
        return bool(position < held.size and held[position] == item_id)

    def fingerprint(self) -> str:
        """``"<count>:<sha256 of the sorted ids>"``: equal iff two stores hold the same id set."""
        return id_fingerprint(self.ids())

    @property
    @abstractmethod
    def generation(self) -> int:
        """A counter that changes with every add / remove: unchanged since a save means nothing to save."""

    # ----------------------------------------------------------------- persistence
    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the store to ``path`` atomically (an engine with its own storage may write a reference)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike, **options) -> VectorStore:
        """Read what ``save`` wrote. Missing, truncated or corrupt -> VectorStoreFileError."""


def id_fingerprint(sorted_ids: np.ndarray) -> str:
    digest = hashlib.sha256(np.asarray(sorted_ids).astype("<i8").tobytes()).hexdigest()[:32]
    return f"{len(sorted_ids)}:{digest}"


def check_vectors(vectors, dim: int, name: str = "vectors") -> np.ndarray:
    """(n, dim) or (dim,) finite numbers -> a C-contiguous float32 (n, dim) array; else ValueError."""
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {np.shape(vectors)}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def check_ids(ids, name: str = "ids") -> np.ndarray:
    """A scalar or 1-d array of integers -> a C-contiguous int64 array; else ValueError."""
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array[None]
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of integers, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)
