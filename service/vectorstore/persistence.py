"""The vector-store file: a small checksummed container, written atomically.

Layout: ``MAGIC`` (8 bytes), header length (uint64 little-endian), the header (JSON: the engine's
settings), the engine's payload stream (for faiss: ``faiss.write_index``), then a SHA-256 of
everything before it. It is written to a temporary file in the same folder, fsynced and moved into
place with ``os.replace``, so a crash leaves the old file or the new one, never half of one.
Reading checks the checksum before anything is parsed; a missing, truncated, corrupt or foreign
file raises ``VectorStoreFileError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.vectorstore.base import VectorStoreFileError

MAGIC = b"REIDVIX1"
DIGEST_SIZE = 32
T = TypeVar("T")

Writer = Callable[[bytes], int]
Reader = Callable[[int], bytes]


def write_atomic(path: str | os.PathLike, header: dict, write_payload: Callable[[Writer], None]) -> None:
    """Write ``header`` and the payload that ``write_payload(write)`` produces to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = json.dumps(header).encode()
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            digest = hashlib.sha256()

            def write(data: bytes) -> int:
                digest.update(data)
                handle.write(data)
                return len(data)

            write(MAGIC + struct.pack("<Q", len(encoded)) + encoded)
            write_payload(write)
            handle.write(digest.digest())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def read_verified(path: str | os.PathLike, read_payload: Callable[[dict, Reader], T]) -> tuple[dict, T]:
    """Check the file's checksum, then parse its header and hand the payload stream to ``read_payload``.

    Any failure (the file, its checksum, its header, or ``read_payload`` raising) -> VectorStoreFileError.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            remaining = size - DIGEST_SIZE
            if remaining < len(MAGIC) + 8:
                raise VectorStoreFileError(f"index file {path} is truncated ({size} bytes)")
            digest = hashlib.sha256()
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 24))
                if not block:
                    raise VectorStoreFileError(f"index file {path} is truncated")
                digest.update(block)
                remaining -= len(block)
            if handle.read(DIGEST_SIZE) != digest.digest():
                raise VectorStoreFileError(f"index file {path} is corrupt (checksum mismatch)")
            handle.seek(0)
            if handle.read(len(MAGIC)) != MAGIC:
                raise VectorStoreFileError(f"{path} is not a saved vector index")
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            limit = size - DIGEST_SIZE - handle.tell()

            def read(n: int) -> bytes:
                nonlocal limit
                data = handle.read(min(n, limit))
                limit -= len(data)
                return data

            return header, read_payload(header, read)
    except VectorStoreFileError:
        raise
    except FileNotFoundError:
        raise VectorStoreFileError(f"index file {path} does not exist") from None
    except Exception as exc:  # faiss raises RuntimeError on malformed streams, json ValueError, ...
        raise VectorStoreFileError(f"index file {path} cannot be read: {exc}") from exc


def peek_header(path: str | os.PathLike) -> dict:
    """The header of a saved store, unverified (to tell engines apart before the real, checked read);
    {} when the file is missing or not a store file."""
    try:
        with Path(path).open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return {}
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > 1 << 20:
                return {}
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, struct.error):
        return {}
    return header if isinstance(header, dict) else {}
