"""Video sources: files (anything FFmpeg decodes through OpenCV) and live streams (RTSP / HTTP) with
reconnect. Both yield `Frame`s; bad sources raise `VideoError` with one line naming the source.

Capture time of a frame: for a file, `start` + the frame's timestamp in the file; for a stream, the
wall clock when the frame was read. Frame skipping (`fps`) keeps the first frame of each 1/fps slot.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from video.errors import VideoError

logger = logging.getLogger(__name__)

STREAM_SCHEMES = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
# a file whose decoder stops this many frames short of what its container announces is truncated
TRUNCATION_SLACK = 2


@dataclass
class Frame:
    index: int  # frame number in the source (0-based), counting skipped frames
    seconds: float  # position in the source (file) or since the stream was opened
    captured_at: datetime
    image: np.ndarray  # (H, W, 3) uint8 BGR, as OpenCV decodes


def is_stream(spec: str) -> bool:
    return bool(STREAM_SCHEMES.match(spec))


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the "video" extra is missing
        raise VideoError("video ingest needs OpenCV: pip install 'rga-reid[video]'") from exc
    return cv2


class _Skipper:
    """Keeps the first frame of each 1/fps slot (fps None or >= the source's: every frame)."""

    def __init__(self, fps: float | None) -> None:
        if fps is not None and fps <= 0:
            raise VideoError(f"--fps must be > 0, got {fps}")
        self.fps = fps
        self.last_slot = -1

    def keep(self, seconds: float) -> bool:
        if self.fps is None:
            return True
        slot = int(np.floor(seconds * self.fps + 1e-6))
        if slot <= self.last_slot:
            return False
        self.last_slot = slot
        return True


class FileSource:
    """A video file. Iterating decodes it once, start to end; a file that cannot be opened, holds no
    frame, or ends before its announced length raises VideoError.

    A frame's time is its timestamp in the container (so variable-frame-rate files, as phones and many
    recorders write, keep their real times), counted from the first frame; where the container gives
    none that keeps increasing, the previous frame's time plus one frame at the announced rate.
    """

    live = False

    def __init__(self, path: str | Path, start: datetime, fps: float | None = None) -> None:
        self.path = Path(path)
        if start.tzinfo is None:
            raise VideoError("--start needs a timezone (e.g. 2024-06-03T10:00:00+00:00)")
        self.start = start
        self.skipper = _Skipper(fps)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: " + ("not a file" if self.path.exists() else "no such file"))
        self.name = str(self.path)
        cv2 = _cv2()
        self.position_msec = cv2.CAP_PROP_POS_MSEC
        self.capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            raise VideoError(f"{self.path}: not a video FFmpeg can open (unknown container or corrupt file)")
        self.native_fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(self.native_fps) or self.native_fps <= 0:
            raise VideoError(f"{self.path}: the file gives no frame rate")
        self.announced = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.decoded = 0  # frames decoded so far (skipped ones included)
        self.end_seconds = 0.0  # the time just after the last decoded frame

    @property
    def duration_seconds(self) -> float:
        """Length of the decoded video (after iterating it): up to the end of its last frame."""
        return self.end_seconds

    def key(self) -> str:
        """A short content hash: the same file gives the same track references on every run."""
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()[:12]

    def _container_seconds(self) -> float | None:
        value = float(self.capture.get(self.position_msec)) / 1000.0
        return value if np.isfinite(value) and value >= 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        first: float | None = None  # the container time of the first frame
        seconds = 0.0
        step = 1.0 / self.native_fps
        try:
            while self.capture.grab():  # decoded; converted to BGR (retrieve) only when kept
                at = self._container_seconds()
                if first is None and at is not None:
                    first = at
                nominal = seconds + step if index else 0.0
                if at is not None and first is not None and (index == 0 or at - first > seconds):
                    seconds = at - first
                else:
                    seconds = nominal
                if self.skipper.keep(seconds):
                    ok, image = self.capture.retrieve()
                    if not ok or image is None:
                        break
                    yield Frame(index, seconds, self.start + timedelta(seconds=seconds), image)
                index += 1
        finally:
            self.capture.release()
            self.decoded = index
            self.end_seconds = seconds + step if index else 0.0
        if index == 0:
            if self.announced > 0:
                raise VideoError(
                    f"{self.path}: no frame could be decoded (a codec this FFmpeg build lacks, or corrupt data)"
                )
            raise VideoError(f"{self.path}: the video holds no frames")
        # the announced frame count is the container's duration x its nominal rate, so a variable-rate
        # file holds fewer frames than announced: compare durations
        announced_seconds = self.announced / self.native_fps
        if self.announced and self.end_seconds < announced_seconds - max(TRUNCATION_SLACK * step, 0.5):
            raise VideoError(
                f"{self.path}: truncated or corrupt: decoded {index} frames ({self.end_seconds:.1f} s) of the "
                f"{announced_seconds:.1f} s it announces"
            )


class StreamSource:
    """A live stream (RTSP / HTTP / ...). A stream that cannot be opened after `attempts` tries raises
    VideoError; one that drops is reopened with backoff, up to `attempts` times in a row.

    A reader thread takes frames off the stream as they arrive (so the capture time is when the frame
    came, and neither FFmpeg's buffer nor the camera's connection fills while the ingest detects, tracks
    or sends), and keeps the frames the skipper wants in a queue of `buffer_s` seconds. When the ingest is
    slower than that, the oldest waiting frames are dropped, counted in `dropped` and logged: the ingest
    stays live (a gap in tracking) instead of falling minutes behind the camera.
    """

    live = True

    def __init__(
        self,
        url: str,
        fps: float | None = None,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        buffer_s: float = 2.0,
    ) -> None:
        self.url = url
        self.name = re.sub(r"//[^/@]*@", "//", url)  # never log credentials in the URL
        self.skipper = _Skipper(fps)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_ms = int(timeout_s * 1000)
        self.clock = clock
        self.opened_at = clock()
        self.capture = self._open()
        announced = float(self.capture.get(_cv2().CAP_PROP_FPS) or 0.0)
        # what the stream says it sends (RTSP usually does); 25 when it says nothing sensible
        self.native_fps = announced if np.isfinite(announced) and 0 < announced <= 240 else 25.0
        kept_fps = min(fps, self.native_fps) if fps is not None else self.native_fps
        self.buffer = max(1, int(round(buffer_s * kept_fps)))
        self.dropped = 0  # kept frames the ingest was too slow to take

    def key(self) -> str:
        """Unique per stream and run: track ids restart when the ingest restarts."""
        text = f"{self.name}|{self.opened_at.isoformat()}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _open(self):
        cv2 = _cv2()
        for attempt in range(1, self.attempts + 1):
            capture = cv2.VideoCapture(
                self.url,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    self.timeout_ms,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    self.timeout_ms,
                ],
            )
            if capture.isOpened():
                return capture
            capture.release()
            if attempt < self.attempts:
                delay = self.backoff_s * 2 ** (attempt - 1)
                logger.warning(
                    "%s: cannot connect (attempt %d/%d); retrying in %.1f s",
                    self.name,
                    attempt,
                    self.attempts,
                    delay,
                )
                time.sleep(delay)
        raise VideoError(f"{self.name}: stream unreachable after {self.attempts} attempts")

    def _read(self, queue: _FrameQueue) -> None:
        """The reader thread: frames into `queue` until the stream is gone for good or `queue` is closed."""
        index = 0
        empty = 0  # connections in a row that opened but gave no frame
        delivered = 0  # frames on this connection
        try:
            while not queue.closed:
                if not self.capture.grab():
                    if queue.closed:
                        break
                    empty = empty + 1 if delivered == 0 else 0
                    if empty >= self.attempts:
                        raise VideoError(
                            f"{self.name}: the stream opens but sends no frames ({empty} times in a row)"
                        )
                    logger.warning("%s: stream dropped; reconnecting", self.name)
                    self.capture.release()
                    if empty:
                        time.sleep(self.backoff_s * 2 ** (empty - 1))
                    self.capture = self._open()  # raises after `attempts` failures in a row
                    delivered = 0
                    continue
                delivered += 1
                now = self.clock()
                seconds = (now - self.opened_at).total_seconds()
                if self.skipper.keep(seconds):
                    ok, image = self.capture.retrieve()
                    if ok and image is not None:
                        queue.put(Frame(index, seconds, now, image))
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.fail(exc)
        finally:
            self.capture.release()
            queue.finish()

    def __iter__(self) -> Iterator[Frame]:
        queue = _FrameQueue(self.buffer, self.name)
        reader = threading.Thread(target=self._read, args=(queue,), name=f"read {self.name}", daemon=True)
        reader.start()
        try:
            while (frame := queue.get()) is not None:
                yield frame
        finally:
            queue.close()
            reader.join(timeout=self.timeout_ms / 1000 + 1)  # a read blocks at most the read timeout
            self.dropped = queue.dropped


