"""Video sources: frames and capture times from files, frame skipping, and one-line errors for bad sources."""

from __future__ import annotations

import threading
import time
import types
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from video.errors import VideoError
from video.sources import FileSource, Frame, StreamSource, _FrameQueue, is_stream, open_source

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
    """A stream that gives `frames` frames per connection, one every `every_s` seconds; connection k
    fails to open when k in `down`."""

    opened = 0

    def __init__(self, plan):
        self.plan = plan
        _FakeCapture.opened += 1
        self.connection = _FakeCapture.opened
        self.left = plan["frames"]
        self.sent = 0

    def isOpened(self):
        return self.connection not in self.plan["down"]

    def get(self, prop):
        return self.plan.get("fps", 0.0)

    def grab(self):
        if self.left == 0:
            return False
        time.sleep(self.plan.get("every_s", 0.0))
        self.left -= 1
        self.sent += 1
        return True

    def retrieve(self):
        image = np.full((8, 8, 3), self.sent % 256, np.uint8)
        return True, image

    def release(self):
        pass


def fake_cv2(plan):
    return types.SimpleNamespace(
        VideoCapture=lambda *a, **k: _FakeCapture(plan),
        CAP_FFMPEG=0,
        CAP_PROP_OPEN_TIMEOUT_MSEC=1,
        CAP_PROP_READ_TIMEOUT_MSEC=2,
        CAP_PROP_FPS=5,
    )


def test_stream_reconnects_after_a_drop_and_gives_up_after_attempts(monkeypatch):
    import video.sources as sources

    # connections 1 and 2 drop after 3 frames each; 3 fails; 4 gives 3 frames; 5 and 6 fail: the camera is gone
    plan = {"frames": 3, "down": {3, 5, 6}}
    monkeypatch.setattr(sources, "_cv2", lambda: fake_cv2(plan))
    _FakeCapture.opened = 0
    stream = StreamSource("rtsp://cam/1", attempts=2, backoff_s=0.0)
    frames = []
    with pytest.raises(VideoError, match="unreachable after 2 attempts"):
        for frame in stream:
            frames.append(frame)
    assert len(frames) == 3 + 3 + 3  # connections 1, 2 and 4 each delivered their frames, before the error
    assert [f.index for f in frames] == list(range(9))
    assert frames[0].captured_at <= frames[-1].captured_at
    assert stream.dropped == 0 and stream.native_fps == 25.0  # the fake announces no frame rate


def test_a_slow_ingest_drops_old_frames_and_stays_live_instead_of_falling_behind(monkeypatch, caplog):
    import video.sources as sources

    # a 50 fps camera for 2 s; the ingest takes 0.1 s a frame (5 fps): without the reader thread it would
    # end 8 s behind the camera
    plan = {"frames": 100, "down": {2}, "every_s": 0.02, "fps": 50.0}
    monkeypatch.setattr(sources, "_cv2", lambda: fake_cv2(plan))
    _FakeCapture.opened = 0
    stream = StreamSource("rtsp://cam/1", attempts=1, backoff_s=0.0, buffer_s=0.1)
    assert stream.native_fps == 50.0 and stream.buffer == 5
    frames, behind = [], []
    with pytest.raises(VideoError, match="unreachable"), caplog.at_level("WARNING"):
        for frame in stream:
            behind.append((datetime.now(UTC) - frame.captured_at).total_seconds())
            frames.append(frame)
            time.sleep(0.1)
    assert stream.dropped > 50 and len(frames) + stream.dropped == 100
    assert max(behind) < 1.0  # at most the queue (0.1 s) plus one frame's work, with room for a loaded box
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    assert frames[-1].index == 99  # the newest frame is never the one dropped
    assert "slower than the stream" in caplog.text


def test_leaving_a_stream_early_stops_its_reader(monkeypatch):
    import video.sources as sources

    plan = {"frames": 10_000, "down": set(), "every_s": 0.001}
    monkeypatch.setattr(sources, "_cv2", lambda: fake_cv2(plan))
    _FakeCapture.opened = 0
    stream = StreamSource("rtsp://cam/1", attempts=1)
    for frame in stream:
        if frame.index >= 5:
            break
    before = threading.active_count()
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name.startswith("read rtsp://cam/1")]
    assert threading.active_count() <= before


