"""The whole edge worker over the loopback bus with a tiny ONNX model (hermetic)."""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import numpy as np
import pytest
from helpers import wait_for
from PIL import Image

from broker.codecs import decode_output, encode
from broker.embeddings import embedding_from_bytes
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Assignment, Msg, ThresholdControl
from broker.topics import (
    Route,
    StreamRef,
    assignment_topic,
    frame_topic,
    parse,
    sensor_topic,
    threshold_control_topic,
)
from broker.transport import Inbound
from edge.settings import EdgeSettings, SensorLimit
from edge.startup import build_worker
from edge.worker import EdgeWorker

pytestmark = pytest.mark.unit

C1 = StreamRef.camera("s1", "L1", "st1", "c1")
C2 = StreamRef.camera("s1", "L1", "st1", "c2")
T1 = StreamRef.sensor("s1", "L1", "st1", "t1")


class Held:
    """A publish the 'broker' has not acknowledged yet."""

    def __init__(self) -> None:
        self.ev = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        return self.ev.wait(timeout)

    @property
    def done(self) -> bool:
        return self.ev.is_set()


class HoldingTransport(LoopbackTransport):
    """Loopback whose PUBACKs can be held back, to see when inputs get acked."""

    def __init__(self, hub: LoopbackHub, client_id: str) -> None:
        super().__init__(hub, client_id)
        self.hold = False
        self.held: list[Held] = []

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, str] | None = None,
    ) -> Any:
        done = super().publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if not self.hold:
            return done
        h = Held()
        self.held.append(h)
        return h

    def release(self) -> None:
        self.hold = False
        for h in self.held:
            h.ev.set()


class Bus:
    """Observer client: publishes inputs, records every decoded output."""

    def __init__(self, hub: LoopbackHub) -> None:
        self.tr = LoopbackTransport(hub, "observer")
        self.out: list[tuple[Route, Msg]] = []
        self._lock = threading.Lock()
        self.tr.subscribe("lw/v1/#", self._on)
        self.tr.start()

    def _on(self, m: Inbound) -> None:
        route = parse(m.topic).route
        if route in (Route.FRAME, Route.SENSOR, Route.THRESHOLD_CONTROL, Route.ASSIGNMENT):
            return
        with self._lock:
            self.out.append((route, decode_output(m.topic, m.payload)))

    def of(self, route: Route) -> list[Any]:
        with self._lock:
            return [msg for r, msg in self.out if r is route]

    def wait(self, route: Route, n: int, timeout: float = 10) -> list[Any]:
        """Wait until exactly ``n`` messages of ``route`` arrived; return them."""
        wait_for(lambda: len(self.of(route)) >= n, timeout, what=f"{n} x {route.value}")
        got = self.of(route)
        assert len(got) == n, f"{len(got)} x {route.value}, expected {n}"
        return got

    def frame(self, stream: StreamRef, kind: str, seq: int | None, **kw: Any) -> None:
        props = {} if seq is None else {"seq": str(seq)}
        self.tr.publish(
            frame_topic(stream), tiny.frame(kind, seed=seq or 0, **kw), properties=props
        )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def hub() -> LoopbackHub:
    return LoopbackHub()


@pytest.fixture()
def bus(hub: LoopbackHub) -> Iterator[Bus]:
    b = Bus(hub)
    yield b
    b.tr.stop()


def make(
    hub: LoopbackHub, tmp: Path, model_dir: Path, streams: tuple[str, ...] = (C1.key,), **kw: Any
) -> tuple[EdgeWorker, HoldingTransport]:
    opts: dict[str, Any] = {
        "worker_id": "W1",
        "model_dir": model_dir,
        "data_dir": tmp,
        "reorder_timeout_s": 0.3,
        "heartbeat_s": 0.1,
        "max_wait_ms": 5,
    }
    opts.update(kw)
    tr = HoldingTransport(hub, "edge-W1")
    w = build_worker(EdgeSettings(**opts), tr)
    w.start(streams)
    return w, tr


