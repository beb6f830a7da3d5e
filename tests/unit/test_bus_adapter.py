"""Pure parts of the MQTT adapter, Liveness and the embedded broker's front door (no network)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_for

from broker.config import CommonSettings
from broker.embedded import _parse, _read_connect_head, _Replay, broker_config
from broker.liveness import Liveness, next_counter
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import DeadLetter, WorkerStatus
from broker.mqtt import MqttTransport, PublishError, connect
from broker.mqtt_delivery import Delivery, Stats
from broker.mqtt_support import MidBook, Receipts, Waiter, check_filter, component_id
from broker.topics import dead_letter_topic, worker_status_topic
from broker.transport import Inbound

pytestmark = pytest.mark.unit


# ---- waiters --------------------------------------------------------------------------------


def test_ack_before_registration_is_not_lost() -> None:
    book = MidBook()
    book.resolve(7, None)  # PUBACK processed before publish() registered mid 7
    w = book.expect(7)
    assert w.done and w.wait(0)
    assert len(book) == 0


def test_waiter_resolution_and_callbacks() -> None:
    book = MidBook()
    ok, refused, pending = book.expect(1), book.expect(2), book.expect(3)
    calls: list[int] = []
    ok.then(lambda w: calls.append(w.mid))
    assert not ok.done and ok.wait(0.01) is False
    book.resolve(1, None)
    book.resolve(2, "Not authorized")
    assert ok.wait(1) and calls == [1]
    assert refused.done and refused.wait(1) is False and refused.error == "Not authorized"
    refused.then(lambda w: calls.append(w.mid))  # already resolved: runs at once
    assert calls == [1, 2]
    assert book.fail_all("transport stopped") == 1
    assert pending.done and pending.error == "transport stopped"


def test_waiter_wakes_a_blocked_thread() -> None:
    book = MidBook()
    w = book.expect(9)
    result: list[bool] = []
    th = threading.Thread(target=lambda: result.append(w.wait(5)))
    th.start()
    book.resolve(9, None)
    th.join(5)
    assert result == [True]


# ---- receipts -------------------------------------------------------------------------------


def test_receipt_stable_across_redelivery_in_process() -> None:
    r = Receipts("edge-1")
    first = r.issue(5, "t/a", b"payload", dup=False)
    assert first.startswith("edge-1:5:")
    assert r.issue(5, "t/a", b"payload", dup=True) == first


def test_receipt_stable_across_restart() -> None:
    before = Receipts("edge-1").issue(5, "t/a", b"payload", dup=False)
    after_crash = Receipts("edge-1").issue(5, "t/a", b"payload", dup=True)
    assert after_crash == before


def test_recycled_mid_with_same_payload_gets_a_new_receipt() -> None:
    r = Receipts("edge-1")
    first = r.issue(5, "t/a", b"21.5", dup=False)
    r.settled(5)
    second = r.issue(5, "t/a", b"21.5", dup=False)  # mid recycled, same value: a NEW message
    assert second != first and second.startswith(first)
    assert r.issue(5, "t/a", b"21.5", dup=True) == second  # and its redelivery keeps it
    assert r.issue(6, "t/a", b"21.5", dup=False) != first
    assert r.issue(5, "t/b", b"21.5", dup=False).split(":")[2] != first.split(":")[2]


# ---- filters and ids ------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["a", "a/b", "+", "#", "a/+/c", "a/#", "+/+/#", "lw/v1/_sys/+"])
def test_valid_filters(good: str) -> None:
    assert check_filter(good) == good


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a+/b", "a/b+", "#/a", "a\x00b"])
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(ValueError):
        check_filter(bad)


def test_component_id() -> None:
    assert component_id("edge-1") == "edge-1"
    assert component_id("edge 1/host.local") == "edge_1_host_local"
    assert len(component_id("x" * 100)) == 64


# ---- transport without a broker -------------------------------------------------------------


def test_constructor_does_no_io_and_publish_needs_start() -> None:
    t = MqttTransport("mqtt://user:pw@127.0.0.1:1", "unit-client")
    assert not t.connected and t.protocol is None
    with pytest.raises(PublishError, match="not started"):
        t.publish("a/b", b"x")
    t.subscribe("a/+", lambda m: None)  # registered; sent on connect
    t.unsubscribe("a/+")
    t.stop()  # stopping a never-started transport is harmless
    assert t.stats()["published"] == 0
    with pytest.raises(ValueError):
        MqttTransport("http://127.0.0.1", "x")
    with pytest.raises(ValueError):
        t.subscribe("a/#/b", lambda m: None)


def test_connect_from_settings() -> None:
    s = CommonSettings(mqtt_url="mqtt://127.0.0.1:1999", keepalive_s=3)
    t = connect(s, "from-settings")
    assert t.client_id == "from-settings" and t._keepalive == 3
    assert t._url.port == 1999


# ---- liveness -------------------------------------------------------------------------------


def test_counter_grows_and_survives_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state" / "edge-1.counter"
    assert [next_counter(path) for _ in range(3)] == [1, 2, 3]
    path.write_text("garbage")
    recovered = next_counter(path)
    assert recovered > time.time() - 60  # never goes backwards
    assert next_counter(path) == recovered + 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["edge-1.counter"]


def test_liveness_will_birth_heartbeat_death(tmp_path: Path) -> None:
    hub = LoopbackHub()
    seen: list[Inbound] = []
    watcher = LoopbackTransport(hub, "watch")
    watcher.subscribe(worker_status_topic("edge-1"), seen.append)
    watcher.start()

    def run_once() -> Liveness:
        t = LoopbackTransport(hub, "edge-1")
        live = Liveness(t, "edge-1", "edge", tmp_path)
        t.start()
        assert live.birth(capacity_fps=30.0).wait(1)
        live.heartbeat(load=0.5, queue_depth=3)
        if live.counter == 1:
            assert live.death()
            t.stop()
        else:
            t.kill()  # crash: the hub publishes the will
        return live

    first, second = run_once(), run_once()
    wait_for(lambda: len(seen) == 6, 2, what="six status messages")
    statuses = [(WorkerStatus.model_validate_json(m.payload), m) for m in seen]
    assert [(s.state, s.counter) for s, _ in statuses] == [
        ("online", 1),
        ("heartbeat", 1),
        ("offline", 1),
        ("online", 2),
        ("heartbeat", 2),
        ("offline", 2),
    ]
    assert statuses[0][0].capacity_fps == 30.0 and statuses[1][0].queue_depth == 3
    assert first.counter == 1 and second.counter == 2
    retained = hub.retained_for(worker_status_topic("edge-1"))
    assert WorkerStatus.model_validate_json(retained[0].payload).state == "offline"
    watcher.stop()


def test_liveness_rejects_bad_worker_id(tmp_path: Path) -> None:
    t = LoopbackTransport(LoopbackHub(), "x")
    with pytest.raises(ValueError):
        Liveness(t, "edge/1", "edge", tmp_path)


# ---- embedded broker front door -------------------------------------------------------------


def _connect_packet(level: int) -> bytes:
    variable = b"\x00\x04MQTT" + bytes([level, 0x02, 0x00, 0x05])
    payload = b"\x00\x02id"
    body = variable + (b"\x00" if level == 5 else b"") + payload
    return bytes([0x10, len(body)]) + body


@pytest.mark.parametrize("level", [4, 5])
def test_front_door_reads_protocol_level_and_replays(level: int) -> None:
    packet = _connect_packet(level)

    async def go() -> tuple[int | None, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(packet)
        reader.feed_eof()
        head, got = await _read_connect_head(reader)
        replay = _Replay(head, reader)
        return got, await replay.read(3) + await replay.read(len(packet) - 3)

    level_read, replayed = asyncio.run(go())
    assert level_read == level and replayed == packet


def test_front_door_lets_non_connect_through() -> None:
    async def go() -> int | None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"\xc0\x00")  # PINGREQ first: amqtt will reject it
        return (await _read_connect_head(reader))[1]

    assert asyncio.run(go()) is None


def test_broker_cli_options() -> None:
    assert (_parse([]).host, _parse([]).port) == ("127.0.0.1", 1884)
    assert _parse(["--host", "0.0.0.0", "--port", "1999"]).port == 1999
    with pytest.raises(SystemExit):
        _parse(["--port", "70000"])
    assert broker_config()["listeners"]["default"]["type"] == "external"


# ---- delivery: queue policy, routing, handler errors ----------------------------------------


class Published:
    """Records what the delivery layer publishes (dead letters); the broker acks on demand."""

    def __init__(self, fail: bool = False) -> None:
        self.book, self.fail = MidBook(), fail
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> Waiter:
        if self.fail:
            raise PublishError("outgoing queue full")
        self.sent.append((topic, payload))
        return self.book.expect(len(self.sent))


def _delivery(pub: Published, size: int = 10) -> tuple[Delivery, Stats]:
    stats = Stats(("inbound_dropped_unacked", "unrouted", "handler_errors", "dead_letters"))
    return Delivery("unit", "unit", size, stats, pub), stats


def _msg(topic: str, payload: bytes = b"x", retain: bool = False) -> Inbound:
    return Inbound(topic=topic, payload=payload, retain=retain, receipt=f"r:{payload!r}")


def test_full_queue_leaves_message_unacked_and_counts_it() -> None:
    d, stats = _delivery(Published(), size=2)  # thread not started: nothing drains
    acks: list[str] = []
    assert d.offer(_msg("t/1"), lambda: acks.append("1"))
    assert d.offer(_msg("t/2"), lambda: acks.append("2"))
    started = time.monotonic()
    assert d.offer(_msg("t/3"), lambda: acks.append("3")) is False
    assert time.monotonic() - started < 2  # the network thread is held back only briefly
    assert stats.snapshot()["inbound_dropped_unacked"] == 1 and acks == []
    assert d.stop() == 2  # what was queued is left for redelivery too


def test_unrouted_messages_are_held_then_acked_and_counted() -> None:
    d, stats = _delivery(Published())
    acks: list[int] = []
    d.register("a/+", lambda m: None, 1)
    d.dispatch(_msg("b/1"), lambda: acks.append(1))
    assert acks == [] and d.held == 1  # held unacked: a handler may still be registered
    d.settle_held(now=time.monotonic() + 3600)  # none came within the hold time
    assert acks == [1] and stats.snapshot()["unrouted"] == 1 and d.held == 0
    d.remove("a/+")
    assert d.patterns() == []


def test_retained_acked_after_handler_live_left_to_handler() -> None:
    d, _ = _delivery(Published())
    acks: list[str] = []
    d.register("a/#", lambda m: None, 1)
    d.dispatch(_msg("a/live"), lambda: acks.append("live"))
    d.dispatch(_msg("a/state", retain=True), lambda: acks.append("retained"))
    assert acks == ["retained"]


def test_handler_error_dead_lettered_then_acked() -> None:
    pub = Published()
    d, stats = _delivery(pub)
    acks: list[int] = []

    def broken(msg: Inbound) -> None:
        raise KeyError("no such stream")

    d.register("a/#", broken, 1)
    d.dispatch(_msg("a/b", b"payload-bytes"), lambda: acks.append(1))
    assert stats.snapshot()["handler_errors"] == 1 and acks == []  # not before the DL is safe
    ((topic, body),) = pub.sent
    dl = DeadLetter.model_validate_json(body)
    assert topic == dead_letter_topic("unit") and dl.reason == "handler_error"
    assert dl.detail.startswith("KeyError") and dl.payload_head == b"payload-bytes"
    assert dl.key == "r:b'payload-bytes'"
    pub.book.resolve(1, None)  # the broker acknowledged the dead letter
    assert acks == [1]


def test_handler_error_acked_even_when_dead_letter_cannot_be_queued() -> None:
    d, stats = _delivery(Published(fail=True))
    acks: list[int] = []

    def broken(msg: Inbound) -> None:
        raise ZeroDivisionError("boom")

    d.register("#", broken, 1)
    d.dispatch(_msg("a"), lambda: acks.append(1))
    assert acks == [1] and stats.snapshot()["dead_letters"] == 0


def test_delivery_thread_runs_handlers_in_order() -> None:
    d, _ = _delivery(Published())
    seen: list[str] = []
    d.register("#", lambda m: seen.append(m.topic), 1)
    d.start()
    for i in range(50):
        assert d.offer(_msg(f"t/{i}"), None)
    wait_for(lambda: len(seen) == 50, 5, what="50 deliveries")
    assert seen == [f"t/{i}" for i in range(50)]
    assert d.stop() == 0 and not d.running