def test_a_real_mjpeg_camera_slower_ingest_stays_live_through_ffmpeg(caplog):
    from tests.video.mjpeg_server import MjpegCamera

    with MjpegCamera(frames=60, fps=30) as camera:  # 2 s of video per connection, then it drops
        stream = StreamSource(camera.url, attempts=1, backoff_s=0.0, timeout_s=3, buffer_s=0.2)
        frames, behind = [], []
        with caplog.at_level("WARNING"):
            for frame in stream:
                behind.append((datetime.now(UTC) - frame.captured_at).total_seconds())
                frames.append(frame)
                time.sleep(0.15)  # an ingest at ~6 frames/s on a 30 fps camera
                if frame.seconds > 3.0:  # well into the second connection
                    break
    assert camera.connections >= 2  # the drop after 60 frames was reconnected
    assert frames[0].image.shape == (120, 160, 3)
    assert stream.dropped > 0 and "slower than the stream" in caplog.text
    assert max(behind) < 1.5  # never more than the queue and a frame's work behind the camera
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_a_stream_that_connects_but_sends_no_frames_is_an_error_not_a_busy_loop(monkeypatch):
    from tests.video.mjpeg_server import MjpegCamera

    # a real HTTP camera that answers but sends no frame: FFmpeg cannot open it
    with MjpegCamera(frames=0, fps=30) as camera:
        with pytest.raises(VideoError, match="unreachable after 2 attempts"):
            list(StreamSource(camera.url, attempts=2, backoff_s=0.01, timeout_s=2))
    assert camera.connections == 2
    # a stream that opens and then has no frame, again and again: an error after `attempts`, with backoff
    import video.sources as sources

    monkeypatch.setattr(sources, "_cv2", lambda: fake_cv2({"frames": 0, "down": set()}))
    _FakeCapture.opened = 0
    with pytest.raises(VideoError, match="opens but sends no frames \\(3 times in a row\\)"):
        list(StreamSource("rtsp://cam/1", attempts=3, backoff_s=0.01))
    assert _FakeCapture.opened == 3


def _variable_rate_video(path, times_ms):
    """An MPEG-4 Matroska file whose frames have the given timestamps (what phones and recorders write)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(
                np.full((120, 160, 3), (i * 5) % 256, np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_variable_frame_rate_file_keeps_its_real_times_and_is_not_called_truncated(tmp_path):
    # 1 s at 25 fps, then 4.8 s at 5 fps: the container announces 25 fps, so ~146 frames; it holds 50
    times_ms = [40 * i for i in range(25)] + [1000 + 200 * i for i in range(25)]
    video = tmp_path / "phone.mkv"
    _variable_rate_video(video, times_ms)
    source = FileSource(video, START)
    assert source.native_fps == 25.0 and source.announced > 100
    frames = list(source)
    assert len(frames) == 50
    assert [round(f.seconds * 1000) for f in frames] == times_ms
    assert frames[-1].captured_at == START + timedelta(seconds=5.8)
    assert source.duration_seconds == pytest.approx(5.84)
    # frame skipping works on the real times: at most 5 frames a second all along
    kept = list(FileSource(video, START, fps=5))
    assert [round(f.seconds * 1000) for f in kept] == [0, 200, 400, 600, 800] + times_ms[25:]


def test_the_frame_queue_is_capped_in_memory_as_well_as_in_frames(monkeypatch):
    monkeypatch.setattr(_FrameQueue, "MAX_BYTES", 3 << 20)
    queue = _FrameQueue(size=50, name="rtsp://cam/4k")
    big = [Frame(i, i / 25, START, np.zeros((1024, 1024), np.uint8)) for i in range(10)]  # 1 MiB each
    for frame in big:
        queue.put(frame)
    assert len(queue.frames) == 3 and queue.bytes == 3 << 20 and queue.dropped == 7
    assert [queue.get().index for _ in range(3)] == [7, 8, 9]  # the newest kept
    assert queue.bytes == 0
    huge = Frame(10, 0.4, START, np.zeros((4 << 20,), np.uint8))  # one frame over the cap is still taken
    queue.put(huge)
    assert queue.get() is huge
