"""The one transport interface every LineWatch process depends on (MQTT or the loopback fake)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard match (``+`` one level, ``#`` the rest)."""
    pp, tp = pattern.split("/"), topic.split("/")
    for i, p in enumerate(pp):
        if p == "#":
            return True
        if i >= len(tp) or (p != "+" and p != tp[i]):
            return False
    return len(pp) == len(tp)


def _noop() -> None:
    return None


@dataclass(frozen=True)
class Inbound:
    """A delivered message. Call ``ack()`` once its effect is durable (any thread, once)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    dup: bool = False
    properties: Mapping[str, str] = field(default_factory=dict)  # MQTT v5 user properties
    receipt: str = ""  # stable across redelivery of the same message to the same session
    ack: Callable[[], None] = _noop


Handler = Callable[[Inbound], None]


class Published(Protocol):
    """Handle of one publish; ``wait`` returns True once the broker acknowledged it (QoS 1)."""

    def wait(self, timeout: float | None = None) -> bool: ...

    @property
    def done(self) -> bool: ...


class Transport(Protocol):
    """Publish/subscribe with explicit acks. Constructors do no I/O; ``start`` connects.

    Contract:
    - ``subscribe`` registers a handler; subscriptions are restored on every reconnect.
    - Handlers run on the transport's delivery thread and must not block for long; they call
      ``msg.ack()`` when the effect is durable (possibly later, from another thread).
    - A handler that raises never stops delivery: the transport counts the error, publishes
      a dead letter with reason ``handler_error`` and acks the message.
    - ``set_will`` must be called before ``start``.
    """

    client_id: str

    def set_will(self, topic: str, payload: bytes, retain: bool = True) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None: ...

    def unsubscribe(self, pattern: str) -> None: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, str] | None = None,
    ) -> Published: ...

    def stats(self) -> dict[str, int]: ...
