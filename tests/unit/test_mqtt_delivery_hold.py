"""Delivery layer of the MQTT adapter: messages that arrive before their handler is registered."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import wait_for

from broker.mqtt_delivery import Delivery, Stats
from broker.mqtt_support import Waiter
from broker.transport import Inbound

pytestmark = pytest.mark.unit


def _no_dead_letters(topic: str, payload: bytes) -> Waiter:
    raise AssertionError(f"unexpected dead letter to {topic}")


def _delivery(**kw: object) -> tuple[Delivery, Stats]:
    stats = Stats(("inbound_dropped_unacked", "unrouted", "unrouted_held"))
    return Delivery("unit", "unit", 100, stats, _no_dead_letters, **kw), stats  # type: ignore[arg-type]


class Acks:
    def __init__(self) -> None:
        self.done: list[str] = []
        self._lock = threading.Lock()

    def of(self, name: str) -> Acker:
        return Acker(self, name)

    def add(self, name: str) -> None:
        with self._lock:
            self.done.append(name)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.done)


class Acker:
    def __init__(self, acks: Acks, name: str) -> None:
        self.acks, self.name = acks, name

    def __call__(self) -> None:
        self.acks.add(self.name)


def _msg(
    topic: str,
    payload: bytes = b"x",
    *,
    retain: bool = False,
    qos: int = 1,
    ack: Acker | None = None,
) -> Inbound:
    if ack is None:
        return Inbound(topic=topic, payload=payload, qos=qos, retain=retain)
    return Inbound(topic=topic, payload=payload, qos=qos, retain=retain, ack=ack)


def test_early_messages_wait_unacked_and_go_to_the_handler_registered_later() -> None:
    d, stats = _delivery()
    acks = Acks()
    seen: list[tuple[bytes, list[str]]] = []

    def handler(m: Inbound) -> None:
        seen.append((m.payload, acks.snapshot()))  # what was acked when the handler ran
        m.ack()

    d.start()
    try:
        for i in range(5):
            ack = acks.of(f"m{i}")
            assert d.offer(_msg("lw/a/frame", f"m{i}".encode(), ack=ack), ack)
        wait_for(lambda: d.held == 5, 5, what="5 held messages")
        assert acks.snapshot() == [] and stats.snapshot()["unrouted_held"] == 5
        d.register("lw/+/frame", handler, 1)
        ack = acks.of("late")
        assert d.offer(_msg("lw/b/frame", b"late", ack=ack), ack)
        wait_for(lambda: len(acks.snapshot()) == 6, 5, what="6 acks")
    finally:
        d.stop()
    assert [p for p, _ in seen] == [b"m0", b"m1", b"m2", b"m3", b"m4", b"late"]  # held first
    assert [before for _, before in seen][:2] == [[], ["m0"]]  # nothing acked ahead of handler
    assert stats.snapshot()["unrouted"] == 0 and d.held == 0


def test_holding_is_bounded_and_the_overflow_left_unacked() -> None:
    d, stats = _delivery(hold_max=2)
    acks = Acks()
    for i in range(3):
        d.dispatch(_msg("x/y", f"{i}".encode()), acks.of(str(i)))
    assert d.held == 2 and acks.snapshot() == []
    assert stats.snapshot()["inbound_dropped_unacked"] == 1  # the broker redelivers it
    assert d.stop() == 2  # held ones are dropped unacked on stop, and counted


def test_unwanted_messages_acked_after_the_hold_time() -> None:
    d, stats = _delivery(hold_s=0.2)
    acks = Acks()
    d.start()
    try:
        started = time.monotonic()
        assert d.offer(_msg("old/sub"), acks.of("old"))
        wait_for(lambda: acks.snapshot() == ["old"], 5, what="expired message acked")
        assert time.monotonic() - started >= 0.2
    finally:
        d.stop()
    assert stats.snapshot()["unrouted"] == 1 and d.held == 0


def test_expiry_keeps_younger_and_routes_matching() -> None:
    d, stats = _delivery(hold_s=10)
    acks = Acks()
    now = time.monotonic()
    d.dispatch(_msg("a/1"), acks.of("a"))
    d.dispatch(_msg("b/1"), acks.of("b"))
    d.settle_held(now=now + 1)  # nothing due, nothing registered
    assert d.held == 2 and acks.snapshot() == []
    got: list[str] = []
    d.register("b/#", lambda m: got.append(m.topic), 1)
    d.settle_held(now=now + 1)
    assert got == ["b/1"] and d.held == 1 and acks.snapshot() == []  # handler acks, not we
    d.settle_held(now=now + 11)
    assert acks.snapshot() == ["a"] and stats.snapshot()["unrouted"] == 1


def test_retained_and_qos0_without_handler_are_not_held() -> None:
    d, stats = _delivery()
    acks = Acks()
    d.dispatch(_msg("r/1", retain=True), acks.of("retained"))
    d.dispatch(_msg("q/0", qos=0), None)
    assert acks.snapshot() == ["retained"] and d.held == 0
    assert stats.snapshot()["unrouted"] == 2


def test_forget_held_drops_them_unacked() -> None:
    d, _ = _delivery()
    acks = Acks()
    d.dispatch(_msg("a/1"), acks.of("a"))
    assert d.forget_held() == 1 and d.held == 0
    d.register("a/#", lambda m: pytest.fail("forgotten message delivered"), 1)
    d.settle_held()
    assert acks.snapshot() == []
