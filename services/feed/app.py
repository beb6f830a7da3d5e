"""The feed's FastAPI application: routers, JSON errors, page, health, metrics, escalation."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from broker.transport import Transport
from services.feed import api_alerts, api_cameras, api_families, api_lines, api_stream, errors
from services.feed.auth import Reader
from services.feed.metrics import FeedMetrics
from services.feed.page import HERE, render
from services.feed.settings import FeedSettings
from services.store import alert_ops as ops
from services.store import alerts as al
from services.store import queries

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
    escalator = Escalator(engine, settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if escalate:
            escalator.start()
        try:
            yield
        finally:
            if escalate:
                escalator.stop()

    app = FastAPI(
        title="LineWatch operator feed",
        version="1",
        description="Alerts, defect families, lines and workers; live SSE stream. "
        "Viewers read, operators act (Authorization: Bearer <token>).",
        lifespan=lifespan,
    )
    app.state.settings, app.state.engine, app.state.transport = settings, engine, transport
    app.state.metrics, app.state.escalator = metrics, escalator
    errors.install(app)
    app.middleware("http")(metrics.middleware)
    for module in (api_alerts, api_families, api_lines, api_cameras, api_stream):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _basic_routes(app, engine, settings, metrics)
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

    @app.get("/healthz", tags=["ops"])
    def healthz(request: Request) -> JSONResponse:
        """200 when the database answers; reports the bus state (the feed reads SQL only)."""
        transport = request.app.state.transport
        bus = None if transport is None else bool(transport.connected)
        try:
            with engine.connect() as conn:
                last = queries.last_event_id(conn)
        except Exception as exc:
            return JSONResponse(
                {"status": "unhealthy", "db": False, "bus": bus, "detail": type(exc).__name__}, 503
            )
        return JSONResponse({"status": "ok", "db": True, "bus": bus, "last_event_id": last})

    @app.get("/metrics", tags=["ops"], response_class=Response)
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