@pytest.fixture()
def worker(hub: LoopbackHub, tmp_path: Path, model_dir: Path) -> Iterator[EdgeWorker]:
    w, _ = make(hub, tmp_path, model_dir, (C1.key, C2.key, T1.key))
    yield w
    w.stop()


def test_frames_give_verdicts_alerts_and_features(worker: EdgeWorker, bus: Bus) -> None:
    for i, kind in enumerate(["good", "good", "defect", "anomaly", "good"]):
        bus.frame(C1, kind, seq=i)
    verdicts = bus.wait(Route.VERDICT, 5, 10)
    by_seq = {v.seq: v for v in verdicts}
    assert [by_seq[i].verdict for i in range(5)] == ["ok", "ok", "defect", "anomaly", "ok"]
    assert by_seq[2].predicted_class == "scratch" and by_seq[3].predicted_class == "unknown"
    assert all(v.worker == "W1" and v.epoch == 0 and v.latency_ms >= 0 for v in verdicts)
    assert by_seq[0].key == f"{C1.key}#0:0"
    alerts = bus.wait(Route.ALERT, 2, 5)
    assert {a.kind for a in alerts} == {"defect", "anomaly"}
    for a in alerts:
        assert a.frame_key in (by_seq[2].key, by_seq[3].key)
        assert a.thumbnail and len(a.thumbnail) <= 48_000  # the evidence defaults: 384 px
        with Image.open(io.BytesIO(a.thumbnail)) as im:
            assert im.format == "JPEG" and max(im.size) <= 384
    feats = bus.wait(Route.FEATURES, 2, 5)
    for f in feats:
        vec = embedding_from_bytes(f.embedding, f.dim)
        assert f.dim == 3 and abs(float(np.linalg.norm(vec)) - 1.0) < 0.01
    wait_for(lambda: worker.transport.stats()["acked"] == 5, 5, what="5 inputs acked")
    assert worker.metrics.value("linewatch_edge_verdicts_total", verdict="ok") == 3


