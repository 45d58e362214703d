"""reid ingest-video end to end: a rendered video in, items with track references and times out of a
live service over loopback HTTP; dry runs; bad sources; re-runs after an interruption."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from reid.cli import main

START = "2024-06-03T10:00:00+00:00"
INGEST_KEY, ADMIN_KEY = "dev-ingest-key", "dev-admin-key"


@pytest.fixture(scope="module")
def service_url(tmp_path_factory) -> Iterator[str]:
    import socket

    import uvicorn

    from model.embedder import Embedder
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        _env_file=None,
        dev_mode=True,
        data_dir=tmp_path_factory.mktemp("svc"),
        device="cpu",
        batch_wait_ms=1,
        retention_days=0,
        visitor_threshold=0.9995,
        visitor_horizon_s=3600,
    )
    embedder = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", batch_size=16)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, embedder=embedder), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.2)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def _gallery(url: str, **params) -> dict:
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}) as c:
        return c.get("/gallery", params={"limit": 500, **params}).json()


def _ingest(video, url, camera="cam1", extra=()) -> int:
    return main(
        [
            "ingest-video",
            "--camera",
            camera,
            "--start",
            START,
            "--fps",
            "5",
            "--service",
            url,
            "--key",
            INGEST_KEY,
            "--batch-size",
            "4",
            *extra,
            str(video),
        ]
    )


def test_dry_run_writes_crops_and_tracks(store_video, truth, tmp_path, capsys):
    out = tmp_path / "dry"
    video = store_video / truth["cameras"][0]["video"]
    code = main(
        [
            "ingest-video",
            "--camera",
            "cam1",
            "--start",
            START,
            "--fps",
            "5",
            "--dry-run",
            str(out),
            str(video),
        ]
    )
    assert code == 0
    tracks = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert 1 <= len(tracks) <= truth["truth"]["per_camera"]["cam1"]["passes"] + 1
    refs = {t["track_ref"] for t in tracks}
    assert len(refs) == len(tracks) and all(r.startswith("cam1/") for r in refs)
    for track in tracks:
        assert 1 <= len(track["files"]) <= 3
        assert all((out / f).is_file() for f in track["files"])
        first = datetime.fromisoformat(track["first_seen"])
        assert datetime.fromisoformat(START) <= first <= datetime.fromisoformat(track["last_seen"])
    assert "tracks" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: (d / "junk.mp4").write_bytes(b"no video here" * 50) and d / "junk.mp4", "not a video"),
        ("truncated", "truncated"),
    ],
)
def test_bad_sources_are_one_line_and_send_nothing(
    make, message, service_url, store_video, truth, tmp_path, capsys
):
    if make == "truncated":
        data = (store_video / truth["cameras"][1]["video"]).read_bytes()
        source = tmp_path / "cut.avi"
        source.write_bytes(data[: len(data) * 2 // 3])
    else:
        source = make(tmp_path)
    before = _gallery(service_url)["total"]
    assert _ingest(source, service_url, camera="bad-source") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("reid ingest-video: error:")
    assert _gallery(service_url)["total"] == before


def test_unreachable_service_is_one_line(store_video, truth, capsys):
    assert _ingest(store_video / truth["cameras"][0]["video"], "http://127.0.0.1:9") == 2
    assert "unreachable" in capsys.readouterr().err


def test_ingest_then_interrupted_rerun_creates_no_duplicates(
    service_url, store_video, truth, monkeypatch, capsys
):
    from video.client import GalleryClient

    video = store_video / truth["cameras"][0]["video"]
    real_post = GalleryClient._post
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after the first batch went through
        return real_post(self, batch)

    monkeypatch.setattr(GalleryClient, "_post", interrupted)
    assert _ingest(video, service_url) == 130
    partial = _gallery(service_url, camera_id="cam1")["total"]
    assert partial == 4
    monkeypatch.setattr(GalleryClient, "_post", real_post)
    capsys.readouterr()
    assert _ingest(video, service_url) == 0
    line = capsys.readouterr().out
    items = _gallery(service_url, camera_id="cam1")["items"]
    assert f"{len(items) - 4} created, 4 already there" in line
    assert _ingest(video, service_url) == 0  # a third run: nothing new
    assert "0 created" in capsys.readouterr().out
    assert _gallery(service_url, camera_id="cam1")["total"] == len(items)
    times = sorted(datetime.fromisoformat(i["captured_at"]) for i in items)
    assert datetime.fromisoformat(START) <= times[0] and (times[-1] - times[0]).total_seconds() < 16
    # footfall from tracks: every crop has its track, a track is one visitor, one visitor per track
    visitors_of = {}
    for item in items:
        assert item["track_ref"] and item["track_ref"].startswith("cam1/")
        visitors_of.setdefault(item["track_ref"], set()).add(item["visitor_id"])
    assert all(len(v) == 1 for v in visitors_of.values())
    assert len({v for vs in visitors_of.values() for v in vs}) == len(visitors_of)
    with httpx.Client(base_url=service_url, headers={"X-API-Key": ADMIN_KEY}) as c:
        metrics = c.get(
            "/metrics",
            params={"start": START, "end": "2024-06-03T11:00:00+00:00", "bucket": "1h", "camera_id": "cam1"},
        ).json()
    assert metrics["totals"]["unique_visitors"] == len(visitors_of)
    assert 1 <= len(visitors_of) <= truth["truth"]["per_camera"]["cam1"]["passes"] + 1


def test_a_live_camera_that_goes_away_keeps_the_tracks_of_the_people_in_view(store_video, truth, tmp_path):
    """A rendered camera played live as MJPEG over HTTP (10 fps, real time) and cut while two people walk
    through: the ingest follows it as it plays, and when the camera is gone for good the tracks of the
    people in view end there and are kept, with capture times of the wall clock."""
    import cv2

    from tests.video.mjpeg_server import MjpegCamera
    from video.detectors import build_detector
    from video.errors import VideoError
    from video.evaluation import read_truth_boxes
    from video.ingest import ingest_video

    camera = truth["cameras"][0]
    spans: dict[int, list[int]] = {}
    for row in read_truth_boxes(store_video, camera["camera_id"], min_visibility=0.5):
        span = spans.setdefault(row.track_id, [row.frame, row.frame])
        span[0], span[1] = min(span[0], row.frame), max(span[1], row.frame)
    # the first frame with two people in view for at least 1.2 s who stay on after it
    cut = next(
        f
        for f in range(camera["num_frames"])
        if sum(a <= f - 12 and b >= f + 3 for a, b in spans.values()) >= 2
    )
    capture = cv2.VideoCapture(str(store_video / camera["video"]))
    images = [capture.read()[1] for _ in range(cut)]
    capture.release()
    out = tmp_path / "live"
    with MjpegCamera(frames=cut, fps=camera["fps"], images=images, serves=1) as live:
        began = datetime.now().astimezone()
        with pytest.raises(VideoError, match="unreachable after 1 attempts"):
            ingest_video(
                [live.url],
                camera_id="live1",
                detector=build_detector("hog"),
                start=None,
                fps=5,
                dry_run=out,
                stream_options={"attempts": 1, "timeout_s": 3},
            )
        ended = datetime.fromtimestamp(live.sent_at[-1]).astimezone()
    tracks = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert 2 <= len(tracks) <= 4
    for track in tracks:
        assert (
            began <= datetime.fromisoformat(track["first_seen"]) <= datetime.fromisoformat(track["last_seen"])
        )
        assert datetime.fromisoformat(track["last_seen"]) <= ended + timedelta(seconds=1)
        assert track["track_ref"].startswith("live1/") and all((out / f).is_file() for f in track["files"])
    in_view = [t for t in tracks if datetime.fromisoformat(t["last_seen"]) >= ended - timedelta(seconds=1)]
    assert len(in_view) >= 2  # the two people walking when the camera went away were kept
