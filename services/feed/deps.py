"""Shared helpers of the API modules: the engine, publishing over MQTT, id validation."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Request, Response
from sqlalchemy import Engine

from broker import images
from broker.codecs import encode
from broker.messages import Msg
from services.feed.errors import ApiError
from services.store.engine import writer

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ID_RE = re.compile(ID_PATTERN)
AlertId = Annotated[int, Path(ge=1, le=2**62, description="alert id")]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def writer_of(request: Request) -> Engine:
    """The engine for a transaction that writes (services/store/engine.py ``writer``)."""
    return writer(engine_of(request))


def publish(request: Request, topic: str, msg: Msg) -> None:
    """Publish at QoS 1 and wait for the broker's ack; 503 when the bus is not there."""
    transport = request.app.state.transport
    if transport is None:
        raise ApiError(503, "bus_unavailable", "this feed runs without MQTT (feed_mqtt=false)")
    timeout = request.app.state.settings.feed_publish_timeout_s
    try:
        acked = transport.publish(topic, encode(msg), qos=1).wait(timeout)
    except Exception as exc:  # a transport refusing to queue (not started, queue full)
        raise ApiError(503, "bus_unavailable", f"publish failed: {type(exc).__name__}") from None
    if not acked:
        raise ApiError(
            503,
            "bus_unavailable",
            f"the broker did not acknowledge the request within {timeout:.0f}s",
        )


def image_response(data: bytes, what: str) -> Response:
    """Evidence bytes as an image: the type from the bytes themselves (never the stored
    label), cached only by the operator's own browser, and nothing but a JPEG/PNG served."""
    kind = images.detect(data)
    if kind is None:
        raise ApiError(404, "not_found", f"{what} has no evidence image")
    return Response(
        data,
        media_type=f"image/{kind}",
        headers={
            "Cache-Control": "private, max-age=3600",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
