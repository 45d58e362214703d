"""Footfall from re-ID: grouping sightings into visitors, and counting sightings / visitors per time bucket.

Pure functions over numpy arrays (no database, no faiss), tested on hand-worked cases.

- ``assign_visitor``: the online rule used at ingest. A new sighting joins the visitor whose sightings
  within the time horizon match it best (a visitor's score is its best-matching sighting, or the mean
  of them with ``link="mean"``), if that score reaches the threshold; otherwise it starts a new visitor.
- ``cluster_visitors``: the offline regrouping behind ``reid recluster``. Average-linkage agglomerative
  clustering on cosine similarity, stopped at the threshold, where two sightings further apart in time
  than the horizon may never share a cluster. Person tracks (video ingest) start as one cluster each
  and overlapping tracks of one camera never merge (``overlapping_visitors`` is the same rule online). Nearest-neighbour chain, O(n^2) time and memory per
  block; independent blocks are cut at time gaps longer than the horizon (exact), and a block still
  larger than ``max_block`` items is cut into consecutive time slices (logged: links across a cut are lost).
- ``footfall_report``: GET /metrics's answer from counts the database made: sightings and unique visitors
  per non-empty bucket x camera cell (sparse), per camera, per bucket and over the whole window, a visitor
  counted once in each; ``cells_limit_advice`` refuses too many buckets x cameras with numbers to narrow by.

How a grouping compares with known identities (pairwise precision / recall, count error) is measured by
training.grouping_metrics, beside the other evaluation metrics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta

import numpy as np

logger = logging.getLogger(__name__)

BUCKET_UNITS = {"m": 60, "h": 3600, "d": 86400}
MAX_BUCKET_S = 366 * 86400
DEFAULT_MAX_BUCKETS = 10_000
DEFAULT_MAX_BLOCK = 6000
_BUCKET_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")  # anchored: the OpenAPI pattern is this text


# --------------------------------------------------------------------------- buckets
def parse_bucket(text: str) -> int:
    """``"15m"`` / ``"1h"`` / ``"1d"`` (any ``N`` followed by m, h or d) -> seconds. ValueError otherwise.

    Strict like the API's other parameters: no spaces, lower-case units only (``1M`` would read as a month).
    """
    if not isinstance(text, str):
        raise ValueError(f"bucket must be a string like 15m, 1h or 1d, got {text!r}")
    match = _BUCKET_RE.fullmatch(text)
    if not match:
        raise ValueError(
            f"bucket must be a whole number followed by m, h or d, nothing else (e.g. 15m, 1h, 1d), got {text!r}"
        )
    seconds = int(match.group(1)) * BUCKET_UNITS[match.group(2)]
    if seconds > MAX_BUCKET_S:
        raise ValueError(f"bucket {text!r} is longer than 366 days")
    return seconds


def bucket_edges(
    start: datetime, end: datetime, bucket_s: int, *, max_buckets: int = DEFAULT_MAX_BUCKETS
) -> list[datetime]:
    """Edges ``[start, start + b, ..., end]`` of the buckets covering [start, end); the last may be shorter.

    Buckets are aligned to ``start``. ValueError for naive datetimes, end <= start, a non-positive
    bucket, or more than ``max_buckets`` buckets.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if int(bucket_s) <= 0:
        raise ValueError(f"bucket must be positive, got {bucket_s} s")
    span = (end - start).total_seconds()
    count = int(np.ceil(span / bucket_s))
    if count > max_buckets:
        raise ValueError(f"{count} buckets of {bucket_s} s between start and end; at most {max_buckets}")
    edges = [start + timedelta(seconds=i * int(bucket_s)) for i in range(count)]
    edges.append(end)
    return edges


