"""Typed service settings: environment variables with the REID_ prefix, or a .env file.

Insecure values (no weights, the well-known dev keys, short keys) are refused unless
REID_DEV_MODE is on; dev mode says so loudly in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.errors import ReidError

logger = logging.getLogger(__name__)

ROLES = ("ingest", "search", "admin")
DEV_KEYS = {"dev-admin-key": "admin", "dev-search-key": "search", "dev-ingest-key": "ingest"}
MIN_KEY_LENGTH = 16


class SettingsError(ReidError):
    """The service configuration is unsafe or inconsistent."""


class Settings(BaseSettings):
    """Everything the service reads from its environment (see docs/service.md for the table)."""

    model_config = SettingsConfigDict(env_prefix="REID_", env_file=".env", extra="ignore")

    dev_mode: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path("data/service")
    database_url: str | None = None
    # Bootstrap keys, comma separated, each "name:role:secret" or "role:secret" (name = role).
    api_keys: str = ""
    weights: Path | None = None
    # torch, or onnxruntime (a checkpoint is exported to ONNX once, cached under data_dir/onnx-cache);
    # None: by file (REID_WEIGHTS=*.onnx runs on onnxruntime, a checkpoint on torch)
    runtime: Literal["torch", "onnxruntime"] | None = None
    # torch runtime: fp32, bf16 (the fast choice on a CPU with AMX), or auto (bf16 on CUDA and on CPUs with
    # native bf16, else fp32). An ONNX file runs its own precision (fp32 or int8): bf16 with one is refused.
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    allow_model_change: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    flip: bool = False
    batch_size: int = Field(32, ge=1, le=1024)
    batch_wait_ms: float = Field(5.0, ge=0, le=1000)
    index_kind: Literal["flat", "ivf", "hnsw"] = "flat"
    index_nprobe: int | None = Field(
        None, ge=1, le=65536
    )  # IVF lists probed per query (None: the index's default)
    index_ef_search: int | None = Field(None, ge=1, le=65536)  # HNSW candidate list size
    # flat index: vectors held and scanned as float32; bf16: held as float32, scanned as a bfloat16 copy
    # with an exact float32 re-score of the best; fp16: held as float16, re-scored from the database
    # int8: held as float32, scanned as per-row int8 codes by a compiled kernel (bf16 without it), re-scored.
    # Default: int8 for the flat index (the fastest exact search measured: BENCHMARKS.md), fp32 for ivf / hnsw
    index_storage: Literal["fp32", "bf16", "fp16", "int8"] = "int8"
    # where the vectors live: faiss (in this process, saved under data_dir) or a Milvus server / cluster
    vector_store: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str | None = None  # e.g. http://milvus:19530
    milvus_token: str | None = None  # "user:password" or an API key, when the server checks them
    milvus_collection: str = "reid_gallery"
    milvus_index_type: Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW"] = "HNSW"
    milvus_index_params: dict[str, int] = Field(default_factory=dict)  # JSON, e.g. {"M": 16, "efConstruction": 200}
    milvus_search_params: dict[str, int] = Field(default_factory=dict)  # JSON, e.g. {"ef": 128}
    # Strong waits for Milvus' next time tick on every search; the others search at the newest write any
    # replica acknowledged (kept in the database) and wait only while a write is that fresh (docs/scale.md)
    milvus_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = "Session"
    # the server's dataCoord.segment.maxSize (MB; docker/milvus-user.yaml): an IVF index's nlist is per segment,
    # and its default is derived from the rows one segment holds (milvus_store.default_nlist)
    milvus_segment_max_mb: int = Field(2048, ge=1, le=65536)
    # a new collection partitioned by camera_id (a camera-filtered search then searches only that camera's
    # partition); an existing collection is used as it was made
    milvus_partition_key: bool = False
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=64)
    max_files_per_request: int = Field(64, ge=1, le=1024)
    max_query_files: int = Field(8, ge=1, le=64)
    visitor_threshold: float = Field(0.75, ge=-1.0, le=1.0)
    visitor_horizon_s: float = Field(2 * 3600.0, gt=0)
    retention_days: float = Field(30.0, ge=0)
    purge_interval_s: float = Field(3600.0, gt=0)
    # Replicas: how often a process checks / takes the background jobs lease and reads other replicas'
    # watch matches for its event streams (docs/service.md, "Replicas")
    replica_poll_s: float = Field(2.0, gt=0, le=3600)
    # The start-up sweep keeps unreferenced image files younger than this (None: 0 on SQLite, one process;
    # 900 on PostgreSQL, where another replica may be between writing a file and committing its row)
    sweep_grace_s: float | None = Field(None, ge=0)
    metrics_max_buckets: int = Field(10_000, ge=1)
    metrics_max_cells: int = Field(100_000, ge=1)  # buckets x cameras of one GET /metrics
    metrics_max_window_days: float = Field(366.0, gt=0)
    thumbnail_size: int = Field(128, ge=16, le=1024)

    @model_validator(mode="after")
    def _check_index_storage(self) -> Settings:
        if self.index_storage != "fp32" and self.index_kind != "flat":
            if "index_storage" in self.model_fields_set:
                raise ValueError(
                    f"REID_INDEX_STORAGE={self.index_storage} is for REID_INDEX_KIND=flat (exact search)"
                )
            self.index_storage = "fp32"  # the default storage is the flat index's; ivf / hnsw hold float32
        if self.vector_store == "milvus":
            from service.vectorstore.milvus_store import check_collection_name, check_index_config

            if not self.milvus_uri:
                raise ValueError("REID_VECTOR_STORE=milvus needs REID_MILVUS_URI (e.g. http://127.0.0.1:19530)")
            check_collection_name(self.milvus_collection)
            check_index_config(self.milvus_index_type, self.milvus_index_params, self.milvus_search_params)
        return self

    @field_validator("api_keys")
    @classmethod
    def _check_key_format(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    # -- derived ----------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'reid.db'}"

    @property
    def resolved_sweep_grace_s(self) -> float:
        if self.sweep_grace_s is not None:
            return self.sweep_grace_s
        return 0.0 if self.resolved_database_url.startswith("sqlite") else 900.0

    @property
    def index_path(self) -> Path:
        """The faiss index file, or for Milvus a small reference to the collection."""
        name = "gallery.milvus" if self.vector_store == "milvus" else "gallery.faiss"
        return self.data_dir / "index" / name

    def store_options(self) -> dict:
        """What ``vectorstore.create_store`` needs besides the dim, for the configured engine."""
        if self.vector_store == "milvus":
            return dict(
                engine="milvus",
                uri=self.milvus_uri,
                token=self.milvus_token,
                collection=self.milvus_collection,
                index_type=self.milvus_index_type,
                index_params=self.milvus_index_params,
                search_params=self.milvus_search_params,
                consistency=self.milvus_consistency,
                segment_max_mb=self.milvus_segment_max_mb,
                partition_key=self.milvus_partition_key,
            )
        return dict(engine="faiss", kind=self.index_kind, storage=self.index_storage)

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def bootstrap_keys(self) -> list[tuple[str, str, str]]:
        """(name, role, secret) for the keys given in the environment, plus the dev keys in dev mode."""
        keys = parse_api_keys(self.api_keys)
        if self.dev_mode:
            keys += [(secret, role, secret) for secret, role in DEV_KEYS.items()]
        return keys

    def check_safe(self, warn: bool = True) -> None:
        """Refuse insecure settings outside dev mode; warn loudly inside it (unless `warn` is False)."""
        if self.dev_mode:
            if not warn:
                return
            logger.warning(
                "DEV MODE: well-known API keys (%s) are accepted%s. Never expose this instance.",
                ", ".join(DEV_KEYS),
                ""
                if self.weights
                else " and the network has RANDOM weights (search results are meaningless)",
            )
            return
        problems = []
        if self.weights is None:
            problems.append("REID_WEIGHTS is not set (random weights are only allowed with REID_DEV_MODE=1)")
        for name, _role, secret in parse_api_keys(self.api_keys):
            if secret in DEV_KEYS:
                problems.append(f"API key {name!r} uses a well-known dev key")
            elif len(secret) < MIN_KEY_LENGTH:
                problems.append(f"API key {name!r} is shorter than {MIN_KEY_LENGTH} characters")
        if problems:
            raise SettingsError("refusing to start with insecure settings: " + "; ".join(problems))


def parse_api_keys(text: str) -> list[tuple[str, str, str]]:
    """ "name:role:secret,role:secret" -> [(name, role, secret)]; ValueError naming a bad entry."""
    keys = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) == 2:
            parts = [parts[0], *parts]
        if len(parts) != 3 or not all(parts):
            raise ValueError("each API key must be 'name:role:secret' or 'role:secret'")
        name, role, secret = parts
        if role not in ROLES:
            raise ValueError(f"API key {name!r} has unknown role {role!r}; roles: {', '.join(ROLES)}")
        keys.append((name, role, secret))
    return keys
