"""Crop selection per track and the REST client's batching, retries and errors."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import numpy as np
import pytest

from video.client import CropUpload, GalleryClient
from video.crops import CropPolicy, TrackCrops
from video.errors import VideoError

T0 = datetime.fromisoformat("2024-06-03T10:00:00+00:00")


def _frame(seed: int, sharp: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if sharp:
        return rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    return np.full((240, 320, 3), 120, np.uint8)


def test_crops_are_spread_over_the_track_and_avoid_the_border():
    crops = TrackCrops(CropPolicy(per_track=3, min_height=48))
    for i in range(30):
        at_border = i < 5  # entering: cut by the left edge
        box = np.array([0 if at_border else 40 + i, 50, 60 + i, 200], np.float32)
        crops.offer(i, T0 + timedelta(seconds=i / 10), _frame(i, sharp=(i % 3 == 0)), box, 0.9)
    chosen = crops.select()
    assert len(chosen) == 3
    frames = [c.frame for c in chosen]
    assert frames == sorted(frames) and frames[0] < 14 <= frames[1] < 22 <= frames[2]
    assert all(c.clean and c.frame >= 5 for c in chosen)
    assert all(c.frame % 3 == 0 for c in chosen), "the sharp frames of each span win"


def test_a_track_never_seen_cleanly_still_gives_its_largest_crop():
    crops = TrackCrops(CropPolicy(per_track=3, min_height=48))
    for i, height in enumerate([30, 40, 35]):
        crops.offer(i, T0, _frame(i), np.array([100, 100, 120, 100 + height], np.float32), 0.8)
    chosen = crops.select()
    assert [c.frame for c in chosen] == [1]


def test_candidates_stay_bounded():
    crops = TrackCrops(CropPolicy(max_candidates=8))
    for i in range(100):
        crops.offer(i, T0, _frame(0), np.array([50, 50, 90, 150], np.float32), 0.9)
    assert len(crops.candidates) <= 8
    assert crops.candidates[0].frame == 0 and crops.candidates[-1].frame > 60


def _uploads(n: int) -> list[CropUpload]:
    return [CropUpload(b"jpeg%d" % i, "cam1", T0, "cam1/abc/1", f"c{i}.jpg") for i in range(n)]


def _answer(request: httpx.Request, n: int) -> httpx.Response:
    return httpx.Response(
        200, json={"items": [{"status": "created"}] * n, "created": n, "existing": 0, "failed": 0}
    )


def test_batches_and_retries_until_the_service_answers():
    calls, waits = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        if len(calls) == 2:
            return httpx.Response(503, json={"error": {"message": "busy"}}, headers={"Retry-After": "2"})
        body = request.read()
        return _answer(request, body.count(b'name="files"'))

    client = GalleryClient(
        "http://svc", "k", batch_size=4, transport=httpx.MockTransport(handler), sleep=waits.append
    )
    stats = client.send(_uploads(10))
    assert stats.created == 10 and stats.sent == 10 and stats.retries == 2
    assert len(calls) == 2 + 3  # two failures, then batches of 4 + 4 + 2
    assert waits == [0.5, 2.0]  # backoff, then the service's Retry-After
    body = calls[-1].read()
    assert b'name="track_ref"' in body and b"cam1/abc/1" in body and b"2024-06-03T10:00:00+00:00" in body


def test_gives_up_with_one_line_after_the_attempts():
    client = GalleryClient(
        "http://svc",
        "k",
        attempts=3,
        transport=httpx.MockTransport(lambda r: httpx.Response(502)),
        sleep=lambda s: None,
    )
    with pytest.raises(VideoError, match="giving up after 3 attempts"):
        client.send(_uploads(1))


def test_a_refused_batch_stops_with_the_service_message():
    def handler(request):
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "unknown API key"}})

    client = GalleryClient("http://svc", "k", transport=httpx.MockTransport(handler), sleep=lambda s: None)
    with pytest.raises(VideoError, match="unknown API key"):
        client.send(_uploads(2))
    with pytest.raises(VideoError, match="refused the key"):
        client.check()


def test_single_refused_crops_are_counted():
    def handler(request):
        items = [
            {"status": "created"},
            {"status": "error", "filename": "c1.jpg", "error": {"message": "too small"}},
        ]
        return httpx.Response(200, json={"items": items, "created": 1, "existing": 0, "failed": 1})

    client = GalleryClient("http://svc", "k", transport=httpx.MockTransport(handler))
    stats = client.send(_uploads(2))
    assert stats.created == 1 and stats.failed == 1 and "too small" in stats.errors[0]
