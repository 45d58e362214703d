"""service.footfall: buckets, online visitor assignment, offline clustering, aggregation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from service import footfall, repository
from service.db import make_engine, make_sessionmaker, upgrade_database
from service.footfall import (
    assign_online,
    assign_visitor,
    bucket_edges,
    cells_limit_advice,
    cluster_visitors,
    footfall_report,
    parse_bucket,
)
from service.tables import GalleryItem
from training.grouping_metrics import count_error, pairwise_precision_recall

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def unit(*rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    pairs_a = a[:, None] == a[None, :]
    pairs_b = b[:, None] == b[None, :]
    return bool((pairs_a == pairs_b).all())


# ----------------------------------------------------------------------------- buckets
@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("1h", 3600), ("1d", 86400), ("90m", 5400), ("366d", 366 * 86400)]
)
def test_parse_bucket(text, seconds):
    assert parse_bucket(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "15", "m", "0m", "-1h", "1.5h", "1w", "10s", "h1", "400d", None, 15, " 2h", "2h ", "2h\n", "1H", "1M", "+1h", "01h"],
)
def test_parse_bucket_rejects(text):
    with pytest.raises(ValueError):
        parse_bucket(text)


def test_bucket_edges():
    edges = bucket_edges(T0, T0 + timedelta(minutes=50), 900)
    assert [(e - T0).total_seconds() / 60 for e in edges] == [0, 15, 30, 45, 50]  # last one shorter
    assert bucket_edges(T0, T0 + timedelta(hours=2), 3600) == [
        T0,
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
    ]
    with pytest.raises(ValueError, match="after"):
        bucket_edges(T0, T0, 60)
    with pytest.raises(ValueError, match="timezone"):
        bucket_edges(T0.replace(tzinfo=None), T0.replace(tzinfo=None) + timedelta(hours=1), 60)
    with pytest.raises(ValueError, match="at most"):
        bucket_edges(T0, T0 + timedelta(days=30), 60, max_buckets=1000)


# ----------------------------------------------------------------------------- online
def test_assign_visitor_threshold_and_horizon():
    query = unit([1, 0, 0])
    vectors = unit([0.9, 0.1, 0], [0, 1, 0], [1, 0, 0.05])
    visitors = np.array([7, 8, 9])
    times = np.array([100.0, 100.0, 5000.0])  # visitor 9 matches best but is outside the horizon
    assert assign_visitor(query[0], 200.0, vectors, visitors, times, 0.9, 600) == 7
    assert assign_visitor(query[0], 200.0, vectors, visitors, times, 0.999, 600) is None  # 0.994 < threshold
    assert assign_visitor(query[0], 4900.0, vectors, visitors, times, 0.9, 600) == 9  # both sides of the time
    assert assign_visitor(query[0], 200.0, vectors[:0], visitors[:0], times[:0], 0.5, 600) is None


def test_assign_visitor_max_vs_mean_link():
    query = unit([1, 0])[0]
    # visitor 1: one close sighting and one poor one; visitor 2: two fair ones
    vectors = unit([1, 0.05], [0, 1], [1, 0.5], [1, 0.5])
    visitors = np.array([1, 1, 2, 2])
    times = np.zeros(4)
    assert assign_visitor(query, 0.0, vectors, visitors, times, 0.5, 60) == 1  # max: 0.999 vs 0.894
    assert (
        assign_visitor(query, 0.0, vectors, visitors, times, 0.5, 60, link="mean") == 2
    )  # mean: 0.5 vs 0.894
    with pytest.raises(ValueError, match="link"):
        assign_visitor(query, 0.0, vectors, visitors, times, 0.5, 60, link="min")
    with pytest.raises(ValueError, match="length"):
        assign_visitor(query, 0.0, vectors, visitors[:3], times, 0.5, 60)


def test_assign_online_in_time_order():
    a, b = [1, 0, 0], [0, 1, 0]
    vectors = unit(a, b, a, [0.9, 0.1, 0], b, a)
    times = np.array([0, 10, 20, 30, 40, 10_000.0])  # the last one comes back after the horizon
    labels = assign_online(vectors, times, threshold=0.8, horizon_s=3600)
    assert labels.tolist() == [0, 1, 0, 0, 1, 5]
    shuffled = np.array([3, 0, 5, 1, 4, 2])  # input order does not matter, capture order does;
    # labels name a visitor's first sighting by its position in the input: originals 0, 1, 5 sit at 1, 3, 2
    assert assign_online(vectors[shuffled], times[shuffled], 0.8, 3600).tolist() == [1, 1, 2, 3, 3, 1]


# ----------------------------------------------------------------------------- offline
def test_cluster_visitors_hand_worked():
    # two people, two sightings each, plus one loner; names are each group's earliest item
    vectors = unit([1, 0, 0], [0, 1, 0], [0.95, 0.05, 0], [0.05, 0.95, 0], [0, 0, 1])
    times = np.array([50.0, 10, 30, 20, 40])
    labels = cluster_visitors(vectors, times, np.array(list("abcde"), object), threshold=0.8, horizon_s=600)
    assert labels.tolist() == [2, 1, 2, 1, 4]


def test_cluster_visitors_average_link_blocks_chaining():
    # a - b - c each 0.8 apart in a chain, but a and c only 0.28: single link would join all three
    a = np.array([1.0, 0, 0])
    b = np.array([0.8, 0.6, 0])
    c = np.array([0.28, 0.96, 0])
    vectors = unit(a, b, c)
    labels = cluster_visitors(vectors, np.zeros(3), None, threshold=0.7, horizon_s=60)
    assert len(set(labels.tolist())) == 2  # average link: {a, b} (or {b, c}) at 0.8, the third at 0.54 < 0.7
    labels = cluster_visitors(vectors, np.zeros(3), None, threshold=0.5, horizon_s=60)
    assert len(set(labels.tolist())) == 1


def test_cluster_visitors_horizon_is_a_cannot_link():
    vectors = unit([1, 0], [1, 0.01], [1, 0.02])
    times = np.array([0.0, 1000.0, 2000.0])  # 0-1 and 1-2 within the horizon, 0-2 not
    labels = cluster_visitors(vectors, times, None, threshold=0.5, horizon_s=1500)
    assert len(set(labels.tolist())) == 2
    assert labels[1] in (labels[0], labels[2])
    labels = cluster_visitors(vectors, times, None, threshold=0.5, horizon_s=3000)
    assert labels.tolist() == [0, 0, 0]


def test_cluster_visitors_matches_scipy_average_linkage():
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 16))
    x = centres[rng.integers(0, 12, 300)] + 0.6 * rng.standard_normal((300, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for threshold in (0.3, 0.6, 0.8):
        z = hierarchy.linkage(x.astype(np.float64), method="average", metric="cosine")
        want = hierarchy.fcluster(z, t=1 - threshold, criterion="distance")
        got = cluster_visitors(x, np.zeros(300), None, threshold, horizon_s=1.0)
        assert same_partition(got, want), threshold


def test_cluster_visitors_slices_large_spans_and_splits_at_gaps(caplog):
    rng = np.random.default_rng(1)
    people = unit(*rng.standard_normal((4, 8)))
    vectors = np.repeat(people, 5, axis=0) + 0.01 * rng.standard_normal((20, 8)).astype(np.float32)
    times = np.repeat(np.arange(4) * 100.0, 5) + np.tile(np.arange(5.0), 4)
    whole = cluster_visitors(vectors, times, None, 0.9, horizon_s=1000)
    assert len(set(whole.tolist())) == 4
    sliced = cluster_visitors(vectors, times, None, 0.9, horizon_s=1000, max_block=10)
    assert same_partition(sliced, whole)  # slices of 10 fall on person boundaries here
    assert "slices of 10" in caplog.text
    apart = cluster_visitors(vectors, times * 100, None, 0.9, horizon_s=1000)  # gaps of 10,000 s: exact split
    assert same_partition(apart, whole)
    assert cluster_visitors(np.zeros((0, 8)), np.zeros(0), None, 0.5, 60).shape == (0,)
    with pytest.raises(ValueError, match="vectors"):
        cluster_visitors(vectors[:3], times, None, 0.5, 60)


# ----------------------------------------------------------------------------- aggregation
@pytest.fixture
def gallery_db(tmp_path):
    """A migrated SQLite gallery; `add(times, cameras, visitors)` inserts bare rows (no files, no vectors)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gallery.db'}")
    upgrade_database(engine)
    sessions = make_sessionmaker(engine)

    def add(times, cameras, visitors):
        with sessions() as session, session.begin():
            for at, camera, visitor in zip(times, cameras, visitors, strict=True):
                session.add(
                    GalleryItem(
                        content_hash=uuid.uuid4().hex,
                        camera_id=camera,
                        captured_at=at,
                        image_path="x",
                        thumbnail_path="x",
                        media_type="image/png",
                        width=8,
                        height=8,
                        embedding=b"",
                        embedding_dim=0,
                        visitor_id=visitor,
                    )
                )

    yield sessions, add
    engine.dispose()


