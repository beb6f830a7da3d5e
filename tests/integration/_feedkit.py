"""Test kit for the feed: a served feed and its tokens, messages stored as the writer does."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from _buskit import free_port
from helpers import wait_for
from PIL import Image
from sqlalchemy import Engine

from broker.messages import Alert, Msg, utcnow
from services.store.batchwrite import Prepared, write_prepared
from services.store.rows import plan


def jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small real JPEG (the store keeps evidence only when it is an image)."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "JPEG")
    return buf.getvalue()


def store(engine: Engine, msgs: Iterable[Msg]) -> Prepared:
    """Write messages exactly as the store writer does (plan -> one batch transaction);
    returns what was written."""
    prep = Prepared()
    for m in msgs:
        p = plan(m)
        assert p is not None
        for table, rows in p.rows.items():
            prep.rows.setdefault(table, []).extend(rows)
        if p.alert is not None:
            prep.alerts.append(p.alert)
    with engine.begin() as conn:
        write_prepared(conn, prep)
    return prep


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """``app`` on a real uvicorn at 127.0.0.1 (its port), stopped afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15, what="uvicorn started")
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class Feed:
    base: str
    engine: Engine
    site: str
    operator: str
    viewer: str
    received: list[tuple[str, bytes]]
    app: Any

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def alert(self, n: int, **kw: Any) -> Alert:
        base: dict[str, Any] = dict(
            event_id=f"{self.site}-e{n}-{uuid.uuid4().hex[:6]}",
            kind="defect",
            severity="major",
            site=self.site,
            line="L1",
            station="S1",
            stream=f"{self.site}/L1/S1/camera/c1",
            message=f"defect {n}",
            worker="W1",
            ts=utcnow(),
        )
        base.update(kw)
        return Alert(**base)


def json_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the feed's JSON error body (and ``code``)."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body
    return dict(body)


def no_const(name: str) -> None:
    """``parse_constant`` hook: NaN or Infinity in a response is a failure."""
    raise AssertionError(f"response holds {name}")