# --------------------------------------------------------------------------- online assignment
def assign_visitor(
    vector: np.ndarray,
    captured_at: float,
    candidates_vectors: np.ndarray,
    candidates_visitor_ids: np.ndarray,
    candidates_times: np.ndarray,
    threshold: float,
    horizon_s: float,
    *,
    link: str = "max",
    exclude: Collection[int] = (),
) -> int | None:
    """The visitor a new sighting belongs to, or None for a new visitor.

    vector (d,) unit-norm, or (k, d): the k crops of one track, decided together; captured_at epoch
    seconds; candidates_vectors (n, d); candidates_visitor_ids (n,) int; candidates_times (n,) epoch
    seconds. Candidates further than ``horizon_s`` from ``captured_at`` (either side) are ignored. Each
    visitor scores the best similarity among its sightings (``link="max"``) or their mean
    (``link="mean"``), per crop; a track's score is the mean of its crops' scores (so one odd crop does not
    decide it, and the score keeps the scale of one crop's). The best-scoring visitor is returned if its
    score >= threshold (ties: the smaller visitor id). Visitors in ``exclude`` are never chosen (a
    cannot-link, see ``overlapping_visitors``).
    """
    if link not in ("max", "mean"):
        raise ValueError(f"link must be 'max' or 'mean', got {link!r}")
    queries = np.asarray(vector, dtype=np.float32)
    queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
    vectors = np.asarray(candidates_vectors, dtype=np.float32).reshape(-1, queries.shape[1])
    visitors = np.asarray(candidates_visitor_ids, dtype=np.int64).reshape(-1)
    times = np.asarray(candidates_times, dtype=np.float64).reshape(-1)
    if not (len(vectors) == len(visitors) == len(times)):
        raise ValueError(
            f"candidates disagree in length: {len(vectors)} vectors, {len(visitors)} visitor ids, {len(times)} times"
        )
    near = np.abs(times - float(captured_at)) <= horizon_s
    if len(exclude):
        near &= ~np.isin(visitors, np.fromiter(exclude, dtype=np.int64))
    if not near.any():
        return None
    scores = vectors[near] @ queries.T  # (sightings, crops)
    labels, inverse = np.unique(visitors[near], return_inverse=True)
    if link == "max":
        per_visitor = np.full((len(labels), len(queries)), -np.inf)
        np.maximum.at(per_visitor, inverse, scores)
    else:
        per_visitor = np.zeros((len(labels), len(queries)))
        np.add.at(per_visitor, inverse, scores)
        per_visitor /= np.bincount(inverse)[:, None]
    per_visitor = per_visitor.mean(axis=1)
    best = int(np.argmax(per_visitor))  # labels are sorted: ties go to the smaller id
    return int(labels[best]) if per_visitor[best] >= threshold else None


def overlapping_visitors(span: tuple[float, float], others: Iterable[tuple[int, float, float]]) -> set[int]:
    """Cannot-link for tracks: the visitors of ``others`` (visitor id, first, last epoch seconds: other
    tracks of the same camera) whose time span overlaps ``span`` (first, last). One camera cannot see one
    person on two tracks at the same moment, so those visitors are someone else."""
    lo, hi = span
    return {int(visitor) for visitor, first, last in others if first <= hi and lo <= last}