def report(sessions, start, end, bucket_s, cameras=None):
    with sessions() as session:
        by_camera = repository.footfall_by_camera(session, cameras, start, end)
        listed = cameras or sorted(by_camera)
        counts = repository.footfall_by_bucket(session, cameras, start, end, bucket_s)
    edges = bucket_edges(start, end, bucket_s)
    return footfall_report(edges, listed, counts.cells, counts.by_bucket, by_camera, counts.total)


def test_footfall_counts_hand_worked(gallery_db):
    sessions, add = gallery_db
    offsets = [60, 120, 1800, 3700, 3800, 4000, 7300, -5]
    cameras = ["door", "door", "till", "door", "till", "till", "door", "door"]
    visitors = [1, 1, 1, 2, 1, 2, 3, 4]  # the last two fall outside [start, end)
    add([T0 + timedelta(seconds=o) for o in offsets], cameras, visitors)
    out = report(sessions, T0, T0 + timedelta(hours=2), 3600, ["door", "till", "aisle"])
    rows = [
        (r["bucket_start"][11:16], r["camera_id"], r["sightings"], r["unique_visitors"])
        for r in out["series"]
    ]
    assert rows == [  # sparse: "aisle" saw nobody, so it has no rows
        ("09:00", "door", 2, 1),
        ("09:00", "till", 1, 1),
        ("10:00", "door", 1, 1),
        ("10:00", "till", 2, 2),
    ]
    assert out["series"][0]["bucket_start"] == "2026-11-23T09:00:00+00:00"
    assert out["series"][0]["bucket_end"] == "2026-11-23T10:00:00+00:00"
    totals = out["totals"]
    assert (totals["sightings"], totals["unique_visitors"]) == (6, 2)  # visitor 1 in both hours counts once
    assert totals["by_camera"] == {
        "aisle": {"sightings": 0, "unique_visitors": 0},
        "door": {"sightings": 3, "unique_visitors": 2},
        "till": {"sightings": 3, "unique_visitors": 2},
    }
    assert [(b["sightings"], b["unique_visitors"]) for b in totals["by_bucket"]] == [(3, 1), (3, 2)]


