"""Findings 1 and 8: every role x topic cell of broker/secure/acl, against real Mosquitto."""

# Each identity tries to publish on every probe topic (allowed: PUBACK; refused: "not
# authorized"), and reads every probe published by an allowed writer. The shipped ACL and
# password files are used as they are (test_secure_profile.py's private broker).

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _buskit import PrivateMosquitto
from helpers import wait_for
from test_secure_profile import _passwords, login, secure_broker  # noqa: F401  (fixture)

from broker.codecs import encode
from broker.liveness import Liveness
from broker.messages import FamilyUpdate, WorkerStatus, utcnow
from broker.mqtt import MqttTransport, connect
from broker.transport import Inbound
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings
from services.feed import auth
from services.feed.app import create_app
from services.feed.settings import FeedSettings
from services.store.batchwrite import Prepared, write_prepared
from services.store.engine import make_engine, upgrade
from services.store.rows import plan

pytestmark = pytest.mark.integration

ST = "lw/v1/A/l1/s1"
PROBES = {
    "frame": f"{ST}/camera/c1/frame",
    "frame_other_station": "lw/v1/A/l1/s2/camera/c1/frame",
    "sensor": f"{ST}/sensor/t1",
    "verdict": f"{ST}/camera/c1/verdict",
    "features": f"{ST}/camera/c1/features",
    "frame_family": f"{ST}/camera/c1/family",
    "threshold_change": f"{ST}/camera/c1/threshold",
    "gap": f"{ST}/camera/c1/gap",
    "readings": f"{ST}/sensor/t1/readings",
    "anomaly": f"{ST}/sensor/t1/anomaly",
    "alert": f"{ST}/alert",
    "status_edge1": "lw/v1/_sys/status/edge-1",
    "status_other": "lw/v1/_sys/status/edge-99",
    "status_store": "lw/v1/_sys/status/store-main",
    "assign_edge1": "lw/v1/_sys/assign/edge-1",
    "family_update": "lw/v1/_sys/family/F1",
    "control_threshold": "lw/v1/_sys/control/threshold/A/l1/s1/c1",
    "control_family": "lw/v1/_sys/control/family",
    "control_feedback": "lw/v1/_sys/control/feedback/A/l1/s1/c1",
    "feedback_result": f"{ST}/camera/c1/feedback",
    "teach": f"{ST}/camera/c1/teach",
    "history_frame": f"{ST}/camera/c1/sample",
    "decision": "lw/v1/_sys/dispatch/decision",
    "deadletter": "lw/v1/_sys/deadletter/probe",
}
RESULTS = {
    "verdict", "features", "threshold_change", "gap", "readings", "anomaly", "alert",
    "feedback_result", "teach", "history_frame",
}  # fmt: skip
WRITES: dict[str, set[str]] = {
    "cam-A-l1-s1": {"frame"},
    "sensor-A-l1-s1": {"sensor"},
    "edge-1": RESULTS | {"status_edge1", "deadletter"},
    "edge-2": RESULTS | {"deadletter"},
    "lw-dispatch": {"assign_edge1", "decision", "gap", "alert", "deadletter"},
    "lw-cluster": {"frame_family", "family_update", "alert", "deadletter"},
    "lw-store": {"status_store", "deadletter"},
    "lw-feed": {"control_threshold", "control_family", "control_feedback", "deadletter"},
    "lw-sim": {"frame", "frame_other_station", "sensor"},
    "lw-ops": set(),
}
STORED = {
    "verdict", "frame_family", "threshold_change", "gap", "readings", "anomaly", "alert",
    "status_edge1", "status_other", "status_store", "assign_edge1", "family_update",
    "decision", "deadletter", "feedback_result", "teach", "history_frame",
}  # fmt: skip
READS: dict[str, set[str]] = {
    "cam-A-l1-s1": set(),
    "sensor-A-l1-s1": set(),
    "edge-1": {
        "frame",
        "frame_other_station",
        "sensor",
        "assign_edge1",
        "control_threshold",
        "control_feedback",
        "teach",
    },
    "edge-2": {
        "frame",
        "frame_other_station",
        "sensor",
        "control_threshold",
        "control_feedback",
        "teach",
    },
    "lw-dispatch": {
        "frame",
        "frame_other_station",
        "sensor",
        "verdict",
        "status_edge1",
        "status_other",
        "status_store",
        "assign_edge1",
    },
    "lw-cluster": {"features", "control_family", "family_update"},
    "lw-store": STORED,
    "lw-feed": set(),
    "lw-sim": set(),
    "lw-ops": set(PROBES),
}


