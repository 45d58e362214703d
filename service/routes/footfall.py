"""GET /metrics: footfall per time bucket x camera (sightings, unique visitors) over a window.

(Prometheus metrics for operators are GET /metrics/service, service/prometheus.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Response

from service import footfall, repository, validation
from service.deps import Ctx, SearchKey
from service.errors import invalid
from service.schemas import ErrorBody, iso

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    summary="Footfall: sightings and unique visitors per bucket x camera (default: the last 24 h by hour)",
    description=(
        "`series` is sparse: one row per bucket x camera with at least one sighting (a missing cell is 0); "
        "`totals.by_bucket` lists every bucket and `totals.by_camera` every camera. Buckets x cameras is "
        "capped (REID_METRICS_MAX_CELLS): over it, a 422 says which bucket, window or camera filter fits."
    ),
)
def footfall_metrics(
    ctx: Ctx,
    _: SearchKey,
    start: str | None = Query(None, description="ISO 8601 (default: end - 24 h)"),
    end: str | None = Query(None, description="ISO 8601 (default: now)"),
    bucket: str = Query("1h", max_length=16, description="Nm, Nh or Nd"),
    camera_id: list[str] | None = Query(None),
    format: Literal["json", "csv"] = Query(
        "json",
        description="csv: the same numbers as a table (one row per "
        "bucket x camera, an all-camera row per bucket, then the window's totals)",
    ),
):
    settings = ctx.settings
    try:
        bucket_s = int(footfall.parse_bucket(bucket))
    except ValueError:
        raise invalid(f"bucket {bucket!r} must look like 15m, 1h or 1d", "bucket") from None
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
    edges = footfall.bucket_edges(t0, t1, bucket_s, max_buckets=settings.metrics_max_buckets)
    # The work is bounded before the answer is built: the database counts (Python sees one row per camera,
    # then per non-empty cell), and buckets x cameras is capped before the cells are counted.
    with ctx.sessions() as session:
        by_camera = repository.footfall_by_camera(session, cameras, t0, t1)
        listed = cameras or sorted(by_camera)
        advice = footfall.cells_limit_advice(
            (t1 - t0).total_seconds(), bucket_s, len(listed), settings.metrics_max_cells
        )
        if advice:
            raise invalid(advice, "bucket", code="too_many_cells")
        counts = repository.footfall_by_bucket(session, cameras, t0, t1, bucket_s)
    report = footfall.footfall_report(edges, listed, counts.cells, counts.by_bucket, by_camera, counts.total)
    answer = {
        "start": iso(t0),
        "end": iso(t1),
        "bucket": bucket,
        "bucket_seconds": bucket_s,
        "cameras": listed,
        "series": report["series"],
        "totals": report["totals"],
    }
    if format == "csv":
        name = f"footfall_{t0.astimezone(UTC):%Y%m%dT%H%M%SZ}_{t1.astimezone(UTC):%Y%m%dT%H%M%SZ}_{bucket}.csv"
        return Response(
            footfall.report_csv(answer),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return answer
