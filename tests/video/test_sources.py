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