def test_footfall_counts_filters_unknown_visitors_time_zones_and_empty(gallery_db):
    sessions, add = gallery_db
    add([T0 + timedelta(seconds=s) for s in (10, 20, 30)], ["b", "a", "c"], [5, 5, None])
    only_a_b = report(sessions, T0, T0 + timedelta(minutes=30), 900, ["a", "b"])
    assert only_a_b["totals"]["sightings"] == 2 and only_a_b["totals"]["unique_visitors"] == 1
    everything = report(sessions, T0, T0 + timedelta(minutes=30), 900)
    assert sorted(everything["totals"]["by_camera"]) == ["a", "b", "c"]
    assert everything["totals"]["unique_visitors"] == 2  # the item without a visitor is its own visitor
    paris = timezone(timedelta(hours=1))
    shifted = report(sessions, T0.astimezone(paris), (T0 + timedelta(hours=1)).astimezone(paris), 3600)
    assert shifted["series"][0]["bucket_start"] == "2026-11-23T09:00:00+00:00"  # always reported in UTC
    empty = report(sessions, T0 + timedelta(hours=5), T0 + timedelta(hours=6), 1800, ["x"])
    assert empty["series"] == [] and empty["totals"]["unique_visitors"] == 0
    assert [b["sightings"] for b in empty["totals"]["by_bucket"]] == [0, 0]
    assert empty["totals"]["by_camera"] == {"x": {"sightings": 0, "unique_visitors": 0}}


def test_footfall_buckets_are_exact_to_the_microsecond(gallery_db):
    """Bucket edges fall on a start with a fraction of a second; sightings on either side of an edge."""
    sessions, add = gallery_db
    start = T0 + timedelta(microseconds=250_001)
    edge = start + timedelta(minutes=15)
    tick = timedelta(microseconds=1)
    add(
        [start, edge - tick, edge, edge + tick, start + timedelta(minutes=30) - tick],
        ["a"] * 5,
        [1, 2, 3, 4, 5],
    )
    out = report(sessions, start, start + timedelta(minutes=30), 900)
    assert [b["sightings"] for b in out["totals"]["by_bucket"]] == [2, 3]
    assert report(sessions, start + tick, start + timedelta(minutes=30), 900)["totals"]["sightings"] == 4


