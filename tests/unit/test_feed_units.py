"""Feed pure parts: SSE framing and resume ids, NaN cleaning, HTML escaping, settings; and the
clustering service applying a FamilyControl request from the feed (loopback bus)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for

from broker import codecs
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import FamilyControl, FamilyUpdate, utcnow
from broker.topics import ALL_FAMILIES, family_control_topic
from broker.transport import Inbound
from services.feed import auth, sse
from services.feed.page import alert_row
from services.feed.settings import FeedSettings
from services.store.queries import clean

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": 42,
        "action": "raised",
        "actor": "W1",
        "at": T0,
        "note": None,
        "event_assignee": None,
        "event_key": "src:site/L1/S1/camera/c1#0:7!defect",
        "id": 3,
        "kind": "defect",
        "severity": "major",
        "status": "active",
        "count": 1,
        "line": "L1",
        "station": "S1",
        "message": "m",
        "evidence_key": "alert:x",
        "last_seen": T0,
        "family": None,
        "acknowledged_by": None,
    }
    base.update(kw)
    return base


def test_sse_event_framing_and_payload() -> None:
    text = sse.format_event(_row())
    lines = text.split("\n")
    assert lines[0] == "id: 42" and lines[1] == "event: alert" and text.endswith("\n\n")
    data = json.loads(lines[2][len("data: ") :])
    assert data["source_event"] == "site/L1/S1/camera/c1#0:7!defect"
    assert data["alert"]["image_url"] == "/api/alerts/3/image"
    assert "event_key" not in data["alert"] and data["alert"]["last_seen"] == T0.isoformat()
    assert sse.event_payload(_row(event_key=None, evidence_key=None))["source_event"] is None


def test_resume_point() -> None:
    assert sse.parse_last_event_id("17", 3) == 17  # the reconnect header wins
    assert sse.parse_last_event_id(None, 3) == 3
    assert sse.parse_last_event_id(" ", None) is None
    for bad in ("-1", "1.5", "x", "9" * 19):
        with pytest.raises(ValueError):
            sse.parse_last_event_id(bad, None)


def test_nan_never_reaches_json() -> None:
    assert clean({"a": float("nan"), "b": [float("inf"), 1.5], "c": "x"}) == {
        "a": None,
        "b": [None, 1.5],
        "c": "x",
    }
    with pytest.raises(ValueError):
        sse.dumps({"x": float("nan")})


def test_page_escapes_operator_visible_text() -> None:
    html = alert_row(_row(message="<img src=x onerror=alert(1)>", line="L1", family='F"1'))
    assert "<img src=x" not in html and "&lt;img" in html and "F&quot;1" in html
    assert "disabled" not in html.split('button class="ack"')[1][:12]
    assert 'class="ack" disabled' in alert_row(_row(status="acknowledged"))


def test_tokens_and_read_policy() -> None:
    a, b = auth.new_token(), auth.new_token()
    assert a != b and a.startswith("lwt_") and len(a) > 40
    assert FeedSettings(profile="secure", mqtt_url="mqtt://u:p@h").reads_need_token
    assert not FeedSettings(profile="demo").reads_need_token
    assert FeedSettings(profile="demo", feed_read_auth=True).reads_need_token


def test_clustering_service_applies_family_control(tmp_path: Path) -> None:
    from services.clustering.service import ClusterService
    from services.clustering.settings import ClusterSettings

    hub = LoopbackHub()
    got: list[FamilyUpdate] = []
    lock = threading.Lock()
    sink = LoopbackTransport(hub, "sink")

    def on(msg: Inbound) -> None:
        with lock:
            got.append(codecs.decode_output(msg.topic, msg.payload))  # type: ignore[arg-type]
        msg.ack()

    sink.subscribe(ALL_FAMILIES, on)
    sink.start()
    t = LoopbackTransport(hub, "cluster")
    svc = ClusterService(t, ClusterSettings(data_dir=tmp_path, cluster_dim=8))
    svc.start()
    t.start()
    fam = svc.core.assign(np.eye(8, dtype=np.float32)[0], 1.0).family
    feed = LoopbackTransport(hub, "feed")
    feed.start()
    for req in (
        FamilyControl(
            request_id="r1", op="rename", family=fam, name="edge chip", actor="alice", ts=utcnow()
        ),
        FamilyControl(
            request_id="r2", op="rename", family="F999", name="x", actor="alice", ts=utcnow()
        ),
    ):
        assert feed.publish(family_control_topic(), codecs.encode(req)).wait(5)
    wait_for(lambda: svc.counters["curate_refused"] == 1, 5, what="refusal counted")
    renamed = wait_for(lambda: [m for m in got if m.event == "renamed"], 5, what="renamed")
    assert renamed[0].family == fam and renamed[0].name == "edge chip"
    assert renamed[0].actor == "alice"
    for tr in (feed, t, sink):
        tr.stop()