def test_input_acked_only_after_outputs_acknowledged(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, tr = make(hub, tmp_path, model_dir)
    try:
        tr.hold = True
        bus.frame(C1, "defect", seq=1)
        bus.wait(Route.FEATURES, 1, 10)
        wait_for(lambda: len(tr.held) == 3, 5, what="verdict, alert, features publishes")
        assert tr.stats()["acked"] == 0  # broker has not acknowledged the outputs yet
        tr.release()
        wait_for(lambda: tr.stats()["acked"] == 1, 5, what="input acked")
    finally:
        w.stop()


class GatedRunner:
    """The real tiny model, paused on demand (to make the worker fall behind)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec, self.class_names, self.version = inner.spec, inner.class_names, inner.version
        self.open = threading.Event()
        self.entered = threading.Event()

    def run(self, batch: np.ndarray) -> Any:
        self.entered.set()
        self.open.wait(10)
        return self.inner.run(batch)


def test_overload_sheds_oldest_and_records_gaps(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, tr = make(hub, tmp_path, model_dir, max_batch=1, camera_queue=2)
    gate = GatedRunner(w.pipeline.runner)
    w.pipeline.runner = gate
    try:
        bus.frame(C1, "good", seq=0)
        assert gate.entered.wait(5)  # frame 0 is in inference, blocked
        for seq in range(1, 7):
            bus.frame(C1, "good", seq=seq)
        gaps = bus.wait(Route.GAP, 4, 5)
        assert sorted(g.from_seq for g in gaps) == [1, 2, 3, 4]  # newest frames won
        assert {g.reason for g in gaps} == {"shed"}
        gate.open.set()
        verdicts = bus.wait(Route.VERDICT, 3, 10)
        assert sorted(v.seq for v in verdicts) == [0, 5, 6]
        wait_for(lambda: tr.stats()["acked"] == 7, 5, what="all 7 inputs acked")
        assert w.metrics.value("linewatch_edge_shed_frames_total") == 4
    finally:
        gate.open.set()
        w.stop()


def test_missing_seq_becomes_gap_after_reorder_timeout(worker: EdgeWorker, bus: Bus) -> None:
    for seq in (10, 11, 14, 12):
        bus.frame(C1, "good", seq=seq)
    wait_for(lambda: len(bus.of(Route.VERDICT)) == 4, 10, what="4 verdicts")
    [gap] = bus.wait(Route.GAP, 1, 5)
    assert (gap.reason, gap.from_seq, gap.to_seq, gap.count) == ("missing", 13, 13, 1)
    bus.frame(C1, "good", seq=12)  # a duplicate of a finished frame: acked, not re-inspected
    wait_for(
        lambda: worker.metrics.value("linewatch_edge_frames_total", outcome="duplicate") == 1,
        5,
        what="duplicate",
    )
    assert len(bus.of(Route.VERDICT)) == 4


def _bomb_png(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_garbage_is_dead_lettered_and_other_cameras_keep_going(
    worker: EdgeWorker, bus: Bus
) -> None:
    good_jpeg = tiny.frame("good", fmt="JPEG")
    png = tiny.frame("good")
    at = png.index(b"IDAT") + 4  # framing intact, image data broken: fails only in decoding
    body_corrupt = png[:at] + bytes(b ^ 0x5A for b in png[at : at + 40]) + png[at + 40 :]
    garbage = [
        b"\x00garbage",
        good_jpeg[: len(good_jpeg) // 2],
        _bomb_png(100_000, 100_000),
        json.dumps({"seq": 1, "encoding": "png", "image": "!!"}).encode(),
        json.dumps({"seq": 2, "part": "bad id!", "encoding": "jpeg", "image": "AAAA"}).encode(),
        body_corrupt,
    ]
    for payload in garbage:
        bus.tr.publish(frame_topic(C2), payload)
        bus.frame(C1, "good", seq=None)
    dls = bus.wait(Route.DEAD_LETTER, 6, 10)
    reasons = sorted(d.reason for d in dls)
    assert reasons == sorted(
        ["bad_image", "image_truncated", "image_too_large", "bad_schema", "bad_schema", "bad_image"]
    )
    assert all(d.component == "edge" and d.topic == frame_topic(C2) for d in dls)
    wait_for(lambda: len(bus.of(Route.VERDICT)) == 6, 10, what="camera c1 still served")
    wait_for(lambda: worker.transport.stats()["acked"] == 12, 5, what="all inputs acked")


def test_threshold_change_is_applied_and_published(worker: EdgeWorker, bus: Bus) -> None:
    ctl = ThresholdControl(
        stream=C1.key, novelty_threshold=1e-6, actor="alice", reason="test", request_id="r-1"
    )
    bus.tr.publish(threshold_control_topic(C1), encode(ctl))
    [change] = bus.wait(Route.THRESHOLD_CHANGE, 1, 5)
    assert (change.novelty_threshold, change.previous_novelty_threshold) == (1e-6, 0.2)
    assert change.actor == "alice" and change.worker == "W1"
    bus.frame(C1, "good", seq=1)
    bus.frame(C2, "good", seq=1)
    verdicts = bus.wait(Route.VERDICT, 2, 10)
    assert {v.stream: v.verdict for v in verdicts} == {C1.key: "anomaly", C2.key: "ok"}
    bad = ThresholdControl(stream=C1.key, novelty_threshold=-2, actor="x", request_id="r-2")
    bus.tr.publish(threshold_control_topic(C1), encode(bad))
    [dl] = bus.wait(Route.DEAD_LETTER, 1, 5)
    assert dl.reason == "bad_value"


def test_assignment_moves_streams_and_sets_epoch(worker: EdgeWorker, bus: Bus) -> None:
    a = Assignment(worker="W1", epoch=7, streams=(C2.key,), dispatcher="D1", ts=datetime.now(UTC))
    bus.tr.publish(assignment_topic("W1"), encode(a), retain=True)
    wait_for(lambda: worker.state.epoch == 7, 5, what="epoch 7")
    bus.frame(C1, "good", seq=1)  # no longer ours: not subscribed
    bus.frame(C2, "defect", seq=1)
    [v] = bus.wait(Route.VERDICT, 1, 10)
    assert (v.stream, v.epoch, v.verdict) == (C2.key, 7, "defect")
    old = a.model_copy(update={"epoch": 6, "streams": (C1.key,)})
    bus.tr.publish(assignment_topic("W1"), encode(old))
    bus.frame(C2, "good", seq=2)
    wait_for(lambda: len(bus.of(Route.VERDICT)) == 2, 10, what="still serving c2")
    assert worker.state.epoch == 7 and worker.state.streams == {C2}


def test_sensor_readings_anomalies_and_dead_letters(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    worker, _ = make(
        hub,
        tmp_path,
        model_dir,
        (T1.key,),
        sensor_limits={"t1": SensorLimit(high=100.0, valid_max=1000.0)},
    )
    try:
        readings = [{"seq": i, "value": 20.0 + (i % 3) * 0.1} for i in range(40)]
        readings.append({"seq": 40, "value": 150.0})  # above the alarm limit, and a spike
        bus.tr.publish(sensor_topic(T1), json.dumps({"readings": readings}).encode())
        bus.tr.publish(sensor_topic(T1), b"5000")  # physically impossible: dead letter
        bus.tr.publish(sensor_topic(T1), b"nan")  # rejected by the codec

        def stored() -> list[Any]:
            return [r for b in bus.of(Route.READINGS) for r in b.readings]

        wait_for(lambda: len(stored()) >= 41, 5, what="41 readings forwarded")
        assert [r.key for r in stored()] == [f"{T1.key}#0:{i}" for i in range(41)]
        anomalies = bus.wait(Route.SENSOR_ANOMALY, 2, 5)
        assert {a.kind for a in anomalies} == {"limit", "zscore"}
        assert all(a.seq == 40 and a.value == 150.0 for a in anomalies)
        assert len([a for a in bus.of(Route.ALERT) if a.kind == "sensor"]) == 2
        dls = bus.wait(Route.DEAD_LETTER, 2, 5)
        assert sorted(d.reason for d in dls) == ["bad_value", "out_of_range"]
        wait_for(lambda: worker.transport.stats()["acked"] == 3, 5, what="3 inputs acked")
    finally:
        worker.stop()


def test_heartbeats_and_graceful_death(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, _ = make(hub, tmp_path, model_dir, labels={"zone": "a"}, cost_per_hour=0.5)
    beats = wait_for(
        lambda: [s for s in bus.of(Route.STATUS) if s.state == "heartbeat"], 5, what="a heartbeat"
    )
    hb = beats[0]
    assert hb.streams == (C1.key,) and hb.labels == {"zone": "a"} and hb.cost_per_hour == 0.5
    assert hb.capacity_fps > 0 and hb.model_version.startswith("tiny-test")
    w.stop()
    states = [s.state for s in bus.of(Route.STATUS)]
    assert states[0] == "online" and states[-1] == "offline"


def test_restart_resubscribes_the_remembered_assignment(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, _ = make(hub, tmp_path, model_dir, ())
    a = Assignment(worker="W1", epoch=4, streams=(C2.key,), dispatcher="D1", ts=datetime.now(UTC))
    bus.tr.publish(assignment_topic("W1"), encode(a))  # not retained: only this delivery
    wait_for(lambda: w.state.epoch == 4, 5, what="epoch 4")
    w.stop()
    again, _ = make(hub, tmp_path, model_dir, ())
    try:
        assert again.state.epoch == 4 and again.state.streams == {C2}
        bus.frame(C2, "good", seq=1)
        [v] = bus.wait(Route.VERDICT, 1, 10)
        assert v.epoch == 4
    finally:
        again.stop()
