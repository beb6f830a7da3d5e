"""``GET /api/stream``: the live alert feed as Server-Sent Events, resumable by event id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.feed import sse
from services.feed.auth import Reader
from services.feed.deps import engine_of
from services.feed.errors import ApiError

router = APIRouter(prefix="/api", tags=["stream"])


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    request: Request,
    _who: Reader,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every alert lifecycle step (raised, repeated, acknowledged, assigned, commented,
    resolved, escalated) as ``event: alert``; ``id`` = the step's id. Reconnect with
    ``Last-Event-ID`` (browsers do it themselves) or ``?after=ID`` to resume exactly;
    without either the stream starts at now. ``?token=`` for EventSource clients."""
    try:
        start = sse.parse_last_event_id(last_event_id, after)
    except ValueError as exc:
        raise ApiError(400, "bad_last_event_id", str(exc)) from None
    settings = request.app.state.settings
    metrics = request.app.state.metrics

    async def body() -> AsyncIterator[str]:
        metrics.sse_clients.inc()
        try:
            async for chunk in sse.tail(
                engine_of(request),
                start,
                poll_s=settings.feed_poll_ms / 1000.0,
                ping_s=settings.feed_ping_s,
                disconnected=request.is_disconnected,
            ):
                yield chunk
        finally:
            metrics.sse_clients.dec()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