def test_footfall_counts_match_a_plain_count_on_random_data(gallery_db):
    sessions, add = gallery_db
    rng = np.random.default_rng(7)
    n = 400
    seconds = rng.integers(-3600, 6 * 3600, n)
    cameras = [f"cam{c}" for c in rng.integers(0, 5, n)]
    visitors = [int(v) for v in rng.integers(1, 60, n)]
    times = [
        T0 + timedelta(seconds=int(s), microseconds=int(u))
        for s, u in zip(seconds, rng.integers(0, 10**6, n), strict=True)
    ]
    add(times, cameras, visitors)
    start, end, bucket_s = T0 + timedelta(minutes=7), T0 + timedelta(hours=5), 1200
    out = report(sessions, start, end, bucket_s)
    cells, bucket_sets, camera_sets = {}, {}, {}
    for at, camera, visitor in zip(times, cameras, visitors, strict=True):
        if start <= at < end:
            b = int((at - start) // timedelta(seconds=bucket_s))
            cells.setdefault((b, camera), []).append(visitor)
            bucket_sets.setdefault(b, []).append(visitor)
            camera_sets.setdefault(camera, []).append(visitor)
    edges = bucket_edges(start, end, bucket_s)
    expected = [
        (edges[b].isoformat(), camera, len(v), len(set(v))) for (b, camera), v in sorted(cells.items())
    ]
    got = [(r["bucket_start"], r["camera_id"], r["sightings"], r["unique_visitors"]) for r in out["series"]]
    assert got == expected
    assert [(b["sightings"], b["unique_visitors"]) for b in out["totals"]["by_bucket"]] == [
        (len(bucket_sets.get(b, [])), len(set(bucket_sets.get(b, [])))) for b in range(len(edges) - 1)
    ]
    assert out["totals"]["by_camera"] == {
        c: {"sightings": len(v), "unique_visitors": len(set(v))} for c, v in sorted(camera_sets.items())
    }
    assert out["totals"]["unique_visitors"] == len({v for vs in cells.values() for v in vs})


def test_cells_limit_advice_names_the_numbers():
    year = 366 * 86400.0
    assert cells_limit_advice(86400, 3600, 106, 100_000) is None  # a day by the hour: 2,544 cells
    advice = cells_limit_advice(year, 3600, 106, 100_000)
    assert advice.startswith("8784 buckets x 106 cameras = 931104 cells, over the limit of 100000")
    assert "a bucket of at least 10h" in advice  # 366 d / (100000 // 106 = 943 buckets) = 9.3 h -> 560 min
    assert "a window of at most 39 days 7 h at this bucket" in advice  # 943 h
    assert "at most 11 camera_id filters" in advice  # 100000 // 8784
    # following the advice fits
    assert cells_limit_advice(year, 10 * 3600, 106, 100_000) is None
    assert cells_limit_advice(943 * 3600, 3600, 106, 100_000) is None
    assert cells_limit_advice(year, 3600, 11, 100_000) is None
    assert "camera_id" not in cells_limit_advice(
        year, 60, 1, 100
    )  # 527040 one-minute buckets: no camera fits


# ----------------------------------------------------------------------------- grouping quality
def test_online_and_offline_recover_separated_identities():
    rng = np.random.default_rng(5)
    people = 30
    centres = rng.standard_normal((people, 64))
    pid = np.repeat(np.arange(people), 6)
    times = np.repeat(rng.uniform(0, 20_000, people), 6) + np.tile(np.arange(6) * 30.0, people)
    x = centres[pid] / np.linalg.norm(centres[pid], axis=1, keepdims=True) + 0.05 * rng.standard_normal(
        (len(pid), 64)
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for labels in (assign_online(x, times, 0.6, 1800), cluster_visitors(x, times, None, 0.6, 1800)):
        assert pairwise_precision_recall(labels, pid) == (1.0, 1.0)
        assert count_error(labels, pid) == 0.0
    assert footfall.DEFAULT_MAX_BLOCK >= 1000


def test_assign_visitor_decides_a_track_by_the_mean_of_its_crops_scores():
    # visitor 1: one sighting along x; visitor 2: one along y
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    visitors, times = np.array([1, 2]), np.array([0.0, 0.0])
    crop_like_1, crop_like_2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    near_2 = np.array([0.28, 0.96])
    # one crop alone follows its own best match
    assert assign_visitor(crop_like_1, 0.0, vectors, visitors, times, 0.9, 60) == 1
    # a track whose first crop looks like visitor 1 and whose other two look like visitor 2: visitor 2 at
    # 0.6 (scores 0, 1, 0.96: mean 0.65 against 1's 0.43), nobody at 0.9
    track = np.stack([crop_like_1, crop_like_2, near_2])
    assert assign_visitor(track, 0.0, vectors, visitors, times, 0.6, 60) == 2
    assert assign_visitor(track, 0.0, vectors, visitors, times, 0.9, 60) is None
    # a one-crop track is that crop; the cannot-link and the horizon apply to the track as to a crop
    assert assign_visitor(track[1:2], 0.0, vectors, visitors, times, 0.9, 60) == 2
    assert assign_visitor(track, 0.0, vectors, visitors, times, 0.6, 60, exclude={2}) is None
    assert assign_visitor(track, 1000.0, vectors, visitors, times, 0.1, 60) is None
    # mean link per crop, then the mean over crops
    assert assign_visitor(track, 0.0, vectors, visitors, times, 0.6, 60, link="mean") == 2
