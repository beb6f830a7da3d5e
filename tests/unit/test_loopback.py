"""The in-memory loopback bus: wildcard routing, retained messages, wills, handler errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from helpers import wait_for

from broker.loopback import LoopbackHub, LoopbackTransport
from broker.transport import Inbound, topic_matches

pytestmark = pytest.mark.unit


class Inbox:
    def __init__(self, ack: bool = True) -> None:
        self.msgs: list[Inbound] = []
        self._ack = ack
        self._lock = threading.Lock()

    def __call__(self, msg: Inbound) -> None:
        with self._lock:
            self.msgs.append(msg)
        if self._ack:
            msg.ack()

    def topics(self) -> list[str]:
        with self._lock:
            return [m.topic for m in self.msgs]


@pytest.fixture()
def hub() -> LoopbackHub:
    return LoopbackHub()


@pytest.fixture()
def clients(hub: LoopbackHub) -> Iterator[list[LoopbackTransport]]:
    made: list[LoopbackTransport] = []
    yield made
    for c in made:
        c.stop()


def client(made: list[LoopbackTransport], hub: LoopbackHub, cid: str) -> LoopbackTransport:
    c = LoopbackTransport(hub, cid)
    made.append(c)
    return c


@pytest.mark.parametrize(
    ("pattern", "topic", "match"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/x/y/c", False),
        ("a/#", "a/x/y/c", True),
        ("a/#", "a", True),
        ("#", "a/b", True),
        ("a/+", "a", False),
        ("a/b", "a/b/c", False),
        ("+/+", "a/b", True),
        ("lw/v1/+/+/+/camera/+/frame", "lw/v1/s/l/st/camera/c/frame", True),
        ("lw/v1/+/+/+/camera/+/frame", "lw/v1/s/l/st/camera/c/verdict", False),
    ],
)
def test_topic_matches(pattern: str, topic: str, match: bool) -> None:
    assert topic_matches(pattern, topic) is match


def test_wildcard_routing(hub: LoopbackHub, clients: list[LoopbackTransport]) -> None:
    frames, everything, other = Inbox(), Inbox(), Inbox()
    a = client(clients, hub, "a")
    a.subscribe("lw/v1/+/+/+/camera/+/frame", frames)
    b = client(clients, hub, "b")
    b.subscribe("lw/v1/#", everything)
    c = client(clients, hub, "c")
    c.subscribe("elsewhere/+", other)
    for x in (a, b, c):
        x.start()
    pub = client(clients, hub, "pub")
    pub.start()
    topics = [
        "lw/v1/s/l/st/camera/c1/frame",
        "lw/v1/s/l/st/camera/c1/verdict",
        "lw/v1/s/l/st/sensor/t1",
    ]
    for topic in topics:
        assert pub.publish(topic, b"x").wait(1)
    wait_for(lambda: len(everything.msgs) == 3, 2, what="fan-out")
    assert everything.topics() == topics
    assert frames.topics() == topics[:1]
    assert other.msgs == []
    assert pub.stats()["published"] == 3


def test_retained_delivered_to_late_subscriber_and_cleared(
    hub: LoopbackHub, clients: list[LoopbackTransport]
) -> None:
    pub = client(clients, hub, "pub")
    pub.start()
    pub.publish("lw/v1/_sys/assign/w1", b"epoch-1", retain=True)
    pub.publish("lw/v1/_sys/assign/w1", b"epoch-2", retain=True)  # replaces the first
    pub.publish("lw/v1/_sys/assign/w2", b"live-only")  # not retained
    late = Inbox()
    sub = client(clients, hub, "sub")
    sub.start()
    sub.subscribe("lw/v1/_sys/assign/+", late)
    wait_for(lambda: late.msgs, 2, what="retained")
    assert [(m.payload, m.retain) for m in late.msgs] == [(b"epoch-2", True)]

    pub.publish("lw/v1/_sys/assign/w1", b"", retain=True)  # empty retained payload clears it
    later = Inbox()
    sub2 = client(clients, hub, "sub2")
    sub2.start()
    sub2.subscribe("lw/v1/_sys/assign/+", later)
    assert hub.retained_for("lw/v1/_sys/assign/+") == []
    assert later.msgs == []


def test_will_sent_on_kill_not_on_stop(hub: LoopbackHub, clients: list[LoopbackTransport]) -> None:
    status = Inbox()
    watcher = client(clients, hub, "watch")
    watcher.subscribe("lw/v1/_sys/status/+", status)
    watcher.start()
    polite = client(clients, hub, "polite")
    polite.set_will("lw/v1/_sys/status/polite", b"offline", retain=True)
    polite.start()
    polite.stop()
    crashing = client(clients, hub, "crashing")
    crashing.set_will("lw/v1/_sys/status/crashing", b"offline", retain=True)
    crashing.start()
    assert crashing.connected
    crashing.kill()
    assert not crashing.connected
    wait_for(lambda: status.msgs, 2, what="will")
    assert status.topics() == ["lw/v1/_sys/status/crashing"]
    assert [p.payload for p in hub.retained_for("lw/v1/_sys/status/+")] == [b"offline"]


def test_handler_exception_counted_acked_and_delivery_goes_on(
    hub: LoopbackHub, clients: list[LoopbackTransport]
) -> None:
    got: list[bytes] = []

    def handler(msg: Inbound) -> None:
        if msg.payload == b"boom":
            raise RuntimeError("handler bug")
        got.append(msg.payload)
        msg.ack()

    sub = client(clients, hub, "sub")
    sub.subscribe("t/#", handler)
    sub.start()
    pub = client(clients, hub, "pub")
    pub.start()
    for body in (b"one", b"boom", b"two"):
        pub.publish("t/x", body)
    wait_for(lambda: got == [b"one", b"two"], 2, what="delivery after the error")
    stats = sub.stats()
    assert stats["handler_errors"] == 1
    assert stats["acked"] == 3 and stats["received"] == 3


def test_ack_is_idempotent_and_receipts_distinct(
    hub: LoopbackHub, clients: list[LoopbackTransport]
) -> None:
    inbox = Inbox(ack=False)
    sub = client(clients, hub, "sub")
    sub.subscribe("t/+", inbox)
    sub.start()
    pub = client(clients, hub, "pub")
    pub.start()
    pub.publish("t/a", b"same", properties={"seq": "1"})
    pub.publish("t/a", b"same")
    wait_for(lambda: len(inbox.msgs) == 2, 2, what="two deliveries")
    first = inbox.msgs[0]
    first.ack()
    first.ack()
    assert sub.stats()["acked"] == 1
    assert first.properties == {"seq": "1"}
    assert inbox.msgs[0].receipt != inbox.msgs[1].receipt