def assign_online(
    vectors: np.ndarray, times: np.ndarray, threshold: float, horizon_s: float, *, link: str = "max"
) -> np.ndarray:
    """Run ``assign_visitor`` over sightings in capture order, as the service does at ingest.

    Returns labels (n,): each visitor is named after the index of its first sighting.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    labels = np.full(len(times), -1, dtype=np.int64)
    first = 0  # sightings order[first:i] are within the horizon before sighting i
    for position, i in enumerate(order):
        while times[order[first]] < times[i] - horizon_s:
            first += 1
        window = order[first:position]
        match = assign_visitor(
            vectors[i],
            times[i],
            vectors[window],
            labels[window],
            times[window],
            threshold,
            horizon_s,
            link=link,
        )
        labels[i] = i if match is None else match
    return labels


# --------------------------------------------------------------------------- offline clustering
def cluster_visitors(
    vectors: np.ndarray,
    times: np.ndarray,
    cameras: np.ndarray | None,
    threshold: float,
    horizon_s: float,
    *,
    tracks: np.ndarray | None = None,
    max_block: int = DEFAULT_MAX_BLOCK,
) -> np.ndarray:
    """Group sightings into visitors. vectors (n, d) unit-norm, times (n,) epoch seconds -> labels (n,).

    Average-linkage agglomerative clustering on cosine similarity: two clusters merge while the mean
    similarity over all their cross pairs is >= threshold, and never when any cross pair is further
    apart in time than ``horizon_s``. A label is the index of the cluster's earliest sighting (ties: the
    smaller index), so labels are stable and comparable to ``assign_online``'s.

    ``tracks`` (n,) person-track references (None: not from a track) add two rules: the sightings of
    one track are one visitor from the start (must-link), and two tracks of one camera (``cameras``,
    needed then) whose time spans overlap are never one visitor (cannot-link).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    n = len(times)
    if vectors.ndim != 2 or len(vectors) != n:
        raise ValueError(f"vectors must be (n, d) with n = {n} times, got shape {vectors.shape}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if max_block < 2:
        raise ValueError(f"max_block must be >= 2, got {max_block}")
    order = np.argsort(times, kind="stable")
    labels = np.empty(n, dtype=np.int64)
    gaps = np.flatnonzero(np.diff(times[order]) > horizon_s) + 1
    for block in np.split(order, gaps):
        if len(block) > max_block:
            logger.warning(
                "clustering %d sightings within one horizon-connected span in slices of %d; "
                "visitors crossing a slice boundary are split",
                len(block),
                max_block,
            )
        for start in range(0, len(block), max_block):
            part = block[start : start + max_block]
            groups = _average_linkage(
                vectors[part],
                times[part],
                threshold,
                horizon_s,
                None if tracks is None else np.asarray(tracks, dtype=object)[part],
                None if cameras is None else np.asarray(cameras, dtype=object)[part],
            )
            for group in groups:
                members = part[group]
                labels[members] = members[np.lexsort((members, times[members]))[0]]
    return labels


def _track_groups(tracks: np.ndarray | None, m: int) -> list[list[int]]:
    """Start clusters: one per track (its rows), one per row without a track; in first-row order."""
    if tracks is None:
        return [[i] for i in range(m)]
    groups: dict[object, list[int]] = {}
    for i, track in enumerate(tracks.tolist()):
        groups.setdefault(i if track is None else ("track", track), []).append(i)
    return sorted(groups.values(), key=lambda rows: rows[0])


def _average_linkage(
    vectors: np.ndarray,
    times: np.ndarray,
    threshold: float,
    horizon_s: float,
    tracks: np.ndarray | None = None,
    cameras: np.ndarray | None = None,
) -> list:
    """Nearest-neighbour-chain average linkage stopped at ``threshold``; returns lists of row indices.

    Similarities are kept as sums over cross pairs (``total``) with pair counts from cluster sizes;
    pairs beyond the horizon make the whole cross sum -inf (cannot link). Reducible linkage, so stopping
    a chain whose best neighbour is below the threshold gives the same groups as the full dendrogram cut.
    With ``tracks``, each track starts as one cluster, and overlapping tracks of one camera cannot link.
    """
    if tracks is not None and all(t is None for t in tracks.tolist()):
        tracks = None
    groups = _track_groups(tracks, len(vectors))
    m = len(groups)
    if m == 1:
        return [np.array(groups[0])]
    if tracks is None:
        total = vectors @ vectors.T  # float32: a few thousand squared stays in memory
        for row in range(0, m, 1024):
            far = np.abs(times[row : row + 1024, None] - times[None, :]) > horizon_s
            total[row : row + 1024][far] = -np.inf
    else:  # sums over cross pairs of groups = products of the groups' vector sums
        sums = np.stack([vectors[g].sum(axis=0) for g in groups])
        total = sums @ sums.T
        first = np.array([times[g].min() for g in groups])
        last = np.array([times[g].max() for g in groups])
        far = np.maximum(last[:, None] - first[None, :], last[None, :] - first[:, None]) > horizon_s
        total[far] = -np.inf
        if cameras is not None:
            tracked = np.array([tracks[g[0]] is not None for g in groups])
            camera = np.array([cameras[g[0]] for g in groups], dtype=object)
            overlap = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
            total[
                overlap & (camera[:, None] == camera[None, :]) & tracked[:, None] & tracked[None, :]
            ] = -np.inf
    np.fill_diagonal(total, -np.inf)
    size = np.array([len(g) for g in groups], dtype=np.float32)
    members: list[list[int] | None] = [list(g) for g in groups]
    active = np.ones(m, dtype=bool)
    done: list[np.ndarray] = []
    chain: list[int] = []
    while active.any():
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        top = chain[-1]
        with np.errstate(invalid="ignore"):
            similarity = total[top] / (size[top] * size)
        similarity[~active] = -np.inf
        similarity[top] = -np.inf
        previous = chain[-2] if len(chain) > 1 else -1
        best = int(np.argmax(similarity))
        if previous >= 0 and similarity[previous] >= similarity[best]:
            best = previous  # prefer the chain's previous element on ties (guarantees termination)
        if similarity[best] < threshold:
            # nothing will ever merge with `top` at >= threshold: average of values < threshold stays below
            done.append(np.array(members[top]))
            active[top] = False
            chain.pop()
            continue
        if best == previous:
            chain.pop()
            chain.pop()
            a, b = sorted((top, best))
            total[a] += total[b]
            total[:, a] = total[a]
            total[a, a] = -np.inf
            size[a] += size[b]
            members[a] += members[b]
            members[b] = None
            active[b] = False
            total[b] = -np.inf
            total[:, b] = -np.inf
        else:
            chain.append(best)
    return done


# --------------------------------------------------------------------------- aggregation
def cells_limit_advice(span_s: float, bucket_s: int, n_cameras: int, max_cells: int) -> str | None:
    """None when ceil(span / bucket) buckets x n_cameras cameras is at most ``max_cells``; otherwise why not
    and the ways to narrow the request, with numbers: the smallest bucket, the longest window, the most
    cameras that fit."""
    n_buckets = max(1, int(np.ceil(span_s / bucket_s)))
    cells = n_buckets * n_cameras
    if cells <= max_cells:
        return None
    ways = []
    fitting_buckets = max_cells // n_cameras
    if fitting_buckets >= 1:
        needed = span_s / fitting_buckets  # rounded up to whole days, hours or minutes
        unit = next(size for size in (86400, 3600, 60) if needed >= size or size == 60)
        smallest = int(np.ceil(needed / unit)) * unit
        ways.append(f"a bucket of at least {_duration(smallest, bucket=True)}")
        ways.append(f"a window of at most {_duration(fitting_buckets * bucket_s)} at this bucket")
    fitting_cameras = max_cells // n_buckets
    if fitting_cameras >= 1:
        ways.append(f"at most {fitting_cameras} camera_id filter{'s' if fitting_cameras > 1 else ''}")
    return (
        f"{n_buckets} buckets x {n_cameras} cameras = {cells} cells, over the limit of {max_cells}; "
        f"ask for {' or '.join(ways) if ways else 'fewer cameras'}"
    )


def _duration(seconds: int, *, bucket: bool = False) -> str:
    """Seconds as a bucket (``90m``, ``2h``, ``3d``: the largest unit that divides) or as a window (``2 days 5 h``)."""
    if bucket:
        for unit, size in (("d", 86400), ("h", 3600)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds // 60}m"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    parts = [f"{days} days" if days != 1 else "1 day"] if days else []
    if hours or rest >= 60 or not parts:
        parts.append(f"{hours} h" if not rest else f"{hours} h {rest // 60} min")
    return " ".join(parts)


def footfall_report(
    edges: list[datetime],
    cameras: list[str],
    cells: list[tuple[int, str, int, int]],
    by_bucket: dict[int, tuple[int, int]],
    by_camera: dict[str, tuple[int, int]],
    total: tuple[int, int],
) -> dict:
    """The answer of GET /metrics from counts (``repository.footfall_by_bucket`` / ``footfall_by_camera``).

    ``series`` is sparse: one row per bucket x camera with at least one sighting (a missing cell is zero),
    buckets in time order, cameras sorted within a bucket; ``totals.by_bucket`` lists every bucket (zeros
    included) and ``totals.by_camera`` every camera of ``cameras``. Times are ISO 8601 UTC (+00:00).
    Returns ``{"series": [...], "totals": {"sightings", "unique_visitors", "by_camera", "by_bucket"}}``.
    """
    iso = [_iso(e) for e in edges]
    series = [
        {
            "bucket_start": iso[b],
            "bucket_end": iso[b + 1],
            "camera_id": camera,
            "sightings": int(n),
            "unique_visitors": int(unique),
        }
        for b, camera, n, unique in cells
    ]
    totals = {
        "sightings": int(total[0]),
        "unique_visitors": int(total[1]),
        "by_camera": {camera: _pair(by_camera.get(camera, (0, 0))) for camera in cameras},
        "by_bucket": [
            {
                "bucket_start": iso[b],
                "bucket_end": iso[b + 1],
                **_pair(by_bucket.get(b, (0, 0))),
            }
            for b in range(len(edges) - 1)
        ],
    }
    return {"series": series, "totals": totals}


CSV_COLUMNS = ("bucket_start", "bucket_end", "camera_id", "sightings", "unique_visitors")


def report_csv(answer: dict) -> str:
    """GET /metrics as CSV, the same numbers as its JSON: per bucket one row per camera (zeros included),
    then the all-camera row (camera_id empty); at the end the whole window per camera and for all cameras."""
    import csv
    import io

    cells = {(row["bucket_start"], row["camera_id"]): row for row in answer["series"]}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    totals = answer["totals"]
    for bucket in totals["by_bucket"]:
        start, end = bucket["bucket_start"], bucket["bucket_end"]
        for camera in answer["cameras"]:
            row = cells.get((start, camera), {"sightings": 0, "unique_visitors": 0})
            writer.writerow((start, end, camera, row["sightings"], row["unique_visitors"]))
        writer.writerow((start, end, "", bucket["sightings"], bucket["unique_visitors"]))
    for camera in answer["cameras"]:
        counts = totals["by_camera"][camera]
        writer.writerow((answer["start"], answer["end"], camera, counts["sightings"], counts["unique_visitors"]))
    writer.writerow((answer["start"], answer["end"], "", totals["sightings"], totals["unique_visitors"]))
    return out.getvalue()


def _pair(counts: tuple[int, int]) -> dict:
    return {"sightings": int(counts[0]), "unique_visitors": int(counts[1])}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