@pytest.fixture()
def made() -> Iterator[list[MqttTransport]]:
    clients: list[MqttTransport] = []
    yield clients
    for t in clients:
        t.stop()


@pytest.mark.parametrize("user", sorted(WRITES))
def test_write_matrix(
    secure_broker: PrivateMosquitto,  # noqa: F811
    made: list[MqttTransport],
    user: str,
) -> None:
    t = login(made, secure_broker, user)
    results = {name: t.publish(topic, b"probe") for name, topic in PROBES.items()}
    got = {name for name, r in results.items() if r.wait(5)}
    assert got == WRITES[user]
    refused = [r for n, r in results.items() if n not in got]
    assert all(r.done and "authori" in (r.error or "") for r in refused)


class Recorder:
    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, msg: Inbound) -> None:
        with self.lock:
            self.topics.add(msg.topic)
        msg.ack()


def test_read_matrix(secure_broker: PrivateMosquitto, made: list[MqttTransport]) -> None:  # noqa: F811
    inbox = {user: Recorder() for user in READS}
    for user, rec in inbox.items():
        login(made, secure_broker, user).subscribe("lw/v1/#", rec)
    # status_other has no writer at all: nobody can announce a worker that is not theirs
    writers = {n: u for n in PROBES for u, w in WRITES.items() if n in w}
    assert set(PROBES) - set(writers) == {"status_other"}
    pubs = {u: login(made, secure_broker, u) for u in set(writers.values())}
    for name, user in writers.items():
        pubs[user].publish(PROBES[name], b"probe")
    expected = {u: {PROBES[n] for n in names if n in writers} for u, names in READS.items()}
    for user, want in expected.items():
        wait_for(lambda u=user, w=want: w <= inbox[u].topics, 10, what=f"{user}'s reads")
    for user, want in expected.items():
        assert inbox[user].topics == want, user


def test_camera_cannot_pose_as_a_worker_for_the_dispatcher(
    secure_broker: PrivateMosquitto,  # noqa: F811
    made: list[MqttTransport],
) -> None:
    """The attack of finding 1: a camera identity publishes an edge birth with 1000 fps."""
    settings = DispatchSettings(
        profile="secure",
        mqtt_url=f"mqtt://lw-dispatch:demo-dispatch@127.0.0.1:{secure_broker.port}",
        discover_streams=False,
        observe_rates=False,
    )
    assert settings.worker_prefix == "edge-"
    disp_t = login(made, secure_broker, "lw-dispatch")
    disp = Dispatcher(settings, disp_t)
    disp.start()
    try:
        cam = login(made, secure_broker, "cam-A-l1-s1")
        edge = login(made, secure_broker, "edge-1")

        def birth(wid: str) -> bytes:
            st = WorkerStatus(
                worker=wid, role="edge", state="online", counter=1, ts=utcnow(),
                capacity_fps=1000.0,
            )  # fmt: skip
            return encode(st)

        for wid in ("cam-A-l1-s1", "edge-99", "edge-1"):
            r = cam.publish(f"lw/v1/_sys/status/{wid}", birth(wid))
            assert r.wait(5) is False and "authori" in (r.error or "")
        assert edge.publish("lw/v1/_sys/status/edge-1", birth("edge-1")).wait(5)
        wait_for(lambda: "edge-1" in disp._seen, 10, what="the real worker seen")
        assert set(disp._seen) == {"edge-1"}
    finally:
        disp.stop()


