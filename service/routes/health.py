"""Liveness, readiness and Prometheus metrics for operators."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import repository
from service.deps import Ctx, SearchKey

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    # The one handler that reads app.state itself: it must answer (503) exactly when `Ctx` would refuse.
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None or not ctx.ready:
        return JSONResponse(
            {"error": {"code": "unavailable", "message": "not ready", "field": None}, "status": "starting"},
            status_code=503,
        )
    with ctx.sessions() as session:
        items = repository.count(session)
    return {
        "status": "ready",
        "model": ctx.model_name,
        "model_health": ctx.model_health.to_dict() if ctx.model_health is not None else None,
        "warnings": ctx.warnings,
        "index_size": len(ctx.index),
        "gallery_items": items,
    }


@router.get("/metrics/service", response_class=Response)
async def service_metrics(ctx: Ctx, _: SearchKey) -> Response:
    """Prometheus text format: requests, latencies, batch sizes, index size."""
    ctx.metrics.index_size.set(len(ctx.index))
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