class _FrameQueue:
    """Frames from the reader thread to the ingest: at most `size` wait; a full queue drops its oldest.

    `get` returns None once the reader has finished and the queue is empty, or raises what stopped the
    reader (after the frames that came before it)."""

    WARN_EVERY_S = 60.0
    MAX_BYTES = 256 << 20  # a cap in memory too: 2 s of a 4K stream would be ~1.2 GB

    def __init__(self, size: int, name: str) -> None:
        self.frames: deque[Frame] = deque()
        self.size = size
        self.bytes = 0
        self.name = name
        self.ready = threading.Condition()
        self.closed = False  # the consumer is gone
        self.finished = False  # the reader is gone
        self.error: BaseException | None = None
        self.dropped = 0
        self.dropped_since_warning = 0
        self.warned_at = -math.inf

    def put(self, frame: Frame) -> None:
        with self.ready:
            while self.frames and (
                len(self.frames) >= self.size or self.bytes + frame.image.nbytes > self.MAX_BYTES
            ):
                self.bytes -= self.frames.popleft().image.nbytes
                self.dropped += 1
                self.dropped_since_warning += 1
                now = time.monotonic()
                if now - self.warned_at >= self.WARN_EVERY_S:
                    logger.warning(
                        "%s: the ingest is slower than the stream: dropped %d frame(s) so far (%d since the "
                        "last warning); lower --fps or give the ingest more CPU",
                        self.name,
                        self.dropped,
                        self.dropped_since_warning,
                    )
                    self.warned_at, self.dropped_since_warning = now, 0
            self.frames.append(frame)
            self.bytes += frame.image.nbytes
            self.ready.notify()

    def fail(self, exc: BaseException) -> None:
        with self.ready:
            self.error = exc

    def finish(self) -> None:
        with self.ready:
            self.finished = True
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.frames.clear()
            self.bytes = 0

    def get(self) -> Frame | None:
        with self.ready:
            while not self.frames and not self.finished:
                self.ready.wait(timeout=1.0)
            if self.frames:
                frame = self.frames.popleft()
                self.bytes -= frame.image.nbytes
                return frame
            if self.error is not None:
                raise self.error
            return None


def open_source(spec: str, start: datetime | None, fps: float | None = None, **stream_options):
    """A FileSource for a path (needs `start`), a StreamSource for a URL."""
    if is_stream(spec):
        return StreamSource(spec, fps=fps, **stream_options)
    if start is None:
        raise VideoError("--start is needed for video files (the capture time of their first frame)")
    return FileSource(spec, start, fps)
