"""Clustering over the real Mosquitto: in-process service, and `linewatch cluster` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for

from broker import codecs, embeddings
from broker.messages import (
    Alert,
    DeadLetter,
    FamilyUpdate,
    Features,
    FrameFamily,
    Msg,
    WorkerStatus,
    utcnow,
)
from broker.mqtt import MqttTransport
from broker.topics import (
    ALL_DEAD_LETTERS,
    ALL_FAMILIES,
    ROOT,
    StreamRef,
    features_topic,
    worker_status_topic,
)
from broker.transport import Inbound
from services.clustering.service import ClusterService
from services.clustering.settings import ClusterSettings

pytestmark = pytest.mark.integration
warnings.filterwarnings("ignore", module="sklearn")
REPO = Path(__file__).resolve().parents[2]
DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (2, DIM))
    return (centres[rng.integers(0, 2, n)] + rng.normal(0, 1, (n, DIM))).astype(np.float32)


def _payload(cam: StreamRef, i: int, vec: np.ndarray | None, raw: bytes | None = None) -> bytes:
    emb = raw if raw is not None else embeddings.embedding_to_bytes(np.asarray(vec))
    return codecs.encode(
        Features(
            stream=cam.key,
            key=f"{cam.key}#0:{i}",
            worker="w1",
            ts=utcnow(),
            dim=DIM,
            embedding=emb,
            verdict="anomaly",
            predicted_class="dent",
        )
    )


class Sink:
    """Outputs about one site, decoded, from a real MQTT subscription."""

    def __init__(self, url: str, site: str) -> None:
        self.msgs: list[Msg] = []
        self._lock = threading.Lock()
        self.t = MqttTransport(url, f"sink-{site}", clean_start=True)
        self.site = site
        for pattern in (
            f"{ROOT}/{site}/+/+/camera/+/family",
            f"{ROOT}/{site}/+/+/alert",
            ALL_FAMILIES,
            ALL_DEAD_LETTERS,
            worker_status_topic(f"cl-{site}"),
        ):
            self.t.subscribe(pattern, self._on)
        self.t.start()

    def _on(self, m: Inbound) -> None:
        msg = codecs.decode_output(m.topic, m.payload)
        if isinstance(msg, DeadLetter) and self.site not in msg.topic:
            m.ack()
            return  # another test's dead letter
        with self._lock:
            self.msgs.append(msg)
        m.ack()

    def of(self, kind: type[Msg]) -> list:
        with self._lock:
            return [m for m in self.msgs if isinstance(m, kind)]


@pytest.fixture()
def sink(mosquitto_url: str, site_id: str) -> Iterator[Sink]:
    s = Sink(mosquitto_url, site_id)
    try:
        yield s
    finally:
        s.t.stop()


@pytest.fixture()
def publisher(mosquitto_url: str, site_id: str) -> Iterator[MqttTransport]:
    t = MqttTransport(mosquitto_url, f"pub-{site_id}", clean_start=True)
    t.start()
    try:
        yield t
    finally:
        t.stop()


def test_service_over_mosquitto(
    mosquitto_url: str, site_id: str, sink: Sink, publisher: MqttTransport, tmp_path: Path
) -> None:
    cam = StreamRef.camera(site_id, "L1", "st1", "cam1")
    settings = ClusterSettings(
        mqtt_url=mosquitto_url,
        data_dir=tmp_path,
        cluster_id=f"cl-{site_id}",
        alert_new_family_members=3,
    )
    transport = MqttTransport(mosquitto_url, settings.cluster_id, clean_start=True)
    service = ClusterService(transport, settings)
    service.start()
    transport.start()
    try:
        for i, v in enumerate(_vectors(30)):
            publisher.publish(features_topic(cam), _payload(cam, i, v)).wait(5)
        nan = np.full(DIM, np.nan, dtype="<f2").tobytes()
        publisher.publish(features_topic(cam), _payload(cam, 99, None, raw=nan)).wait(5)
        frames = wait_for(
            lambda: len(sink.of(FrameFamily)) >= 30 and sink.of(FrameFamily),
            timeout=30,
            what="30 frame families",
        )
        ours = {f.family for f in frames}
        wait_for(
            lambda: ours & {u.family for u in sink.of(FamilyUpdate) if u.event == "created"},
            what="family created update",
        )
        alerts = wait_for(
            lambda: [a for a in sink.of(Alert) if a.kind == "new_family"], what="new-family alert"
        )
        assert alerts[0].family in ours and alerts[0].site == site_id
        dls = wait_for(lambda: sink.of(DeadLetter), what="dead letter")
        assert dls[0].reason == "bad_value" and dls[0].component == "cluster"
        assert service.stats()["assigned"] == 30
    finally:
        transport.stop()


def _wait_online(sink: Sink, counter: int) -> None:
    """The process published its birth: it is connected and subscribed."""
    wait_for(
        lambda: any(m.state == "online" and m.counter == counter for m in sink.of(WorkerStatus)),
        timeout=60,
        what="cluster birth",
    )


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "cluster", "run"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_cli_process_keeps_ids_across_restart(
    mosquitto_url: str, site_id: str, sink: Sink, publisher: MqttTransport, tmp_path: Path
) -> None:
    cam = StreamRef.camera(site_id, "L1", "st1", "cam1")
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DATA_DIR": str(tmp_path),
        "LINEWATCH_CLUSTER_ID": f"cl-{site_id}",
        "LINEWATCH_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "cluster.log"
    x = _vectors(40, seed=3)
    proc = _start(env, log)
    try:
        _wait_online(sink, 1)
        for i, v in enumerate(x[:30]):
            publisher.publish(features_topic(cam), _payload(cam, i, v)).wait(5)
        wait_for(lambda: len(sink.of(FrameFamily)) >= 30, timeout=30, what="30 families")
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert (tmp_path / "cluster" / f"cl-{site_id}.npz").exists()
    first = {f.key: f.family for f in sink.of(FrameFamily)}
    proc = _start(env, log)
    try:
        _wait_online(sink, 2)
        for i in range(24, 30):  # vectors the settled model placed, again under new keys
            publisher.publish(features_topic(cam), _payload(cam, 100 + i, x[i])).wait(5)
        wait_for(lambda: len(sink.of(FrameFamily)) >= 36, timeout=60, what="after restart")
    finally:
        _stop(proc)
    again = {f.key: f.family for f in sink.of(FrameFamily)}
    for i in range(24, 30):
        assert again[f"{cam.key}#0:{100 + i}"] == first[f"{cam.key}#0:{i}"]
