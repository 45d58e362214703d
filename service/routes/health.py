"""Liveness, readiness and Prometheus metrics for operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from service.security import require_search
from service.tables import GalleryItem

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None or not ctx.ready:
        return JSONResponse(
            {"error": {"code": "unavailable", "message": "not ready", "field": None}, "status": "starting"},
            status_code=503,
        )
    with ctx.sessions() as session:
        items = session.execute(select(func.count(GalleryItem.id))).scalar_one()
    return {
        "status": "ready",
        "model": ctx.model_name,
        "model_health": ctx.model_health.to_dict() if ctx.model_health is not None else None,
        "warnings": ctx.warnings,
        "index_size": len(ctx.index),
        "gallery_items": items,
    }


@router.get("/metrics/service", response_class=Response, dependencies=[Depends(require_search)])
async def service_metrics(request: Request) -> Response:
    """Prometheus text format: requests, latencies, batch sizes, index size."""
    metrics = request.app.state.metrics
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        metrics.index_size.set(len(ctx.index))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
