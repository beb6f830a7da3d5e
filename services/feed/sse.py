"""Server-Sent Events: format alert lifecycle events and tail ``alert_events`` by id."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import Engine

from services.feed.ssehub import BATCH, StreamHub
from services.store import queries

WAKE_S = 0.25  # an idle stream's wake-up: revocation and ping checks

_STEP = ("event_id", "action", "actor", "at", "note", "event_assignee", "event_key")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(obj: Any) -> str:
    """Compact JSON; NaN/inf are refused (the query layer already turned them into null)."""
    return json.dumps(obj, default=_default, allow_nan=False, separators=(",", ":"))


def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    """One ``events_after`` row -> the SSE data: the step and the alert's state after it.
    ``source_event`` is the ``Alert.event_id`` that caused a raised/repeated step."""
    alert = {k: v for k, v in row.items() if k not in _STEP}
    alert["image_url"] = f"/api/alerts/{alert['id']}/image" if alert.get("evidence_key") else None
    key = row.get("event_key") or ""
    return {
        "event_id": row["event_id"],
        "action": row["action"],
        "actor": row["actor"],
        "at": row["at"],
        "note": row["note"],
        "source_event": key[4:] if key.startswith("src:") else None,
        "alert": alert,
    }


def format_event(row: dict[str, Any]) -> str:
    """``id:`` is the alert_events id, so a reconnect's Last-Event-ID resumes exactly."""
    return f"id: {row['event_id']}\nevent: alert\ndata: {dumps(event_payload(row))}\n\n"


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    """The resume point: the Last-Event-ID header (a reconnect) wins over ``?after=``."""
    if header is not None and header.strip():
        value = header.strip()
        if not value.isdigit() or len(value) > 18:
            raise ValueError("Last-Event-ID must be a non-negative integer event id")
        return int(value)
    return query


async def tail(
    engine: Engine,
    after_id: int | None,
    *,
    poll_s: float,
    ping_s: float,
    disconnected: Callable[[], Awaitable[bool]],
    hub: StreamHub | None = None,
    token: str | None = None,
) -> AsyncIterator[str]:
    """Yield every lifecycle event after ``after_id`` (from now when None) until the client
    goes or ``token`` is revoked. With ``hub``, events come from its shared tail in memory
    (SQL only to catch up from an old resume point)."""
    if after_id is None:
        after_id = await anyio.to_thread.run_sync(_last_id, engine)
    last = after_id
    yield f"retry: 1000\n: resuming after {last}\n\n"
    quiet_since = time.monotonic()
    while not await disconnected():
        if hub is not None and token is not None and hub.revoked(token):
            return
        rows = None if hub is None else hub.after(last)
        if rows is None:
            rows = await anyio.to_thread.run_sync(_fetch, engine, last)
        for row in rows:
            yield format_event(row)
            last = row["event_id"]
        if rows:
            quiet_since = time.monotonic()
            if len(rows) >= BATCH:
                continue
        elif time.monotonic() - quiet_since >= ping_s:
            quiet_since = time.monotonic()
            yield ": ping\n\n"
        if hub is None or hub.after(last) is None:
            await anyio.sleep(poll_s)
        else:  # asleep until the hub has rows after ``last`` (revocation checked 4x/s)
            await hub.wait(last, min(WAKE_S, ping_s))


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return queries.last_event_id(conn)


def _fetch(engine: Engine, after_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return queries.events_after(conn, after_id, BATCH)
