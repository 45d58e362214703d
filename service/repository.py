"""Gallery data access: the reads and writes of gallery_items that the service needs, written once.

Functions over a caller's Session (the caller owns the transaction: a read session, or
`db.write_session` when it writes). Portable SQLAlchemy only, nothing SQLite-specific, so that
another engine (PostgreSQL) plugs in through the URL: lists of ids or hashes go to the database in
chunks of ID_CHUNK bound parameters (SQLite builds before 3.32 allow 999 per statement; PostgreSQL
allows 65,535), and embeddings are decoded in one place (`tables.decode_embedding`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, delete, func, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from service.queries import filter_items
from service.tables import GalleryItem, ServiceState, decode_embedding

ID_CHUNK = 900


def chunked(values: Iterable[Any], size: int = ID_CHUNK) -> Iterator[list[Any]]:
    """`values` in lists of at most `size` (numpy integers become Python ints)."""
    chunk: list[Any] = []
    for value in values:
        chunk.append(int(value) if isinstance(value, np.integer) else value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rows_by_id(session: Session, columns: Sequence[Any], ids: Iterable[int]) -> Iterator[Row]:
    """The rows (these columns) of the items with these ids that exist, chunk by chunk, in no set order."""
    for chunk in chunked(ids):
        yield from session.execute(select(*columns).where(GalleryItem.id.in_(chunk)))


def vectors_by_id(session: Session, ids: Iterable[int]) -> dict[int, np.ndarray]:
    """id -> stored embedding, for the ids that exist."""
    return {
        row.id: decode_embedding(row.embedding)
        for row in rows_by_id(session, (GalleryItem.id, GalleryItem.embedding), ids)
    }


def index_rows(session: Session, ids: Iterable[int]) -> dict[int, tuple[np.ndarray, str, datetime]]:
    """id -> (stored embedding, camera id, capture time): what a vector store keeps, for the ids that exist."""
    columns = (GalleryItem.id, GalleryItem.embedding, GalleryItem.camera_id, GalleryItem.captured_at)
    return {
        row.id: (decode_embedding(row.embedding), row.camera_id, row.captured_at)
        for row in rows_by_id(session, columns, ids)
    }


def ids_after(session: Session, after: int | None, limit: int) -> np.ndarray:
    """Up to `limit` item ids greater than `after` (None: from the first), ascending: keyset pages."""
    query = select(GalleryItem.id).order_by(GalleryItem.id).limit(limit)
    if after is not None:
        query = query.where(GalleryItem.id > after)
    return np.fromiter(session.execute(query).scalars(), dtype=np.int64)


def stored_vector(session: Session, item_id: int) -> np.ndarray | None:
    """The embedding of one item (a writable copy), or None when there is no such item."""
    blob = session.execute(select(GalleryItem.embedding).where(GalleryItem.id == item_id)).scalar()
    return None if blob is None else decode_embedding(blob).copy()


def all_ids(session: Session) -> np.ndarray:
    """Every item id, ascending."""
    return np.fromiter(
        session.execute(select(GalleryItem.id).order_by(GalleryItem.id)).scalars(), dtype=np.int64
    )


# service_state key of a counter that every deletion of items increments (in the deleting transaction), so
# another process sees "something was deleted since I last looked" with one primary-key read.
DELETES_KEY = "gallery_deletes"


def deletes_generation(session: Session) -> int:
    """How many deleting transactions the gallery has seen (0 before the first)."""
    value = session.execute(select(ServiceState.value).where(ServiceState.key == DELETES_KEY)).scalar()
    return int(value) if value is not None else 0


def change_marks(session: Session | Connection) -> tuple[int, int]:
    """(deletion counter, highest item id) in one statement: what GalleryIndex.sync compares first."""
    deletes = select(ServiceState.value).where(ServiceState.key == DELETES_KEY).scalar_subquery()
    highest = select(func.coalesce(func.max(GalleryItem.id), 0)).scalar_subquery()
    value, top = session.execute(select(deletes, highest)).one()
    return (int(value) if value is not None else 0), int(top)


# service_state key of the vector store's write watermark: the Milvus timestamp of the newest insert / delete any
# replica acknowledged (GalleryIndex records it after each write, searches read it; milvus_store's docstring)
VECTOR_WATERMARK_KEY = "vector_write_ts"


def vector_watermark(session: Session | Connection) -> int:
    """The newest acknowledged vector-store write's timestamp (0 before the first)."""
    value = session.execute(select(ServiceState.value).where(ServiceState.key == VECTOR_WATERMARK_KEY)).scalar()
    return int(value) if value is not None else 0


def raise_vector_watermark(session: Session, ts: int) -> None:
    """Raise the watermark to at least ts; call in a write_session (the write lock makes read-then-write safe)."""
    state = session.get(ServiceState, VECTOR_WATERMARK_KEY)
    if state is None:
        session.add(ServiceState(key=VECTOR_WATERMARK_KEY, value=str(int(ts))))
    elif int(state.value) < int(ts):
        state.value = str(int(ts))
    session.flush()


