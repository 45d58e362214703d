"""Image files on disk: content-hash names in sharded folders, atomic writes, thumbnails.

Several replicas may share the folder (an NFS-style volume): two processes writing the same content hash
each write their own temporary file and rename it over the same name, so a reader sees one complete copy
(same name = same bytes). Files are deleted only under the database's write lock after checking that no
row refers to their content (service/retention.py, service/ingest.py), and the start-up sweep leaves files
younger than REID_SWEEP_GRACE_S alone. An object store (S3, GCS) plugs in behind this class's methods
(write, path/read, delete, sweep): content-hash keys are already immutable and write-once.

A client's file name is never used on disk. Files are written to a temporary name in the
target folder, flushed, then renamed into place, so a crash leaves either nothing or a
`.tmp-*` file that the start-up sweep removes (with any file no database row refers to).
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
# Formats kept byte-for-byte; anything else accepted is re-encoded to PNG.
KEEP_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ImageStore:
    """Stores originals and thumbnails under `root`; paths handed out are relative to it."""

    def __init__(self, root: Path, thumbnail_size: int = 128) -> None:
        self.root = Path(root)
        self.thumbnail_size = thumbnail_size
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def relative_paths(content_hash: str, ext: str) -> tuple[str, str]:
        shard = f"{content_hash[:2]}/{content_hash[2:4]}"
        return f"{shard}/{content_hash}.{ext}", f"{shard}/{content_hash}.thumb.jpg"

    def encode(self, data: bytes, image: Image.Image, source_format: str | None) -> tuple[bytes, str, str]:
        """(bytes to keep, extension, media type) for an uploaded image."""
        if source_format in KEEP_FORMATS:
            ext, media = KEEP_FORMATS[source_format]
            return data, ext, media
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "png", "image/png"

    def thumbnail(self, image: Image.Image) -> bytes:
        thumb = image.copy()
        thumb.thumbnail((self.thumbnail_size, self.thumbnail_size), Image.BILINEAR)
        buffer = io.BytesIO()
        thumb.convert("RGB").save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def write(self, content_hash: str, data: bytes, ext: str, thumbnail: bytes) -> tuple[str, str]:
        """Write the original and its thumbnail atomically; returns their relative paths."""
        image_rel, thumb_rel = self.relative_paths(content_hash, ext)
        atomic_write(self.root / image_rel, data)
        try:
            atomic_write(self.root / thumb_rel, thumbnail)
        except BaseException:
            (self.root / image_rel).unlink(missing_ok=True)
            raise
        return image_rel, thumb_rel

    def path(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"path {relative!r} escapes the image store")
        return path

    def delete(self, relatives: Iterable[str]) -> None:
        for relative in relatives:
            try:
                self.path(relative).unlink(missing_ok=True)
            except OSError as exc:  # a file we cannot remove now is removed by the next sweep
                logger.warning("could not delete %s: %s", relative, exc)

    def sweep(self, referenced: set[str], min_age_s: float = 0.0) -> int:
        """Remove temporary files and files no row refers to; returns how many were removed. With
        ``min_age_s`` files changed more recently are kept: on a folder shared by replicas they may be
        another process's ingest between its file write and its commit."""
        removed = 0
        cutoff = time.time() - min_age_s
        for path in self.root.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(self.root).as_posix()
            if path.name.startswith(TMP_PREFIX) or relative not in referenced:
                try:
                    if min_age_s and path.stat().st_mtime > cutoff:
                        continue
                except FileNotFoundError:  # removed meanwhile
                    continue
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.warning("removed %d orphaned or half-written image file(s) from %s", removed, self.root)
        return removed
