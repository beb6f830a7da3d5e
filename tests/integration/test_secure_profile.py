"""The secure Mosquitto profile (broker/secure/): no anonymous, passwords, per-identity ACLs."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _buskit import REPO, PrivateMosquitto, free_port, port_open
from helpers import wait_for

from broker.mqtt import ConnectError, MqttTransport
from broker.topics import StreamRef, assignment_topic, frame_topic, sensor_topic, verdict_topic
from broker.transport import Inbound

pytestmark = pytest.mark.integration

SECURE = REPO / "broker" / "secure"


def _passwords() -> dict[str, str]:
    lines = (SECURE / "passwd.example").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip())


def adapt_conf(text: str, tmp: Path, tls_port: int | None) -> str:
    """broker/secure/mosquitto.conf with test paths and free ports (the TLS listener enabled
    when ``tls_port``); every knob the test touches must be in the shipped file."""
    swaps = {
        "password_file": f"password_file {tmp}/passwd",
        "acl_file": f"acl_file {tmp}/acl",
        "persistence_location": f"persistence_location {tmp}/",
        "listener": "listener {port} 127.0.0.1",
    }
    if tls_port is not None:
        swaps |= {
            "#listener": f"listener {tls_port} 127.0.0.1",
            "#cafile": f"cafile {tmp}/ca.crt",
            "#certfile": f"certfile {tmp}/server.crt",
            "#keyfile": f"keyfile {tmp}/server.key",
            "#tls_version": "tls_version tlsv1.2",
        }
    done: set[str] = set()
    out = []
    for line in text.splitlines():
        key = line.split(" ", 1)[0]
        if key in swaps:
            assert key not in done, f"{key} set twice in the secure profile"
            done.add(key)
            line = swaps[key]
        out.append(line)
    assert done == set(swaps), f"secure profile lacks {set(swaps) - done}"
    return "\n".join(out) + "\n"


def make_certs(tmp: Path) -> bool:
    """A throw-away CA and a server certificate for 127.0.0.1; False without openssl."""
    if shutil.which("openssl") is None:
        return False
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        [
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=LineWatch test CA",
        ],
        ["req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ):
        subprocess.run(["openssl", *cmd], cwd=tmp, check=True, capture_output=True, timeout=60)
    return True


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    tmp = tmp_path_factory.mktemp("secure")
    shutil.copy(SECURE / "acl", tmp / "acl")
    shutil.copy(SECURE / "passwd.example", tmp / "passwd")
    subprocess.run(["mosquitto_passwd", "-U", str(tmp / "passwd")], check=True, timeout=30)
    assert "demo-" not in (tmp / "passwd").read_text()  # hashed in place
    tls_port = free_port() if make_certs(tmp) else None
    broker = PrivateMosquitto(
        tmp, adapt_conf((SECURE / "mosquitto.conf").read_text(), tmp, tls_port)
    )
    broker.tls_port = tls_port
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture()
def clients(secure_broker: PrivateMosquitto) -> Iterator[list[MqttTransport]]:
    made: list[MqttTransport] = []
    yield made
    for t in made:
        t.stop()


def login(
    made: list[MqttTransport], broker: PrivateMosquitto, user: str, password: str | None = None
) -> MqttTransport:
    pw = _passwords()[user] if password is None else password
    t = MqttTransport(
        f"mqtt://{user}:{pw}@127.0.0.1:{broker.port}",
        f"{user}-{len(made)}",
        clean_start=True,
        connect_timeout_s=5,
    )
    made.append(t)
    t.start()
    return t


class Inbox:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Inbound) -> None:
        with self.lock:
            self.topics.append(msg.topic)
        msg.ack()


def test_anonymous_refused(secure_broker: PrivateMosquitto) -> None:
    t = MqttTransport(secure_broker.url, "anonymous-probe", connect_timeout_s=5)
    with pytest.raises(ConnectError, match=r"[Nn]ot authori[sz]ed"):
        t.start()
    assert not t.connected


def test_wrong_password_refused_and_not_logged(
    secure_broker: PrivateMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"mqtt://edge-1:wrong-Secret-123@127.0.0.1:{secure_broker.port}"
    t = MqttTransport(url, "wrong-pw-probe", connect_timeout_s=5)
    with pytest.raises(ConnectError) as err:
        t.start()
    assert "wrong-Secret-123" not in str(err.value) and "edge-1:***@" in str(err.value)
    assert "wrong-Secret-123" not in caplog.text


def test_camera_publishes_only_under_its_own_station(
    secure_broker: PrivateMosquitto, clients: list[MqttTransport], site_id: str
) -> None:
    inbox = Inbox()
    reader = login(clients, secure_broker, "lw-ops")
    reader.subscribe("lw/v1/#", inbox)
    cam = login(clients, secure_broker, "cam-A-l1-s1")
    other = frame_topic(StreamRef.camera("A", "l1", "s2", site_id))
    own = frame_topic(StreamRef.camera("A", "l1", "s1", site_id))

    denied = cam.publish(other, b"not mine")
    assert denied.wait(5) is False and denied.done and "authori" in (denied.error or "")
    assert cam.publish(own, b"mine").wait(5)
    # the broker handles one client's publishes in order: once `own` arrived, `other` would have
    wait_for(lambda: own in inbox.topics, 5, what="own-station frame delivered")
    assert other not in inbox.topics
    assert cam.stats()["publish_refused"] == 1


def test_sensor_identity_cannot_publish_frames(
    secure_broker: PrivateMosquitto, clients: list[MqttTransport], site_id: str
) -> None:
    inbox = Inbox()
    reader = login(clients, secure_broker, "lw-ops")
    reader.subscribe("lw/v1/#", inbox)
    sensor = login(clients, secure_broker, "sensor-A-l1-s1")
    frame = frame_topic(StreamRef.camera("A", "l1", "s1", site_id))
    value = sensor_topic(StreamRef.sensor("A", "l1", "s1", site_id))
    assert sensor.publish(frame, b"\xff\xd8").wait(5) is False
    assert sensor.publish(value, b"21.5").wait(5)
    wait_for(lambda: value in inbox.topics, 5, what="sensor value delivered")
    assert frame not in inbox.topics


def test_only_the_dispatcher_writes_assignments(
    secure_broker: PrivateMosquitto, clients: list[MqttTransport], site_id: str
) -> None:
    inbox = Inbox()
    worker = login(clients, secure_broker, "edge-1")
    topic = assignment_topic("edge-1")
    worker.subscribe(topic, inbox)  # workers may READ their assignment
    reader = login(clients, secure_broker, "lw-ops")
    reader.subscribe("lw/v1/#", inbox)

    forged = worker.publish(topic, b'{"forged": true}')
    assert forged.wait(5) is False
    verdict = verdict_topic(StreamRef.camera("A", "l1", "s1", site_id))
    assert worker.publish(verdict, b"{}").wait(5)  # outputs are allowed
    wait_for(lambda: verdict in inbox.topics, 5, what="worker output delivered")
    assert topic not in inbox.topics

    dispatcher = login(clients, secure_broker, "lw-dispatch")
    assert dispatcher.publish(topic, b'{"epoch": 1}').wait(5)
    wait_for(
        lambda: inbox.topics.count(topic) == 2,
        5,
        what="dispatcher's assignment delivered to the worker and the reader",
    )


def test_tls_listener(
    secure_broker: PrivateMosquitto, clients: list[MqttTransport], site_id: str
) -> None:
    tls_port = secure_broker.tls_port
    if tls_port is None:
        pytest.skip("openssl not installed")
    wait_for(lambda: port_open(tls_port), 5, what="TLS listener")
    ca = secure_broker.workdir / "ca.crt"
    pw = _passwords()
    url = f"mqtts://lw-ops:{pw['lw-ops']}@127.0.0.1:{tls_port}"
    inbox = Inbox()
    reader = MqttTransport(url, f"{site_id}-tls-r", clean_start=True, ca_file=ca)
    clients.append(reader)
    reader.subscribe("lw/v1/#", inbox)
    reader.start()
    edge = MqttTransport(
        f"mqtts://edge-1:{pw['edge-1']}@127.0.0.1:{tls_port}",
        f"{site_id}-tls-w",
        clean_start=True,
        ca_file=ca,
    )
    clients.append(edge)
    edge.start()
    topic = verdict_topic(StreamRef.camera("A", "l1", "s1", site_id))
    assert edge.publish(topic, b"{}").wait(5)
    wait_for(lambda: topic in inbox.topics, 5, what="delivery over TLS")

    untrusting = MqttTransport(url, f"{site_id}-tls-x", clean_start=True, connect_timeout_s=2)
    with pytest.raises(ConnectError, match="TLS failed") as err:
        untrusting.start()
    assert pw["lw-ops"] not in str(err.value)
