"""``GET /api/stream``: the live alert feed as Server-Sent Events, resumable by event id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from services.feed import sse
from services.feed.auth import Reader
from services.feed.deps import engine_of
from services.feed.errors import ApiError

router = APIRouter(prefix="/api", tags=["stream"])


@router.post("/stream/ticket")
def ticket(request: Request, _who: Reader) -> dict[str, Any]:
    """A short-lived read ticket for ``?ticket=`` (EventSource and ``<img>`` cannot send
    headers; a token never goes in a URL). Needs a token in the Authorization header."""
    token = request.state.token
    if token is None or request.headers.get("authorization") is None:
        raise ApiError(401, "unauthorized", "a ticket needs 'Authorization: Bearer <token>'")
    tickets = request.app.state.tickets
    return {"ticket": tickets.issue(token), "expires_in": tickets.ttl_s}


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
    without either the stream starts at now. ``?ticket=`` (``POST /api/stream/ticket``) for
    EventSource clients. Streams are capped in all and per token (429 over a cap), and a
    revoked token's streams end within a second."""
    try:
        start = sse.parse_last_event_id(last_event_id, after)
    except ValueError as exc:
        raise ApiError(400, "bad_last_event_id", str(exc)) from None
    settings = request.app.state.settings
    metrics = request.app.state.metrics
    hub = request.app.state.hub
    token: str | None = request.state.token
    client = request.client.host if request.client else "unknown"
    key = f"token:{token}" if token else f"addr:{client}"
    refused = hub.acquire(key, token)
    if refused is not None:
        raise ApiError(429, "too_many_streams", refused, {"Retry-After": "5"})
    held = [True]

    def release() -> None:  # from the body's end, or after the response if it never started
        if held.pop() if held else False:
            hub.release(key, token)

    async def body() -> AsyncIterator[str]:
        metrics.sse_clients.inc()
        try:
            async for chunk in sse.tail(
                engine_of(request),
                start,
                poll_s=settings.feed_poll_ms / 1000.0,
                ping_s=settings.feed_ping_s,
                disconnected=request.is_disconnected,
                hub=hub,
                token=token,
            ):
                yield chunk
        finally:
            metrics.sse_clients.dec()
            release()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(release),
    )
