"""Clustering service over the loopback bus: features in; families, updates, alerts out."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for

from broker import codecs, embeddings
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Alert, DeadLetter, FamilyUpdate, Features, FrameFamily, Msg, utcnow
from broker.topics import (
    ALL_ALERTS,
    ALL_DEAD_LETTERS,
    ALL_FAMILIES,
    ALL_FRAME_FAMILIES,
    StreamRef,
    features_topic,
)
from broker.transport import Inbound
from services.clustering.service import ClusterService
from services.clustering.settings import ClusterSettings

pytestmark = pytest.mark.unit
warnings.filterwarnings("ignore", module="sklearn")
DIM = 16
CAM = StreamRef.camera("s1", "L2", "st1", "cam1")


def _settings(tmp_path: Path, **kw: object) -> ClusterSettings:
    base: dict[str, object] = {
        "data_dir": tmp_path,
        "cluster_dim": DIM,
        "cluster_refit_every": 64,
        "alert_new_family_members": 4,
        "cluster_update_interval_s": 0.0,
    }
    return ClusterSettings(**(base | kw))  # type: ignore[arg-type]


def _features(
    i: int, vec: np.ndarray, *, dim: int = DIM, raw: bytes | None = None, verdict: str = "anomaly"
) -> bytes:
    msg = Features(
        stream=CAM.key,
        key=f"{CAM.key}#0:{i}",
        worker="w1",
        ts=utcnow(),
        dim=dim,
        embedding=raw if raw is not None else embeddings.embedding_to_bytes(vec),
        verdict=verdict,  # type: ignore[arg-type]  # tests pass bad verdicts on purpose
        predicted_class="scratch",
    )
    return codecs.encode(msg)


class Sink:
    """Everything the service publishes, decoded."""

    def __init__(self, hub: LoopbackHub) -> None:
        self.msgs: list[Msg] = []
        self._lock = threading.Lock()
        self.t = LoopbackTransport(hub, "sink")
        for pattern in (ALL_FRAME_FAMILIES, ALL_FAMILIES, ALL_ALERTS, ALL_DEAD_LETTERS):
            self.t.subscribe(pattern, self._on)
        self.t.start()

    def _on(self, m: Inbound) -> None:
        with self._lock:
            self.msgs.append(codecs.decode_output(m.topic, m.payload))
        m.ack()

    def of(self, kind: type[Msg]) -> list:
        with self._lock:
            return [m for m in self.msgs if isinstance(m, kind)]


@pytest.fixture()
def bus(tmp_path: Path) -> Iterator[tuple[LoopbackHub, ClusterService, Sink, LoopbackTransport]]:
    hub = LoopbackHub()
    sink = Sink(hub)
    svc_t = LoopbackTransport(hub, "cluster-1")
    service = ClusterService(svc_t, _settings(tmp_path))
    service.start()
    svc_t.start()
    pub = LoopbackTransport(hub, "edge")
    pub.start()
    try:
        yield hub, service, sink, pub
    finally:
        for t in (pub, svc_t, sink.t):
            t.stop()


def _vectors(n: int, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (k, DIM))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 1, (n, DIM))).astype(np.float32), y


def test_features_in_frame_family_update_and_new_family_alert_out(bus) -> None:
    _, service, sink, pub = bus
    x, _ = _vectors(40)
    for i, v in enumerate(x):
        pub.publish(features_topic(CAM), _features(i, v))
    frames = wait_for(
        lambda: len(sink.of(FrameFamily)) == 40 and sink.of(FrameFamily), what="40 frame families"
    )
    assert {f.key for f in frames} == {f"{CAM.key}#0:{i}" for i in range(40)}
    assert all(f.stream == CAM.key for f in frames)
    updates = sink.of(FamilyUpdate)
    assert any(u.event == "created" for u in updates)
    alerts = wait_for(
        lambda: [a for a in sink.of(Alert) if a.kind == "new_family"], what="new-family alert"
    )
    a = alerts[0]
    assert (a.site, a.line, a.station, a.family) == ("s1", "L2", "st1", a.family)
    assert a.family in {f.family for f in frames}
    assert service.stats()["assigned"] == 40


def test_bad_vectors_are_dead_lettered_with_reason(bus) -> None:
    _, service, sink, pub = bus
    nan = np.full(DIM, np.nan, dtype="<f2").tobytes()
    pub.publish(features_topic(CAM), _features(1, np.zeros(DIM), raw=nan))
    pub.publish(features_topic(CAM), _features(2, np.zeros(8), dim=8))
    pub.publish(
        features_topic(CAM), _features(3, np.zeros(DIM), dim=DIM, raw=b"\x00" * (2 * DIM - 2))
    )
    pub.publish(features_topic(CAM), b"{not json")
    dls = wait_for(
        lambda: len(sink.of(DeadLetter)) == 4 and sink.of(DeadLetter), what="four dead letters"
    )
    assert sorted(d.reason for d in dls) == [
        "bad_json",
        "bad_value",
        "wrong_dimension",
        "wrong_dimension",
    ]
    assert all(d.component == "cluster" for d in dls)
    assert sink.of(FrameFamily) == [] and service.core.seen == 0


def test_ok_verdicts_are_skipped_and_counted(bus) -> None:
    _, service, _sink, pub = bus
    pub.publish(features_topic(CAM), _features(1, np.ones(DIM), verdict="ok"))
    wait_for(lambda: service.counters["skipped_ok"] == 1, what="skip")
    assert service.core.seen == 0


class _Held:
    """A publish the 'broker' acknowledges only when the test says so."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    @property
    def done(self) -> bool:
        return self.gate.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.gate.wait(timeout)


