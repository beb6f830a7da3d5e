"""Prometheus metrics of the feed (own registry, so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class FeedMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lw_feed_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "lw_feed_request_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.sse_clients = Gauge("lw_feed_sse_clients", "open /api/stream connections", registry=r)
        self.actions = Counter("lw_feed_actions_total", "operator actions", ["action"], registry=r)
        self.escalations = Counter("lw_feed_escalations_total", "alerts escalated", registry=r)
        self.open_alerts = Gauge("lw_feed_open_alerts", "open alerts", ["severity"], registry=r)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        if route != "/api/stream":
            self.latency.labels(route).observe(time.perf_counter() - start)
        return response
