"""Prometheus metrics for operators (GET /metrics/service); one registry per app instance.

Not footfall (GET /metrics, routes/footfall.py) nor retrieval accuracy (CMC/mAP, training).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "reid_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "reid_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "reid_embed_batch_size",
            "Images per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "reid_embed_batch_seconds",
            "Model time per batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_size = Gauge("reid_index_vectors", "Vectors in the search index", registry=self.registry)
        self.ingested = Counter(
            "reid_gallery_images", "Gallery images by ingest result", ["status"], registry=self.registry
        )
        self.jobs_leader = Gauge(
            "reid_jobs_leader",
            "1 while this process holds the background jobs lease (one replica of several)",
            registry=self.registry,
        )
        self.job_runs = Counter(
            "reid_job_runs", "Background job runs in this process", ["job"], registry=self.registry
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class MetricsMiddleware:
    """Counts requests and times them by route template (not raw path, so ids do not explode labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
