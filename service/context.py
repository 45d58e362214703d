"""Everything a request handler needs, created by the app's lifespan and kept on app.state.ctx.

Handlers reach it only through `get_ctx` (service/deps.py: `Ctx`, `DbSession` and the role aliases),
which answers 503 while the service is starting or stopping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from model.embedder import Embedder
from model.health import ModelHealth
from service.audit import AuditWriter
from service.batcher import MicroBatcher
from service.errors import ApiError
from service.gallery_index import GalleryIndex
from service.prometheus import ServiceMetrics
from service.settings import Settings
from service.storage import ImageStore

if TYPE_CHECKING:
    from service.ingest import CommittedItem
    from service.jobs import JobLease
    from service.security import KeyRing
    from service.watches import WatchRegistry

# Called after new gallery items are committed and indexed, with the context and those items.
CommitListener = Callable[["ServiceContext", "list[CommittedItem]"], None]


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
    keyring: KeyRing
    audit: AuditWriter  # search records, written off the request path
    # Run in order after every ingest that committed items (e.g. live watches); an exception in one
    # is logged and does not fail the ingest or stop the others.
    commit_listeners: list[CommitListener] = field(default_factory=list)
    # Serialises the dedupe check, visitor assignment, row insert and index add of ingests.
    ingest_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    model_health: ModelHealth | None = None  # the probe-batch check of start-up (model.health)
    warnings: list[dict[str, str]] = field(default_factory=list)  # service.trust.operator_warnings
    watches: WatchRegistry | None = None  # live watches (service/watches.py), a commit listener
    jobs: JobLease | None = None  # held: this replica runs the once-across-replicas jobs (service/jobs.py)

    @property
    def model_name(self) -> str:
        meta = self.embedder.meta
        return f"{meta.variant} {meta.input_size[0]}x{meta.input_size[1]} ({meta.source}), dim {self.embedder.dim}"


def get_ctx(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context (503 while starting or stopping)."""
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None or not ctx.ready:
        raise ApiError(503, "unavailable", "the service is starting or stopping; retry shortly")
    return ctx
