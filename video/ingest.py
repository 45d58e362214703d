"""`reid ingest-video` as a function: sources -> tracks -> crops -> the service or a folder.

A video file is decoded, detected and tracked to its end before anything is sent, so a file that
turns out truncated or undecodable sends nothing (one-line error); its crops then go out in
batches. Several files of one camera are consecutive segments: each starts where the previous one
ended. A live stream sends each track's crops when the track ends. Re-running over the same file
resends the same bytes under the same track references: the service keeps one item per content
hash, so an interrupted run is finished, not duplicated.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from video.client import CropUpload, GalleryClient, SendStats
from video.crops import CropPolicy
from video.detectors.base import Detector
from video.errors import VideoError
from video.pipeline import PipelineStats, TrackResult, track_source
from video.sources import FileSource, open_source
from video.tracking import TrackerSettings

logger = logging.getLogger(__name__)

TRACKS_FILE = "tracks.jsonl"
CROPS_DIR = "crops"


@dataclass
class IngestReport:
    sources: int = 0
    frames: int = 0
    tracks: int = 0
    crops: int = 0
    seconds: float = 0.0
    pipeline: PipelineStats = field(default_factory=PipelineStats)
    sent: SendStats | None = None

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.sources} source(s): {self.frames} frames processed ({fps:.1f} frames/s), "
            f"{self.tracks} tracks, {self.crops} crops"
        )
        if self.sent is not None:
            s = self.sent
            text += f"; service: {s.created} created, {s.existing} already there, {s.failed} refused"
        return text


def encode_crop(pixels, quality: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError("a crop could not be encoded as JPEG")
    return data.tobytes()


def uploads_of(track: TrackResult, quality: int) -> list[CropUpload]:
    stem = track.track_ref.replace("/", "_")
    return [
        CropUpload(
            encode_crop(c.pixels, quality),
            track.camera_id,
            c.captured_at,
            track.track_ref,
            f"{stem}_{c.frame}.jpg",
        )
        for c in track.crops
    ]


class FolderSink:
    """--dry-run: crops and tracks.jsonl into a folder, made in a staging folder and moved into
    place whole (an interrupted run leaves the previous folder, or none)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.exists() and any(self.out.iterdir()) and not (self.out / TRACKS_FILE).is_file():
            raise VideoError(f"{self.out} is not empty and holds no {TRACKS_FILE}: choose an empty folder")
        self.staging = self.out.parent / f".{self.out.name}.ingest-staging"
        shutil.rmtree(self.staging, ignore_errors=True)
        (self.staging / CROPS_DIR).mkdir(parents=True)
        self.lines: list[str] = []

    def write(self, track: TrackResult, uploads: list[CropUpload]) -> None:
        for upload in uploads:
            (self.staging / CROPS_DIR / upload.filename).write_bytes(upload.data)
        summary = track.summary()
        summary["files"] = [f"{CROPS_DIR}/{u.filename}" for u in uploads]
        self.lines.append(json.dumps(summary))

    def close(self) -> None:
        (self.staging / TRACKS_FILE).write_text("".join(line + "\n" for line in self.lines), encoding="utf-8")
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.staging, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _with_progress(frames, name: str, every_s: float = 30.0):
    """The frames, with a log line every `every_s` seconds (long files and streams)."""
    started = last = time.perf_counter()
    for count, frame in enumerate(frames, 1):
        now = time.perf_counter()
        if now - last >= every_s:
            logger.info(
                "%s: %d frames processed (%.1f frames/s), at %.0f s of video",
                name,
                count,
                count / (now - started),
                frame.seconds,
            )
            last = now
        yield frame


def ingest_video(
    sources: Iterable[str],
    *,
    camera_id: str,
    detector: Detector,
    start: datetime | None = None,
    fps: float | None = None,
    client: GalleryClient | None = None,
    dry_run: str | Path | None = None,
    tracker_settings: TrackerSettings | None = None,
    crop_policy: CropPolicy | None = None,
    stream_options: dict | None = None,
) -> IngestReport:
    if (client is None) == (dry_run is None):
        raise VideoError("give either a service client or a --dry-run folder")
    policy = crop_policy or CropPolicy()
    report = IngestReport()
    if client is not None:
        report.sent = client.stats
    sink = FolderSink(dry_run) if dry_run is not None else None
    started = time.perf_counter()
    segment_start = start
    live = False
    try:
        for spec in sources:
            source = open_source(spec, segment_start, fps, **(stream_options or {}))
            live = source.live
            rate = fps if fps is not None else source.native_fps
            if isinstance(source, FileSource):
                rate = min(rate, source.native_fps)
            tracks = track_source(
                _with_progress(iter(source), source.name),
                camera_id=camera_id,
                source_key=source.key(),
                detector=detector,
                fps=rate,
                tracker_settings=tracker_settings,
                crop_policy=policy,
                stats=report.pipeline,
            )
            if not source.live:
                tracks = list(tracks)  # the whole file decodes before anything is sent
                segment_start = segment_start + timedelta(seconds=source.duration_seconds)
            pending: list[CropUpload] = []  # a file's crops go out in full batches across tracks
            for track in tracks:
                uploads = uploads_of(track, policy.jpeg_quality)
                report.tracks += 1
                report.crops += len(uploads)
                if sink is not None:
                    sink.write(track, uploads)
                elif source.live:
                    client.send(uploads)
                else:
                    pending.extend(uploads)
            if pending:
                client.send(pending)
            report.sources += 1
            logger.info("%s: done", source.name)
    except (KeyboardInterrupt, VideoError):
        # a live stream keeps its tracks (those open when it stopped were ended and sent, see
        # track_source); a file run keeps nothing and is simply run again
        if sink is not None:
            sink.close() if live else sink.abort()
        raise
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        report.frames = report.pipeline.frames
        report.seconds = time.perf_counter() - started
    if sink is not None:
        sink.close()
    return report
