"""Real Mosquitto: a resumed persistent session redelivers at once after CONNACK, before the
application registered its handler. Those messages must wait unacked and reach the handler
registered after start(), each exactly once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from _buskit import purge_session
from helpers import wait_for

from broker.mqtt import MqttTransport
from broker.transport import Inbound

pytestmark = pytest.mark.integration

IN_FLIGHT = 5  # delivered to the first incarnation, never acked: redelivered with DUP
OFFLINE = 30  # published while no consumer is connected: queued by the broker


class Recorder:
    """Handler that records each payload and how many acks the transport had sent before it
    ran, then acks."""

    def __init__(self, transport: MqttTransport | None, ack: bool = True) -> None:
        self.transport, self.ack = transport, ack
        self.payloads: list[bytes] = []
        self.dups: list[bool] = []
        self.acked_before: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, msg: Inbound) -> None:
        acked = self.transport.stats()["acked"] if self.transport is not None else 0
        with self._lock:
            self.payloads.append(msg.payload)
            self.dups.append(msg.dup)
            self.acked_before.append(acked)
        if self.ack:
            msg.ack()

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)


def test_redelivered_before_handler_registered_reaches_it_exactly_once(
    mosquitto_url: str, site_id: str
) -> None:
    client_id = f"{site_id}-late-handler"
    pattern = f"lw/v1/{site_id}/early/+"
    made: list[MqttTransport] = []

    def transport(cid: str, **kw: object) -> MqttTransport:
        t = MqttTransport(mosquitto_url, cid, **kw)  # type: ignore[arg-type]
        made.append(t)
        return t

    try:
        pub = transport(f"{site_id}-pub", clean_start=True)
        pub.start()

        # 1. A persistent session receives some messages and never acks them.
        first = transport(client_id)
        noack = Recorder(None, ack=False)
        first.subscribe(pattern, noack)
        first.start()
        for i in range(IN_FLIGHT):
            assert pub.publish(f"lw/v1/{site_id}/early/a", f"f{i}".encode()).wait(5)
        wait_for(lambda: noack.count() == IN_FLIGHT, 10, what="first deliveries")
        first.stop()  # graceful: the session and its unacked messages stay on the broker

        # 2. More arrive while the consumer is offline.
        for i in range(OFFLINE):
            assert pub.publish(f"lw/v1/{site_id}/early/b", f"q{i}".encode()).wait(5)
        expected = {f"f{i}".encode() for i in range(IN_FLIGHT)}
        expected |= {f"q{i}".encode() for i in range(OFFLINE)}

        # 3. The next incarnation starts with NO handler: the broker redelivers at once.
        second = transport(client_id)
        second.start()
        wait_for(lambda: second.stats()["inbound_held"] >= IN_FLIGHT, 10, what="held messages")
        stats = second.stats()
        assert stats["acked"] == 0 and stats["unrouted"] == 0
        assert stats["inbound_held"] == stats["received"]  # none acked, none handled

        # 4. The handler registered after start() gets every one of them.
        late = Recorder(second)
        second.subscribe(pattern, late)
        wait_for(lambda: late.count() >= len(expected), 15, what="all messages delivered")
        assert pub.publish(f"lw/v1/{site_id}/early/z", b"sentinel").wait(5)
        wait_for(lambda: b"sentinel" in late.payloads, 10, what="sentinel")
        counts = Counter(late.payloads)
        assert set(counts) == expected | {b"sentinel"}
        assert max(counts.values()) == 1, counts  # exactly once
        assert late.acked_before == list(range(len(late.payloads)))  # no ack ahead of handler
        assert sum(late.dups) >= IN_FLIGHT  # the unacked ones came back as redeliveries
        # the handler records a payload before its ack goes out: wait for the last ack
        wait_for(lambda: second.stats()["acked"] >= len(expected) + 1, 10, what="last ack")
        stats = second.stats()
        assert stats["unrouted"] == 0 and stats["inbound_held"] == 0
        assert stats["acked"] == len(expected) + 1
        second.stop()

        # 5. All were acked: the next incarnation gets only what was published since.
        assert pub.publish(f"lw/v1/{site_id}/early/z", b"after").wait(5)
        third = transport(client_id)
        after = Recorder(third)
        third.start()
        third.subscribe(pattern, after)
        wait_for(lambda: after.count() >= 1, 10, what="message queued after the last stop")
        assert pub.publish(f"lw/v1/{site_id}/early/z", b"sentinel-2").wait(5)
        wait_for(lambda: b"sentinel-2" in after.payloads, 10, what="second sentinel")
        assert after.payloads == [b"after", b"sentinel-2"]
    finally:
        for t in made:
            t.stop()
        purge_session(mosquitto_url, client_id)
