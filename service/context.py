"""Everything a request handler needs, created by the app's lifespan and kept on app.state.ctx."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from model.embedder import Embedder
from service.batcher import MicroBatcher
from service.gallery_index import GalleryIndex
from service.prometheus import ServiceMetrics
from service.settings import Settings
from service.storage import ImageStore


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore
    embedder: Embedder
    index: GalleryIndex
    batcher: MicroBatcher
    metrics: ServiceMetrics
    # Serialises the dedupe check, visitor assignment, row insert and index add of ingests.
    ingest_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False

    @property
    def model_name(self) -> str:
        meta = self.embedder.meta
        return f"{meta.variant} {meta.input_size[0]}x{meta.input_size[1]} ({meta.source}), dim {self.embedder.dim}"


def get_ctx(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context (503 while starting or stopping)."""
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None or not ctx.ready:
        from service.errors import ApiError

        raise ApiError(503, "unavailable", "the service is starting or stopping; retry shortly")
    return ctx