def test_forged_family_update_from_the_feed_is_refused(
    secure_broker: PrivateMosquitto,  # noqa: F811
    made: list[MqttTransport],
) -> None:
    """The attack of finding 8: lw-feed publishes a FamilyUpdate 'merged' on a family topic;
    the broker refuses it, so the store (reading as lw-store) never sees it. The feed's own
    request topic (control/family) and liveness topic are allowed."""
    store = Recorder()
    login(made, secure_broker, "lw-store").subscribe("lw/v1/_sys/family/+", store)
    feed = login(made, secure_broker, "lw-feed")
    now = utcnow()
    forged = FamilyUpdate(
        family="F1", name="x", event="merged", size=1, status="merged", merged_into="F2",
        first_seen=now, last_seen=now, ts=now,
    )  # fmt: skip
    r = feed.publish("lw/v1/_sys/family/F1", encode(forged))
    assert r.wait(5) is False and "authori" in (r.error or "")
    assert feed.publish("lw/v1/_sys/control/family", b"{}").wait(5)
    assert feed.publish("lw/v1/_sys/status/feed-main", b"{}").wait(5)
    cluster = login(made, secure_broker, "lw-cluster")
    assert cluster.publish(
        "lw/v1/_sys/family/F9", encode(forged.model_copy(update={"family": "F9"}))
    ).wait(5)
    wait_for(lambda: store.topics, 5, what="the owner's update reaches the store")
    assert store.topics == {"lw/v1/_sys/family/F9"}


def test_feed_curation_and_liveness_work_in_the_secure_profile(
    secure_broker: PrivateMosquitto,  # noqa: F811
    made: list[MqttTransport],
    tmp_path: Path,
) -> None:
    """Finding 8's other half: PATCH /api/families answered 503 (the ACL refused the feed's
    family-control topic). The feed now runs as lw-feed: birth on its own status topic, the
    request reaches the clustering identity, nothing lands on a family topic."""
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'feed.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    fam = FamilyUpdate(
        family="F1", name="f", event="created", size=1, first_seen=now, last_seen=now, ts=now
    )
    p = plan(fam)
    assert p is not None
    prep = Prepared(rows=dict(p.rows))
    with engine.begin() as conn:
        write_prepared(conn, prep)
    cluster_inbox, store_inbox = Recorder(), Recorder()
    login(made, secure_broker, "lw-cluster").subscribe("lw/v1/_sys/control/family", cluster_inbox)
    login(made, secure_broker, "lw-store").subscribe("lw/v1/_sys/#", store_inbox)
    pw = _passwords()["lw-feed"]
    settings = FeedSettings(
        db_url=url, profile="secure", mqtt_url=f"mqtt://lw-feed:{pw}@127.0.0.1:{secure_broker.port}"
    )
    feed_t = connect(settings, "feed-main")  # as `linewatch feed` does
    made.append(feed_t)
    liveness = Liveness(feed_t, "feed-main", "feed", tmp_path / "state")
    feed_t.start()
    liveness.birth()
    app = create_app(settings, engine=engine, transport=feed_t, escalate=False)
    op = auth.create(engine, "operator", "alice")
    try:
        with TestClient(app, base_url="http://localhost") as c:
            r = c.patch(
                "/api/families/F1",
                json={"name": "edge chip"},
                headers={"Authorization": f"Bearer {op}"},
            )
            assert r.status_code == 200, r.text
        wait_for(lambda: cluster_inbox.topics, 5, what="the request reaches lw-cluster")
        wait_for(
            lambda: "lw/v1/_sys/status/feed-main" in store_inbox.topics,
            5,
            what="the feed's birth stored",
        )
        assert not any(t.startswith("lw/v1/_sys/family/") for t in store_inbox.topics)
    finally:
        engine.dispose()
