"""`linewatch broker` (amqtt, MQTT 3.1.1): fallback, QoS 1, retained, persistent sessions, will."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _buskit import free_port, port_open, subscriber
from helpers import wait_for

from broker.messages import WorkerStatus
from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic, worker_status_topic
from broker.transport import Inbound

pytestmark = pytest.mark.integration

LINEWATCH = Path(sys.executable).parent / "linewatch"


@dataclass
class Embedded:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def _start(tmp_path: Path, port: int) -> Embedded:
    log = tmp_path / f"broker-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(LINEWATCH), "broker", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    wait_for(lambda: port_open(port) or proc.poll() is not None, 15, what="embedded broker")
    assert proc.poll() is None, log.read_text()
    return Embedded(proc, port, log)


def _stop(b: Embedded) -> int:
    if b.proc.poll() is None:
        b.proc.send_signal(signal.SIGTERM)
        try:
            return b.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            b.proc.kill()
            b.proc.wait(timeout=10)
            raise
    return int(b.proc.returncode)


@pytest.fixture()
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    b = _start(tmp_path, free_port())
    try:
        yield b
    finally:
        _stop(b)


@pytest.fixture()
def transports() -> Iterator[list[MqttTransport]]:
    made: list[MqttTransport] = []
    yield made
    for t in made:
        t.stop()


class Inbox:
    def __init__(self) -> None:
        self.msgs: list[Inbound] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Inbound) -> None:
        with self.lock:
            self.msgs.append(msg)
        msg.ack()


def _make(made: list[MqttTransport], url: str, cid: str, **kw: object) -> MqttTransport:
    t = MqttTransport(url, cid, **kw)  # type: ignore[arg-type]
    made.append(t)
    return t


def test_round_trip_falls_back_to_311(
    embedded: Embedded, site_id: str, transports: list[MqttTransport]
) -> None:
    topic = frame_topic(StreamRef.camera(site_id, "l1", "s1", "c1"))
    inbox = Inbox()
    sub = _make(transports, embedded.url, f"{site_id}-sub")
    sub.subscribe("lw/v1/+/+/+/camera/+/frame", inbox)
    started = time.monotonic()
    sub.start()
    assert time.monotonic() - started < 2, "v5 refusal should be answered at once"
    pub = _make(transports, embedded.url, f"{site_id}-pub")
    pub.start()
    assert sub.protocol == pub.protocol == "MQTT 3.1.1"
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    assert pub.publish(topic, payload).wait(5)
    wait_for(lambda: inbox.msgs, 5, what="delivery")
    assert (inbox.msgs[0].payload, inbox.msgs[0].qos) == (payload, 1)
    wait_for(lambda: sub.stats()["acked"] == 1, 5, what="ack")
    log = embedded.log.read_text()
    assert f"embedded MQTT broker listening on 127.0.0.1:{embedded.port}" in log
    assert "Traceback" not in log


def test_retained_and_persistent_session(
    embedded: Embedded, site_id: str, transports: list[MqttTransport]
) -> None:
    status = worker_status_topic(f"w{site_id}")
    topic = frame_topic(StreamRef.camera(site_id, "l1", "s1", "c1"))
    pub = _make(transports, embedded.url, f"{site_id}-pub")
    pub.start()
    assert pub.publish(status, b"online", retain=True).wait(5)

    inbox = Inbox()
    sub = _make(transports, embedded.url, f"{site_id}-sub")
    sub.subscribe(status, inbox)
    sub.subscribe(topic, inbox)
    sub.start()
    wait_for(lambda: inbox.msgs, 5, what="retained message")
    assert inbox.msgs[0].retain and inbox.msgs[0].payload == b"online"
    sub.stop()

    assert pub.publish(topic, b"while-offline").wait(5)  # queued in the persistent session
    inbox2 = Inbox()
    again = _make(transports, embedded.url, f"{site_id}-sub")
    again.subscribe(status, inbox2)
    again.subscribe(topic, inbox2)
    again.start()
    wait_for(
        lambda: any(m.payload == b"while-offline" for m in inbox2.msgs),
        10,
        what="message queued for the offline session",
    )
    queued = next(m for m in inbox2.msgs if m.payload == b"while-offline")
    assert not queued.retain  # queued for the session, not retained state


@pytest.mark.fault
def test_last_will_on_embedded(
    embedded: Embedded, site_id: str, tmp_path: Path, transports: list[MqttTransport]
) -> None:
    worker = f"w{site_id}"
    seen: list[WorkerStatus] = []

    def on_status(msg: Inbound) -> None:
        seen.append(WorkerStatus.model_validate_json(msg.payload))
        msg.ack()

    watch = _make(transports, embedded.url, f"{site_id}-watch")
    watch.subscribe(worker_status_topic(worker), on_status)
    watch.start()
    child = subscriber(
        "liveness",
        "--url",
        embedded.url,
        "--client-id",
        f"{site_id}-w",
        "--worker",
        worker,
        "--state-dir",
        str(tmp_path),
        "--keepalive",
        "2",
    )
    try:
        ready = child.wait_line(lambda x: x["event"] == "ready", 10, what="birth")
        assert ready["protocol"] == "MQTT 3.1.1"
        wait_for(lambda: any(s.state == "online" for s in seen), 5, what="birth seen")
        killed = time.monotonic()
        child.signal(signal.SIGKILL)
        wait_for(lambda: any(s.state == "offline" for s in seen), 5, what="Last Will")
        assert time.monotonic() - killed <= 1.5 * 2 + 1
        assert [s.counter for s in seen if s.state == "offline"] == [ready["counter"]]
    finally:
        child.close()


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    b = _start(tmp_path, free_port())
    t = MqttTransport(b.url, "embedded-sigterm-client")
    t.start()
    try:
        assert _stop(b) == 0
        wait_for(lambda: not port_open(b.port), 5, what="port closed")
        wait_for(lambda: not t.connected, 10, what="client saw the broker go")
    finally:
        t.stop()
    assert "embedded MQTT broker stopping" in b.log.read_text()


def test_busy_port_is_a_clear_error(embedded: Embedded) -> None:
    out = subprocess.run(
        [str(LINEWATCH), "broker", "--port", str(embedded.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{embedded.port}" in out.stdout + out.stderr


@pytest.mark.fault
def test_unacked_message_survives_late_ack_and_sigkill(
    embedded: Embedded, site_id: str, transports: list[MqttTransport]
) -> None:
    """amqtt alone forgets a QoS 1 message 5 s after sending it unacked; LineWatch consumers
    ack after a commit, which may take longer, so the message must outlive that and a crash.
    The test therefore holds the ack past those 5 s on purpose (the behaviour under test)."""
    client_id = f"{site_id}-held"
    topic = frame_topic(StreamRef.camera(site_id, "l1", "s1", "c1"))
    child = subscriber("noack", "--url", embedded.url, "--client-id", client_id, "--topic", topic)
    try:
        child.wait_line(lambda x: x["event"] == "ready", 10, what="child subscribed")
        pub = _make(transports, embedded.url, f"{site_id}-pub")
        pub.start()
        assert pub.publish(topic, b"frame-1").wait(5)
        first = child.wait_line(lambda x: x["event"] == "message", 5, what="first delivery")
        delivered = time.monotonic()
        wait_for(lambda: time.monotonic() - delivered > 6, 8, what="amqtt's 5 s ack timeout")
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=5)
    finally:
        child.close()
    inbox = Inbox()
    again = _make(transports, embedded.url, client_id)
    again.subscribe(topic, inbox)
    again.start()
    wait_for(lambda: inbox.msgs, 10, what="redelivery")
    assert (inbox.msgs[0].payload, inbox.msgs[0].dup) == (b"frame-1", True)
    assert inbox.msgs[0].receipt == first["receipt"]