class HeldTransport(LoopbackTransport):
    """Loopback whose publishes complete only once ``release`` is set."""

    def __init__(self, hub: LoopbackHub, client_id: str) -> None:
        super().__init__(hub, client_id)
        self.release = threading.Event()

    def publish(self, topic, payload, *, qos=1, retain=False, properties=None):
        super().publish(topic, payload, qos=qos, retain=retain, properties=properties)
        return _Held(self.release)


def test_input_is_acked_only_after_outputs_are_acknowledged(tmp_path: Path) -> None:
    hub = LoopbackHub()
    t = HeldTransport(hub, "cluster-1")
    service = ClusterService(t, _settings(tmp_path, cluster_publish_timeout_s=5.0))
    acked = threading.Event()
    msg = Inbound(topic=features_topic(CAM), payload=_features(1, np.ones(DIM)), ack=acked.set)
    worker = threading.Thread(target=service.on_features, args=(msg,))
    worker.start()
    try:
        wait_for(lambda: t.stats()["published"] >= 1, what="outputs published")
        assert not acked.is_set()  # outputs sent, not yet acknowledged: input held
        t.release.set()
        wait_for(acked.is_set, what="input ack")
        assert (tmp_path / "cluster" / "cluster-1.npz").exists()  # new family: state saved
    finally:
        t.release.set()
        worker.join(5)


def test_unacknowledged_outputs_leave_input_unacked(tmp_path: Path) -> None:
    t = HeldTransport(LoopbackHub(), "cluster-1")
    service = ClusterService(t, _settings(tmp_path, cluster_publish_timeout_s=0.05))
    acked = threading.Event()
    service.on_features(
        Inbound(topic=features_topic(CAM), payload=_features(1, np.ones(DIM)), ack=acked.set)
    )
    assert not acked.is_set() and service.counters["unacked_errors"] == 1
    t.release.set()  # the redelivery republishes the same decision, counted once
    service.on_features(
        Inbound(topic=features_topic(CAM), payload=_features(1, np.ones(DIM)), ack=acked.set)
    )
    assert acked.is_set() and service.core.seen == 1


def test_restart_keeps_ids_and_curation_is_published_with_actor(tmp_path: Path) -> None:
    hub = LoopbackHub()
    sink = Sink(hub)
    x, _ = _vectors(80, seed=5)
    first = ClusterService(LoopbackTransport(hub, "c1"), _settings(tmp_path))
    for i, v in enumerate(x[:60]):
        first.on_features(Inbound(topic=features_topic(CAM), payload=_features(i, v)))
    first.save()
    before = first.core.predict(x)
    second = ClusterService(LoopbackTransport(hub, "c1"), _settings(tmp_path))
    assert second.load()
    assert second.core.predict(x) == before
    fid = second.core.active()[0].id
    updates = second.curate("rename", "alice", family=fid, name="dent")
    assert [(u.family, u.event, u.actor, u.name) for u in updates] == [
        (fid, "renamed", "alice", "dent")
    ]
    wait_for(
        lambda: any(u.event == "renamed" for u in sink.of(FamilyUpdate)), what="rename published"
    )
    third = ClusterService(LoopbackTransport(hub, "c1"), _settings(tmp_path))
    third.load()
    assert third.core.families[fid].name == "dent"
    sink.t.stop()


def test_merge_and_split_are_published_and_grew_is_throttled(tmp_path: Path) -> None:
    hub = LoopbackHub()
    sink = Sink(hub)
    now = [1000.0]
    settings = _settings(tmp_path, cluster_update_interval_s=60.0)
    service = ClusterService(LoopbackTransport(hub, "c1"), settings, clock=lambda: now[0])
    x, _ = _vectors(120, k=3, seed=8)
    for i, v in enumerate(x):
        service.on_features(Inbound(topic=features_topic(CAM), payload=_features(i, v)))
    fams = sorted(f.id for f in service.core.active())
    assert len(fams) >= 2
    grew_before = [u for u in sink.of(FamilyUpdate) if u.event == "grew"]
    wait_for(lambda: sink.of(FrameFamily) and len(sink.of(FrameFamily)) == 120, what="frames")
    assert len({u.family for u in grew_before}) <= len(fams)  # one per family per minute
    now[0] += 61.0
    service.tick()  # the due growth updates go out on the tick
    wait_for(
        lambda: len([u for u in sink.of(FamilyUpdate) if u.event == "grew"]) > len(grew_before),
        what="grew flushed by tick",
    )
    merged = service.curate("merge", "bob", sources=[fams[1]], into=fams[0])
    by_family = {u.family: u for u in merged}
    assert by_family[fams[1]].status == "merged" and by_family[fams[1]].merged_into == fams[0]
    assert by_family[fams[0]].actor == "bob" and by_family[fams[0]].status == "active"
    split = service.curate("split", "carol", family=fams[0])
    assert all(u.event == "split" and u.actor == "carol" for u in split) and len(split) == 2
    wait_for(lambda: any(u.event == "split" for u in sink.of(FamilyUpdate)), what="split")
    sink.t.stop()
