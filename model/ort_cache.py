"""ONNX Runtime's optimised graph of an rga-reid ONNX file, cached between runs.

Every `reid embed --weights FILE.onnx` used to pay, before its first image: `import onnx`, parsing the
119 MB file, hashing its graph (to tell a faithful export from an edited one, model.fingerprint) and
ONNX Runtime's graph optimisation. With this cache a second run hashes the file's bytes (~0.15 CPU-s),
finds the entry, and opens the already optimised graph with optimisation off.

An entry is two files in `<cache dir>/ort/`: `<key>.onnx` (the graph as ONNX Runtime optimised it,
written through SessionOptions.optimized_model_filepath) and `<key>.json` (what the original file said
about itself: its rga-reid metadata and the SHA-256 of its graph as read). The key hashes the original
file's bytes, the onnxruntime version, the optimisation level and the CPU (model and instruction-set
flags: a graph optimised with ORT_ENABLE_ALL may hold kernels laid out for this CPU), so another file,
an edit, an upgrade or another machine sharing the folder never reuse an entry. Entries are written
atomically (temporary name, then rename) and the record last; a record that does not parse or does not
match, or a graph ONNX Runtime refuses to load, is a miss: the entry is removed and the original file
is used (and cached again). Only CPU sessions use the cache (GPU providers optimise for their device).
The newest KEEP_ENTRIES entries are kept; older ones are removed when a new one is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from model.device import cpu_info
from model.files import atomic_output

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"
KEEP_ENTRIES = 4


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cpu_signature() -> str:
    """The CPU as far as compiled kernels care: model name and instruction-set flags (Linux), else platform."""
    fields = cpu_info("model name", "flags")
    if fields:
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:16]
    return hashlib.sha256(f"{platform.machine()} {platform.processor()}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    key: str
    model_path: Path  # the optimised graph
    props: dict[str, str]  # the original file's metadata_props
    graph_sha256: str  # SHA-256 of the original file's graph as read


class OrtGraphCache:
    """The folder of optimised graphs; see the module docstring."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def key(self, file_hash: str, graph_level: str) -> str:
        import onnxruntime

        parts = [CACHE_VERSION, file_hash, onnxruntime.__version__, graph_level, cpu_signature()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.onnx", self.folder / f"{key}.json"

    def lookup(self, key: str) -> CacheEntry | None:
        model_path, record_path = self._paths(key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("key") != key or not model_path.is_file():
                raise ValueError("record does not match its entry")
            props, graph = record["props"], record["graph_sha256"]
            if not isinstance(props, dict) or not isinstance(graph, str):
                raise ValueError("malformed record")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring a broken ONNX Runtime cache entry %s (%s)", record_path, exc)
            self.discard(key)
            return None
        return CacheEntry(key, model_path, {str(k): str(v) for k, v in props.items()}, graph)

    def temporary_model_path(self) -> Path:
        """Where ONNX Runtime may write an optimised graph before it becomes an entry (store)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="partial-", suffix=".onnx", dir=self.folder)
        os.close(fd)
        return Path(tmp)

    def store(self, key: str, optimised: Path, props: dict[str, str], graph_sha256: str) -> None:
        """Make `optimised` (a temporary_model_path ONNX Runtime wrote) the entry for `key`."""
        model_path, record_path = self._paths(key)
        os.replace(optimised, model_path)
        with atomic_output(record_path, prefix="partial-", suffix=".json") as tmp:
            tmp.write_text(json.dumps({"key": key, "props": props, "graph_sha256": graph_sha256}), encoding="utf-8")
        self.prune()

    def discard(self, key: str) -> None:
        for path in self._paths(key):
            with contextlib.suppress(OSError):
                path.unlink()

    def prune(self, keep: int = KEEP_ENTRIES) -> None:
        """Keep the `keep` newest entries; remove leftovers of interrupted writes older than an hour."""
        records: list[tuple[float, Path]] = []
        now = time.time()
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):  # removed meanwhile by another process
                mtime = path.stat().st_mtime
                if path.name.startswith("partial-"):
                    if now - mtime > 3600:
                        path.unlink()
                elif path.suffix == ".json":
                    records.append((mtime, path))
        for _, old in sorted(records, reverse=True)[keep:]:
            self.discard(old.stem)
