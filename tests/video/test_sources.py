"""Video sources: frames and capture times from files, frame skipping, and one-line errors for bad sources."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from video.errors import VideoError
from video.sources import FileSource, StreamSource, is_stream, open_source

START = datetime.fromisoformat("2024-06-03T10:00:00+00:00")


def test_file_frames_carry_start_plus_their_timestamp(store_video, truth):
    camera = truth["cameras"][0]
    source = FileSource(store_video / camera["video"], START)
    frames = list(source)
    assert len(frames) == camera["num_frames"]
    assert frames[0].image.shape == (camera["height"], camera["width"], 3)
    assert frames[25].captured_at == START + timedelta(seconds=25 / camera["fps"])
    assert source.duration_seconds == pytest.approx(camera["num_frames"] / camera["fps"])


def test_fps_keeps_one_frame_per_slot(store_video, truth):
    camera = truth["cameras"][0]
    frames = list(FileSource(store_video / camera["video"], START, fps=2.5))
    assert [f.index for f in frames[:4]] == [0, 4, 8, 12]
    assert len(frames) == camera["num_frames"] // 4


def test_same_file_same_key(store_video, truth, tmp_path):
    path = store_video / truth["cameras"][0]["video"]
    copy = tmp_path / "copy.avi"
    copy.write_bytes(path.read_bytes())
    assert FileSource(path, START).key() == FileSource(copy, START).key()
    assert (
        FileSource(path, START).key() != FileSource(store_video / truth["cameras"][1]["video"], START).key()
    )


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        FileSource(tmp_path / "none.mp4", START)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is not a video at all\n" * 100)
    with pytest.raises(VideoError, match="not a video FFmpeg can open"):
        list(FileSource(path, START))


def test_truncated_file(store_video, truth, tmp_path):
    data = (store_video / truth["cameras"][0]["video"]).read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated"):
        list(FileSource(path, START))


def test_zero_frames(tmp_path):
    import cv2

    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    writer.release()
    with pytest.raises(VideoError, match="(holds no frames|not a video)"):
        list(FileSource(path, START))


def test_unsupported_codec(store_video, truth, tmp_path):
    """A container FFmpeg reads whose codec tag it has no decoder for."""
    data = (store_video / truth["cameras"][0]["video"]).read_bytes()
    path = tmp_path / "odd.avi"
    path.write_bytes(data.replace(b"MJPG", b"QQQQ"))
    with pytest.raises(VideoError, match="(no frame could be decoded|not a video)"):
        list(FileSource(path, START))


def test_unreachable_stream():
    assert is_stream("rtsp://127.0.0.1:9/cam") and not is_stream("/videos/a.mp4")
    with pytest.raises(VideoError, match="unreachable after 2 attempts"):
        StreamSource("rtsp://user:secret@127.0.0.1:9/cam", attempts=2, backoff_s=0.01, timeout_s=2)


def test_stream_errors_hide_credentials():
    with pytest.raises(VideoError) as caught:
        StreamSource("http://user:secret@127.0.0.1:9/cam.mjpg", attempts=1, timeout_s=2)
    assert "secret" not in str(caught.value)


def test_a_file_needs_a_start(store_video, truth):
    with pytest.raises(VideoError, match="--start"):
        open_source(str(store_video / truth["cameras"][0]["video"]), None)
    with pytest.raises(VideoError, match="timezone"):
        FileSource(store_video / truth["cameras"][0]["video"], datetime(2024, 6, 3, 10))


class _FakeCapture:
    """A stream that gives `frames` frames per connection; connection k fails to open when k in `down`."""

    opened = 0

    def __init__(self, plan):
        self.plan = plan
        _FakeCapture.opened += 1
        self.connection = _FakeCapture.opened
        self.left = plan["frames"]

    def isOpened(self):
        return self.connection not in self.plan["down"]

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        import numpy as np

        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        pass


def test_stream_reconnects_after_a_drop_and_gives_up_after_attempts(monkeypatch):
    import types

    import video.sources as sources

    plan = {"frames": 3, "down": {3}}  # connection 2 drops after 3 frames; connection 3 fails; 4 works
    fake = types.SimpleNamespace(
        VideoCapture=lambda *a, **k: _FakeCapture(plan),
        CAP_FFMPEG=0,
        CAP_PROP_OPEN_TIMEOUT_MSEC=1,
        CAP_PROP_READ_TIMEOUT_MSEC=2,
    )
    monkeypatch.setattr(sources, "_cv2", lambda: fake)
    _FakeCapture.opened = 0
    stream = StreamSource("rtsp://cam/1", attempts=2, backoff_s=0.0)
    frames = []
    with pytest.raises(VideoError, match="unreachable after 2 attempts"):
        for frame in stream:
            frames.append(frame)
            if _FakeCapture.opened >= 4:
                plan["down"] = {5, 6}  # from now on the camera is gone
    assert len(frames) == 3 + 3 + 3  # connections 1, 2 and 4 each delivered their frames
    assert [f.index for f in frames] == list(range(9))
    assert frames[0].captured_at <= frames[-1].captured_at
