"""The FastAPI application: `create_app(settings)` and a lifespan that owns every resource.

Start-up order: settings checked -> database migrated -> model loaded -> stored embeddings
checked against the model -> orphaned files swept -> index loaded and checked against the
database (rebuilt when missing or inconsistent) -> micro-batcher and background tasks started.
Shut-down stops them in reverse and saves the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select

from model.embedder import Embedder
from model.errors import ReidError
from model.health import ModelHealth, check_model
from service import openapi
from service.audit import AuditWriter
from service.batcher import MicroBatcher
from service.context import ServiceContext
from service.db import make_engine, make_sessionmaker, upgrade_database, write_session
from service.errors import install_error_handlers
from service.gallery_index import GalleryIndex
from service.headers import SecurityHeaders
from service.jobs import JobLease
from service.limits import BodySizeLimit
from service.prometheus import MetricsMiddleware, ServiceMetrics
from service.retention import purge_periodically
from service.security import KeyRing
from service.settings import Settings
from service.storage import ImageStore
from service.tables import GalleryItem, ServiceState
from service.trust import operator_warnings
from service.watches import WatchRegistry

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
INDEX_SAVE_INTERVAL_S = 300.0
INDEX_MAINTENANCE_S = 60.0


def load_embedder(settings: Settings) -> Embedder:
    """The checkpoint in REID_WEIGHTS, or (dev mode only) a randomly initialised network."""
    cache_dir = settings.data_dir / "onnx-cache"
    if settings.weights is not None:
        return Embedder.from_checkpoint(
            settings.weights,
            runtime=settings.runtime,
            cache_dir=cache_dir,
            device=settings.device,
            precision=settings.precision,
            flip=settings.flip,
            batch_size=settings.batch_size,
        )
    if not settings.dev_mode:
        raise ReidError("REID_WEIGHTS is not set; random weights are only allowed with REID_DEV_MODE=1")
    logger.warning("=" * 72)
    logger.warning("NO WEIGHTS: using a RANDOMLY INITIALISED network. Search results are meaningless.")
    logger.warning("=" * 72)
    return Embedder.random_init(
        runtime=settings.runtime,
        cache_dir=cache_dir,
        device=settings.device,
        precision=settings.precision,
        flip=settings.flip,
        batch_size=settings.batch_size,
    )


_HEALTH: weakref.WeakKeyDictionary[Embedder, ModelHealth] = weakref.WeakKeyDictionary()


def model_fingerprint(embedder: Embedder) -> str:
    """What decides the vectors: preprocessing, the embedded feature and every weight (model.fingerprint);
    the same for torch and a faithful fp32 ONNX export of the same weights."""
    return embedder.fingerprint


def check_model_matches_data(sessions, embedder: Embedder, allow_change: bool = False) -> None:
    """Vectors from one model only: refuse to start when the gallery's embeddings came from another model
    (other dimension, or other weights unless REID_ALLOW_MODEL_CHANGE is set)."""
    fingerprint = model_fingerprint(embedder)
    with write_session(sessions) as session:
        dims = set(session.execute(select(GalleryItem.embedding_dim).distinct()).scalars())
        if dims and dims != {embedder.dim}:
            raise ReidError(
                f"the gallery holds {sorted(dims)}-dimensional embeddings but the model gives {embedder.dim}; "
                "use the weights the gallery was built with"
            )
        state = session.get(ServiceState, "embedding_model")
        if state is not None and state.value != fingerprint and dims:
            if not allow_change:
                raise ReidError(
                    f"the gallery's embeddings came from model [{state.value}] but this is [{fingerprint}]; "
                    "searching would compare vectors of different models. Use the original weights, or set "
                    "REID_ALLOW_MODEL_CHANGE=1 to accept mixed vectors"
                )
            logger.warning(
                "model changed from [%s] to [%s]; old and new vectors are mixed", state.value, fingerprint
            )
        if state is None:
            session.add(ServiceState(key="embedding_model", value=fingerprint))
        else:
            state.value = fingerprint


def log_model_health(embedder: Embedder) -> ModelHealth:
    """Embed the fixed probe batch and log the spread of their similarities (loudly when collapsed).
    Measured once per embedder object (its weights do not change while it serves)."""
    health = _HEALTH.get(embedder)
    if health is None:
        health = _HEALTH[embedder] = check_model(embedder)
    if health.collapsed:
        logger.warning("model health: %s", health.verdict)
    else:
        logger.info("model health: %s", health.verdict)
    return health


def sweep_files(sessions, store: ImageStore, min_age_s: float = 0.0) -> int:
    with sessions() as session:
        rows = session.execute(select(GalleryItem.image_path, GalleryItem.thumbnail_path)).all()
    referenced = {p for row in rows for p in row}
    return store.sweep(referenced, min_age_s)


def reconcile_index(ctx: ServiceContext) -> tuple[int, int]:
    with ctx.ingest_lock:  # no commit is between its database write and its index add
        changed = ctx.index.reconcile(ctx.sessions)
    ctx.metrics.index_size.set(len(ctx.index))
    return changed


async def _maintain_index(ctx: ServiceContext) -> None:
    """Every INDEX_MAINTENANCE_S: reconcile the index with the database; every INDEX_SAVE_INTERVAL_S: save it."""
    last_save = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(INDEX_MAINTENANCE_S)
        if ctx.index.shared and ctx.jobs is not None and not ctx.jobs.held:
            continue  # one copy for every replica: the jobs lease holder reconciles it
        try:
            ctx.metrics.job_runs.labels("reconcile").inc()
            await asyncio.to_thread(reconcile_index, ctx)
            now = asyncio.get_running_loop().time()
            if ctx.index.dirty and now - last_save >= INDEX_SAVE_INTERVAL_S:
                await asyncio.to_thread(ctx.index.save)
                last_save = now
        except Exception:
            logger.exception("index maintenance failed; will retry")


async def _replica_duties(ctx: ServiceContext) -> None:
    """Every REID_REPLICA_POLL_S: keep or take the jobs lease; push other replicas' watch matches."""
    while True:
        try:
            held = await asyncio.to_thread(ctx.jobs.refresh)
            ctx.metrics.jobs_leader.set(1 if held else 0)
            await asyncio.to_thread(ctx.watches.publish_new)
        except Exception:
            logger.exception("replica duties failed; will retry")
        await asyncio.sleep(ctx.settings.replica_poll_s)


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> FastAPI:
    """Build the app. `embedder` overrides the weights in the settings (tests inject a small network)."""
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.check_safe()
        engine = make_engine(settings.resolved_database_url)
        try:  # a failed start releases the database
            await asyncio.to_thread(upgrade_database, engine)
            sessions = make_sessionmaker(engine)
            model = embedder or await asyncio.to_thread(load_embedder, settings)
            await asyncio.to_thread(check_model_matches_data, sessions, model, settings.allow_model_change)
            health = await asyncio.to_thread(log_model_health, model)
            store = ImageStore(settings.images_dir, settings.thumbnail_size)
            await asyncio.to_thread(sweep_files, sessions, store, settings.resolved_sweep_grace_s)
            index = await asyncio.to_thread(
                partial(GalleryIndex.open, **settings.store_options()),
                settings.index_path,
                model.dim,
                sessions=sessions,
            )
            index.store.set_search_params(nprobe=settings.index_nprobe, ef_search=settings.index_ef_search)
        except BaseException:
            engine.dispose()
            raise
        batcher = MicroBatcher(
            model.embed, settings.batch_size, settings.batch_wait_ms, metrics.observe_batch
        )
        await batcher.start()
        audit_writer = AuditWriter(sessions)
        audit_writer.start()
        ctx = ServiceContext(
            settings,
            engine,
            sessions,
            store,
            model,
            index,
            batcher,
            metrics,
            KeyRing(settings.bootstrap_keys()),
            audit_writer,
        )
        ctx.model_health = health
        ctx.warnings = operator_warnings(settings.dev_mode, model.meta.source, health)
        ctx.watches = WatchRegistry(sessions, model.dim)
        active_watches = await asyncio.to_thread(ctx.watches.load)
        ctx.commit_listeners.append(ctx.watches.on_commit)
        if active_watches:
            logger.info("%d active watch(es) resumed", active_watches)
        ctx.jobs = JobLease(engine)
        metrics.jobs_leader.set(1 if await asyncio.to_thread(ctx.jobs.refresh) else 0)
        metrics.index_size.set(len(index))
        app.state.ctx = ctx
        tasks = [
            asyncio.create_task(_maintain_index(ctx), name="index-maintenance"),
            asyncio.create_task(_replica_duties(ctx), name="replica-duties"),
        ]
        if settings.retention_days > 0:
            tasks.append(
                asyncio.create_task(purge_periodically(ctx, settings.purge_interval_s), name="retention")
            )
        ctx.ready = True
        logger.info(
            "service ready: model %s, %d indexed items, data in %s",
            ctx.model_name,
            len(index),
            settings.data_dir,
        )
        try:
            yield
        finally:
            ctx.ready = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await batcher.stop()
            await asyncio.to_thread(audit_writer.close)  # every queued audit record written
            await asyncio.to_thread(ctx.jobs.release)  # another replica takes the jobs over at once
            await asyncio.to_thread(index.save)
            index.close()
            engine.dispose()
            app.state.stopped_cleanly = True  # `reid serve` exits 0 after a signal only when this is set
            logger.info("service stopped")

    app = FastAPI(
        title="RGA re-ID service",
        version="0.1.0",
        description="Person re-identification: gallery, search, footfall. Send the API key in X-API-Key.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stopped_cleanly = False
    install_error_handlers(app)
    # Every file at its limit, plus room for the form fields and multipart framing.
    body_limit = settings.max_files_per_request * (settings.max_upload_bytes + 4096) + 1024 * 1024
    app.add_middleware(BodySizeLimit, limit=body_limit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    from service.routes import audit, cameras, footfall, gallery, health, search, visitors, watches

    for module in (health, gallery, search, footfall, cameras, visitors, audit, watches):
        app.include_router(module.router)
    openapi.install(app, settings)
    if STATIC_DIR.is_dir():  # the operator console (no build step); absent in a bare API checkout
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def console() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

    return app
