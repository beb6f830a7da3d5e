"""The feed's FastAPI application: routers, JSON errors, page, health, metrics, escalation."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from broker.transport import Transport
from services.feed import (
    api_alerts,
    api_cameras,
    api_families,
    api_feedback,
    api_lines,
    api_live,
    api_stream,
    docs,
    errors,
)
from services.feed.auth import Reader, reader
from services.feed.guard import Guard
from services.feed.metrics import FeedMetrics
from services.feed.page import HERE, render
from services.feed.settings import FeedSettings
from services.feed.ssehub import StreamHub
from services.feed.tickets import TicketBook
from services.store import alert_ops as ops
from services.store import alerts as al
from services.store import queries
from services.store.engine import writer

log = logging.getLogger(__name__)


class Escalator:
    """Background thread: escalate critical alerts left unacknowledged (idempotent in SQL)."""

    def __init__(self, engine: Engine, settings: FeedSettings, metrics: FeedMetrics) -> None:
        self.engine, self.settings, self.metrics = engine, settings, metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-escalator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def once(self) -> list[int]:
        with self.engine.begin() as conn:
            done = ops.escalate_due(conn, self.settings.feed_escalate_after_s)
        if done:
            self.metrics.escalations.inc(len(done))
            log.info("escalated %d critical alert(s): %s", len(done), done[:20])
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.settings.feed_escalate_interval_s):
            try:
                self.once()
            except Exception:
                log.exception("escalation pass failed; retrying next interval")


def create_app(
    settings: FeedSettings,
    *,
    engine: Engine | None = None,
    transport: Transport | None = None,
    escalate: bool = True,
) -> FastAPI:
    """The app. ``engine`` defaults to one from settings; ``transport`` (started by the
    caller) publishes threshold and curation requests; None answers those with 503."""
    if engine is None:
        from services.store.engine import make_engine

        engine = make_engine(settings.db_url)
    metrics = FeedMetrics()
    escalator = Escalator(writer(engine), settings, metrics)
    hub = StreamHub(
        engine,
        poll_s=settings.feed_poll_ms / 1000.0,
        max_total=settings.feed_sse_max,
        max_per_key=settings.feed_sse_max_per_token,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if escalate:
            escalator.start()
        try:
            yield
        finally:
            hub.stop()
            if escalate:
                escalator.stop()

    # FastAPI's own /docs would load Swagger UI from a CDN onto the origin whose localStorage
    # holds the operator token: services.feed.docs serves the vendored copy instead, with
    # integrity. /docs and the OpenAPI description are reads (a token in the secure profile).
    app = FastAPI(
        title="LineWatch operator feed",
        version="1",
        description="Alerts, defect families, lines and workers; live SSE stream. "
        "Viewers read, operators act (Authorization: Bearer <token>).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings, app.state.engine, app.state.transport = settings, engine, transport
    app.state.metrics, app.state.escalator, app.state.hub = metrics, escalator, hub
    app.state.tickets = TicketBook(settings.feed_ticket_ttl_s)
    errors.install(app)
    app.middleware("http")(metrics.middleware)
    app.add_middleware(Guard, allowed_hosts=settings.hosts, max_body=settings.feed_max_body_bytes)
    for module in (
        api_alerts,
        api_families,
        api_lines,
        api_live,
        api_cameras,
        api_feedback,
        api_stream,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _basic_routes(app, engine, settings, metrics)
    docs.install(app, settings.reads_need_token)
    return app


def _basic_routes(
    app: FastAPI, engine: Engine, settings: FeedSettings, metrics: FeedMetrics
) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        html = render(
            engine,
            with_data=not settings.reads_need_token,
            lines_window_s=settings.feed_lines_window_s,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(reader)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/healthz", tags=["ops"])
    def healthz(request: Request) -> JSONResponse:
        """200 when the database answers; reports the bus state (the feed reads SQL only).
        Without a token where reads need one, only the status (for health checks)."""
        transport = request.app.state.transport
        bus = None if transport is None else bool(transport.connected)
        try:
            with engine.connect() as conn:
                last = queries.last_event_id(conn)
        except Exception as exc:
            body: dict[str, Any] = {"status": "unhealthy", "db": False, "bus": bus}
            body["detail"] = type(exc).__name__
            return JSONResponse(_public(request, body), 503)
        body = {"status": "ok", "db": True, "bus": bus, "last_event_id": last}
        return JSONResponse(_public(request, body))

    def _public(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        if settings.reads_need_token and request.headers.get("authorization") is None:
            return {"status": body["status"]}
        reader(request)  # a token given must be valid
        return body

    @app.get("/metrics", tags=["ops"], response_class=Response, dependencies=[Depends(reader)])
    def metrics_endpoint() -> Response:
        try:
            with engine.connect() as conn:
                counts = ops.open_counts(conn)
            for sev in al.SEVERITIES:
                metrics.open_alerts.labels(sev).set(counts.get(sev, 0))
        except Exception:
            log.warning("open alert counts unavailable for /metrics")
        return metrics.render()

    @app.get("/api/whoami", tags=["ops"])
    def whoami(who: Reader) -> dict[str, Any]:
        return {"name": who.name, "role": who.role}
