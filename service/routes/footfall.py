"""GET /metrics: footfall per time bucket x camera (sightings, unique visitors) over a window.

(Prometheus metrics for operators are GET /metrics/service, service/prometheus.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi import APIRouter, Query

from service import footfall, repository, validation
from service.deps import Ctx, SearchKey
from service.errors import invalid
from service.schemas import ErrorBody, iso

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    summary="Footfall: sightings and unique visitors per bucket x camera (default: the last 24 h by hour)",
)
def footfall_metrics(
    ctx: Ctx,
    _: SearchKey,
    start: str | None = Query(None, description="ISO 8601 (default: end - 24 h)"),
    end: str | None = Query(None, description="ISO 8601 (default: now)"),
    bucket: str = Query("1h", max_length=16, description="Nm, Nh or Nd"),
    camera_id: list[str] | None = Query(None),
):
    settings = ctx.settings
    try:
        bucket_s = int(footfall.parse_bucket(bucket))
    except ValueError:
        raise invalid(f"bucket {bucket!r} must look like 15m, 1h or 1d", "bucket") from None
    if bucket_s <= 0:
        raise invalid(f"bucket {bucket!r} must be positive", "bucket")
    t1 = validation.timestamp(end, "end", required=False) or datetime.now(UTC).replace(microsecond=0)
    t0 = validation.timestamp(start, "start", required=False) or t1 - timedelta(days=1)
    validation.window(t0, t1, settings.metrics_max_window_days)
    n_buckets = -(-(t1 - t0).total_seconds() // bucket_s)
    cameras = validation.camera_ids(camera_id)
    if n_buckets > settings.metrics_max_buckets:
        raise invalid(
            f"{int(n_buckets)} buckets of {bucket}; the limit is {settings.metrics_max_buckets} (use a larger bucket)",
            "bucket",
        )
    with ctx.sessions() as session:
        rows = repository.sightings(session, cameras, t0, t1)
        if not cameras:
            cameras_seen = sorted({r.camera_id for r in rows})
        else:
            cameras_seen = cameras
    times = np.array([r.captured_at.timestamp() for r in rows], dtype=np.float64)
    cams = np.array([r.camera_id for r in rows], dtype=object)
    # An item without a visitor (should not happen) counts as its own visitor.
    visitors = np.array([r.visitor_id if r.visitor_id is not None else -r.id for r in rows], dtype=np.int64)
    result = footfall.footfall_series(
        times, cams, visitors, t0, t1, bucket_s, cameras_seen, max_buckets=settings.metrics_max_buckets
    )
    return {
        "start": iso(t0),
        "end": iso(t1),
        "bucket": bucket,
        "bucket_seconds": bucket_s,
        "cameras": cameras_seen,
        "series": result["series"],
        "totals": result["totals"],
    }
