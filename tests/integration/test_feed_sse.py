"""Feed live stream (SSE) on SQLite and the real Postgres: resume after a dropped connection,
and a stream opened "from now" sees only new events."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from _feedkit import Feed, json_error, no_const, store
from sqlalchemy import select

from services.store import schema as s

pytestmark = pytest.mark.integration


def _read_events(lines: Iterator[str], n: int) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    event_id, data = None, None
    for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:], parse_constant=no_const)
        elif line == "" and event_id is not None and data is not None:
            out.append((event_id, data))
            event_id, data = None, None
            if len(out) == n:
                break
    return out


def test_sse_resume_after_dropped_connection(feed: Feed) -> None:
    store(feed.engine, [feed.alert(i, line=f"L{i}") for i in range(5)])
    seen: list[tuple[int, dict[str, Any]]] = []
    with feed.client(feed.viewer) as v:
        ticket = v.post("/api/stream/ticket").json()["ticket"]
    with feed.client() as c:
        json_error(c.get("/api/stream"), 401)
        json_error(
            c.get("/api/stream", params={"ticket": ticket}, headers={"Last-Event-ID": "abc"}),
            400,
            "bad_last_event_id",
        )
        with c.stream("GET", "/api/stream", params={"after": 0, "ticket": ticket}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            seen += _read_events(r.iter_lines(), 3)  # then the connection drops mid-stream
        last = seen[-1][0]
        store(feed.engine, [feed.alert(i, line=f"M{i}") for i in range(4)])  # while away
        with c.stream(
            "GET",
            "/api/stream",
            params={"ticket": ticket},
            headers={"Last-Event-ID": str(last)},
        ) as r:
            lines = r.iter_lines()
            seen += _read_events(lines, 6)
            ack_id = seen[-1][1]["alert"]["id"]
            with feed.client(feed.operator) as op:
                op.post(f"/api/alerts/{ack_id}/ack")
            seen += _read_events(lines, 1)
    ids = [i for i, _ in seen]
    with feed.engine.connect() as conn:
        all_ids: Sequence[int] = (
            conn.execute(select(s.T_ALERT_EVENTS.c.id).order_by(s.T_ALERT_EVENTS.c.id))
            .scalars()
            .all()
        )
    assert ids == list(all_ids) and len(ids) == 10  # nothing missed, nothing repeated
    assert seen[-1][1]["action"] == "acknowledged"
    assert seen[-1][1]["alert"]["acknowledged_by"] == f"alice-{feed.site}"
    assert [d["action"] for _, d in seen[:9]] == ["raised"] * 9


def test_sse_from_now_sees_only_new_events(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1)])
    with feed.client(feed.viewer) as c, c.stream("GET", "/api/stream") as r:
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        store(feed.engine, [feed.alert(2, line="L9")])
        (event,) = _read_events(lines, 1)
    assert event[1]["alert"]["line"] == "L9"
