"""Line and worker endpoints: per-station throughput and defect rate; worker health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.feed.auth import Reader
from services.feed.deps import engine_of
from services.store import queries

router = APIRouter(prefix="/api", tags=["lines"])


@router.get("/lines")
def lines(
    request: Request,
    _who: Reader,
    window_s: Annotated[float | None, Query(ge=10, le=86_400)] = None,
) -> dict[str, Any]:
    """Per site/line/station over the window: frames/min, defect rate, last verdict."""
    window = window_s or request.app.state.settings.feed_lines_window_s
    with engine_of(request).connect() as conn:
        items = queries.line_stats(conn, window)
    return {"window_s": window, "items": items}


@router.get("/workers")
def workers(request: Request, _who: Reader) -> dict[str, Any]:
    """Every process's latest status (health, load) and its current assignment."""
    with engine_of(request).connect() as conn:
        return {"items": queries.list_workers(conn)}