def _bump_deletes(session: Session) -> None:
    """Called inside the deleting write transaction (which holds the write lock: no lost update)."""
    state = session.get(ServiceState, DELETES_KEY)
    if state is None:
        session.add(ServiceState(key=DELETES_KEY, value="1"))
    else:
        state.value = str(int(state.value) + 1)
    session.flush()


def vectors_after(session: Session, cursor: int, limit: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(ids ascending, their embeddings) of up to `limit` items with an id above `cursor`."""
    rows = session.execute(
        select(GalleryItem.id, GalleryItem.embedding)
        .where(GalleryItem.id > cursor)
        .order_by(GalleryItem.id)
        .limit(limit)
    ).all()
    return np.array([r.id for r in rows], dtype=np.int64), [decode_embedding(r.embedding) for r in rows]


def count(session: Session) -> int:
    return session.execute(select(func.count(GalleryItem.id))).scalar_one()


def ids_where(
    session: Session,
    cameras: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    visitor_id: int | None = None,
) -> np.ndarray:
    """Ids of the items of these cameras, captured in [start, end), of this visitor (None = any)."""
    query = filter_items(select(GalleryItem.id), cameras, start, end, visitor_id)
    return np.fromiter(session.execute(query).scalars(), dtype=np.int64)


def page(
    session: Session,
    cameras: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    visitor_id: int | None,
    *,
    limit: int,
    offset: int,
    track_ref: str | None = None,
) -> tuple[int, list[GalleryItem]]:
    """(how many items match, one page of them: newest capture first, then highest id)."""
    total = session.execute(
        filter_items(select(func.count(GalleryItem.id)), cameras, start, end, visitor_id, track_ref)
    ).scalar_one()
    rows = session.execute(
        filter_items(select(GalleryItem), cameras, start, end, visitor_id, track_ref)
        .order_by(GalleryItem.captured_at.desc(), GalleryItem.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    return total, list(rows)


def ids_with_visitor_between(session: Session, low: datetime, high: datetime) -> np.ndarray:
    """Ids of the items captured in [low, high] (both ends included) that have a visitor."""
    query = select(GalleryItem.id).where(
        GalleryItem.captured_at >= low, GalleryItem.captured_at <= high, GalleryItem.visitor_id.is_not(None)
    )
    return np.fromiter(session.execute(query).scalars(), dtype=np.int64)


def ids_captured_before(session: Session, cutoff: datetime) -> list[int]:
    return list(session.execute(select(GalleryItem.id).where(GalleryItem.captured_at < cutoff)).scalars())


def by_content_hash(session: Session, hashes: Iterable[str]) -> dict[str, tuple[int, int | None]]:
    """content hash -> (id, visitor_id) of the items stored under these hashes."""
    known: dict[str, tuple[int, int | None]] = {}
    for chunk in chunked(sorted(set(hashes))):
        rows = session.execute(
            select(GalleryItem.content_hash, GalleryItem.id, GalleryItem.visitor_id).where(
                GalleryItem.content_hash.in_(chunk)
            )
        )
        known.update({row.content_hash: (row.id, row.visitor_id) for row in rows})
    return known


class _EpochMicroseconds(FunctionElement):
    """A UTCDateTime column as whole microseconds since 1970-01-01 UTC: an exact integer on every dialect."""

    type = BigInteger()
    name = "epoch_microseconds"
    inherit_cache = True


@compiles(_EpochMicroseconds)
def _epoch_microseconds(element, compiler, **kw) -> str:  # PostgreSQL: EXTRACT gives an exact numeric
    (column,) = element.clauses
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(column, **kw)}) * 1000000 AS BIGINT)"


@compiles(_EpochMicroseconds, "sqlite")
def _epoch_microseconds_sqlite(element, compiler, **kw) -> str:
    # SQLite keeps the naive UTC time as text 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds from strftime,
    # microseconds from the text (julianday's double would be 40 us coarse).
    (column,) = element.clauses
    text = compiler.process(column, **kw)
    return f"(CAST(strftime('%s', {text}) AS INTEGER) * 1000000 + CAST(substr({text}, 21, 6) AS INTEGER))"


def _visitor():
    """The item's visitor; an item without one (should not happen) is its own visitor (-id never collides)."""
    return func.coalesce(GalleryItem.visitor_id, -GalleryItem.id)


def _counts():
    return func.count(GalleryItem.id), func.count(_visitor().distinct())


def footfall_by_camera(
    session: Session, cameras: Sequence[str] | None, start: datetime, end: datetime
) -> dict[str, tuple[int, int]]:
    """camera -> (sightings, unique visitors) in [start, end), for the cameras with at least one sighting."""
    query = filter_items(select(GalleryItem.camera_id, *_counts()), cameras, start, end)
    return {cam: (n, unique) for cam, n, unique in session.execute(query.group_by(GalleryItem.camera_id))}


@dataclass
class FootfallCounts:
    """Counted by the database, so the work in Python is bounded by the non-empty cells, not the items."""

    cells: list[tuple[int, str, int, int]]  # (bucket, camera, sightings, unique visitors), non-empty only
    by_bucket: dict[int, tuple[int, int]]  # bucket -> (sightings, unique visitors), non-empty only
    total: tuple[int, int]  # (sightings, unique visitors)


def footfall_by_bucket(
    session: Session, cameras: Sequence[str] | None, start: datetime, end: datetime, bucket_s: int
) -> FootfallCounts:
    """Sightings and unique visitors per bucket x camera, per bucket and in total over [start, end).

    Bucket b covers [start + b * bucket_s, start + (b + 1) * bucket_s), computed by the database in whole
    microseconds. Cells are in bucket order, cameras sorted within a bucket.
    """
    origin = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    bucket = ((_EpochMicroseconds(GalleryItem.captured_at) - origin) // (int(bucket_s) * 1_000_000)).label(
        "bucket"
    )
    cells = session.execute(
        filter_items(select(bucket, GalleryItem.camera_id, *_counts()), cameras, start, end)
        .group_by(bucket, GalleryItem.camera_id)
        .order_by(bucket, GalleryItem.camera_id)
    ).all()
    by_bucket = session.execute(
        filter_items(select(bucket, *_counts()), cameras, start, end).group_by(bucket)
    ).all()
    total = session.execute(filter_items(select(*_counts()), cameras, start, end)).one()
    return FootfallCounts(
        cells=[(int(b), cam, n, unique) for b, cam, n, unique in cells],
        by_bucket={int(b): (n, unique) for b, n, unique in by_bucket},
        total=(total[0], total[1]),
    )


def window_for_clustering(session: Session, start: datetime, end: datetime):
    """Items captured in [start, end) in capture order: (ids, vectors, epoch times, camera ids, track
    refs (None where the item has no track))."""
    rows = session.execute(
        filter_items(
            select(
                GalleryItem.id,
                GalleryItem.embedding,
                GalleryItem.captured_at,
                GalleryItem.camera_id,
                GalleryItem.track_ref,
            ),
            start=start,
            end=end,
        ).order_by(GalleryItem.captured_at, GalleryItem.id)
    ).all()
    ids = np.array([r.id for r in rows], dtype=np.int64)
    vectors = (
        np.stack([decode_embedding(r.embedding) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    )
    times = np.array([r.captured_at.timestamp() for r in rows], dtype=np.float64)
    cameras = np.array([r.camera_id for r in rows], dtype=object)
    tracks = np.array([r.track_ref for r in rows], dtype=object)
    return ids, vectors, times, cameras, tracks


def set_visitor(session: Session, ids: Iterable[int], visitor_id: int) -> None:
    for chunk in chunked(ids):
        session.execute(update(GalleryItem).where(GalleryItem.id.in_(chunk)).values(visitor_id=visitor_id))


def delete_rows(session: Session, ids: Iterable[int]) -> tuple[list[int], list[str]]:
    """Delete the items with these ids; returns (the ids that existed, ascending; their image and
    thumbnail paths)."""
    rows = list(
        rows_by_id(session, (GalleryItem.id, GalleryItem.image_path, GalleryItem.thumbnail_path), ids)
    )
    deleted = sorted(row.id for row in rows)
    for chunk in chunked(deleted):
        session.execute(delete(GalleryItem).where(GalleryItem.id.in_(chunk)))
    if deleted:
        _bump_deletes(session)
    return deleted, [p for row in rows for p in (row.image_path, row.thumbnail_path)]


def track_summaries(
    session: Session, refs: Iterable[str]
) -> dict[str, tuple[int | None, datetime, datetime]]:
    """Stored person tracks among `refs`: track ref -> (its visitor, first and last capture time)."""
    found: dict[str, tuple[int | None, datetime, datetime]] = {}
    for chunk in chunked(sorted(set(refs))):
        rows = session.execute(
            select(
                GalleryItem.track_ref,
                func.min(GalleryItem.visitor_id),
                func.min(GalleryItem.captured_at),
                func.max(GalleryItem.captured_at),
            )
            .where(GalleryItem.track_ref.in_(chunk))
            .group_by(GalleryItem.track_ref)
        ).all()
        found.update({ref: (visitor, first, last) for ref, visitor, first, last in rows})
    return found


def camera_tracks_between(
    session: Session, camera_id: str, low: datetime, high: datetime
) -> list[tuple[str, int, datetime, datetime]]:
    """The person tracks of one camera with a crop captured in [low, high]: (track ref, visitor, first
    and last capture time of those crops)."""
    rows = session.execute(
        select(
            GalleryItem.track_ref,
            func.min(GalleryItem.visitor_id),
            func.min(GalleryItem.captured_at),
            func.max(GalleryItem.captured_at),
        )
        .where(
            GalleryItem.camera_id == camera_id,
            GalleryItem.track_ref.is_not(None),
            GalleryItem.visitor_id.is_not(None),
            GalleryItem.captured_at >= low,
            GalleryItem.captured_at <= high,
        )
        .group_by(GalleryItem.track_ref)
    ).all()
    return [(ref, int(visitor), first, last) for ref, visitor, first, last in rows]
