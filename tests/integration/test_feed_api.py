"""Feed HTTP API on SQLite and the real Postgres: every endpoint, errors, auth, SSE resume."""

from __future__ import annotations

import io
import json
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from helpers import wait_for
from PIL import Image
from sqlalchemy import Engine, select

from broker import topics
from broker.messages import (
    Alert,
    Assignment,
    FamilyUpdate,
    FrameFamily,
    Msg,
    ThresholdChange,
    Verdict,
    WorkerStatus,
    utcnow,
)
from broker.mqtt import MqttTransport
from broker.transport import Inbound
from services.feed import auth
from services.feed.app import create_app
from services.feed.page import render
from services.feed.settings import FeedSettings
from services.store import repo
from services.store import schema as s
from services.store.engine import make_engine, upgrade
from services.store.rows import plan
from services.store.writer import Prepared, write_prepared

pytestmark = pytest.mark.integration


def _jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "JPEG")
    return buf.getvalue()


def store(engine: Engine, msgs: list[Msg]) -> None:
    """Write messages exactly as the store writer does (plan -> one batch transaction)."""
    prep = Prepared()
    for m in msgs:
        p = plan(m)
        assert p is not None
        for table, rows in p.rows.items():
            prep.rows.setdefault(table, []).extend(rows)
        if p.alert is not None:
            prep.alerts.append(p.alert)
    with engine.begin() as conn:
        write_prepared(conn, prep)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Feed:
    base: str
    engine: Engine
    site: str
    operator: str
    viewer: str
    received: list[tuple[str, bytes]]
    app: Any

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def alert(self, n: int, **kw: Any) -> Alert:
        base: dict[str, Any] = dict(
            event_id=f"{self.site}-e{n}-{uuid.uuid4().hex[:6]}",
            kind="defect",
            severity="major",
            site=self.site,
            line="L1",
            station="S1",
            stream=f"{self.site}/L1/S1/camera/c1",
            message=f"defect {n}",
            worker="W1",
            ts=utcnow(),
        )
        base.update(kw)
        return Alert(**base)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feed.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def feed(db_url: str, mosquitto_url: str, site_id: str) -> Iterator[Feed]:
    upgrade(db_url)
    engine = make_engine(db_url)
    received: list[tuple[str, bytes]] = []
    listener = MqttTransport(mosquitto_url, f"feedtest-l-{site_id}", clean_start=True)

    def on(msg: Inbound) -> None:
        received.append((msg.topic, msg.payload))
        msg.ack()

    listener.subscribe(f"{topics.ROOT}/{topics.SYS}/control/threshold/{site_id}/+/+/+", on)
    listener.subscribe(topics.FAMILY_CONTROL, on)
    listener.start()
    transport = MqttTransport(mosquitto_url, f"feedtest-{site_id}", clean_start=True)
    transport.start()
    settings = FeedSettings(
        db_url=db_url,
        feed_read_auth=True,
        feed_escalate_after_s=60,
        feed_escalate_interval_s=3600,
        feed_ping_s=0.5,
    )
    app = create_app(settings, engine=engine, transport=transport)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15, what="uvicorn started")
        op = auth.create(engine, "operator", f"alice-{site_id}")
        viewer = auth.create(engine, "viewer", f"victor-{site_id}")
        yield Feed(f"http://127.0.0.1:{port}", engine, site_id, op, viewer, received, app)
    finally:
        server.should_exit = True
        thread.join(15)
        transport.stop()
        listener.stop()
        engine.dispose()


def _err(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body
    return dict(body)


# ---- auth -----------------------------------------------------------------------------------


def test_tokens_roles_and_actor(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1)])
    with (
        feed.client() as anon,
        feed.client("lwt_nope") as bad,
        feed.client(feed.viewer) as viewer,
        feed.client(feed.operator) as op,
    ):
        _err(anon.get("/api/alerts"), 401, "unauthorized")
        _err(bad.get("/api/alerts"), 401, "unauthorized")
        _err(anon.post("/api/alerts/1/ack"), 401)
        _err(anon.get("/api/alerts", headers={"Authorization": "Basic abc"}), 401)
        _err(bad.post("/api/alerts/1/ack"), 401)
        alert_id = viewer.get("/api/alerts").json()["items"][0]["id"]
        _err(viewer.post(f"/api/alerts/{alert_id}/ack"), 403, "forbidden")
        _err(
            viewer.post("/api/suppressions", json={"line": "L1", "duration_min": 5, "reason": "x"}),
            403,
        )
        # a token is never taken from a URL; a ticket is, for reads only (EventSource, <img>)
        _err(anon.post(f"/api/alerts/{alert_id}/ack?token={feed.operator}"), 401)
        _err(anon.get(f"/api/whoami?token={feed.viewer}"), 401)
        assert viewer.get("/api/whoami").json() == {"name": f"victor-{feed.site}", "role": "viewer"}
        ticket = viewer.post("/api/stream/ticket").json()["ticket"]
        assert anon.get(f"/api/whoami?ticket={ticket}").json()["role"] == "viewer"
        op_ticket = op.post("/api/stream/ticket").json()["ticket"]
        _err(anon.post(f"/api/alerts/{alert_id}/ack?ticket={op_ticket}"), 401)
        _err(anon.get("/api/whoami?ticket=lwk_made_up"), 401)
        r = op.post(f"/api/alerts/{alert_id}/ack", json={"note": "on it"})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == f"alice-{feed.site}"
    with feed.engine.connect() as conn:
        hashes: Sequence[str] = conn.execute(select(s.T_TOKENS.c.token_hash)).scalars().all()
        assert (
            feed.operator not in hashes and len(hashes) == 2 and all(len(h) == 64 for h in hashes)
        )


# ---- alerts ---------------------------------------------------------------------------------


def test_alert_list_filters_detail_and_images(feed: Feed) -> None:
    thumb = _jpeg()
    a1 = feed.alert(1, severity="critical", thumbnail=thumb, frame_key="fk-1")
    store(
        feed.engine,
        [
            a1,
            feed.alert(2, severity="minor"),  # folds into a1's alert
            feed.alert(
                3,
                kind="anomaly",
                line="L2",
                station="S2",
                family="F1",
                severity="minor",
                stream=None,
            ),
        ],
    )
    with feed.client(feed.viewer) as c:
        page = c.get("/api/alerts").json()
        assert page["total"] == 2 and len(page["items"]) == 2
        by_kind = {a["kind"]: a for a in page["items"]}
        assert by_kind["defect"]["count"] == 2 and by_kind["defect"]["severity"] == "critical"
        assert c.get("/api/alerts", params={"line": "L2"}).json()["total"] == 1
        assert c.get("/api/alerts", params={"family": "F1"}).json()["items"][0]["kind"] == "anomaly"
        assert (
            c.get("/api/alerts", params={"severity": "critical", "status": "active"}).json()[
                "total"
            ]
            == 1
        )
        since = (utcnow() + timedelta(hours=1)).isoformat()
        assert c.get("/api/alerts", params={"since": since}).json()["total"] == 0
        p2 = c.get("/api/alerts", params={"limit": 1, "offset": 1}).json()
        assert len(p2["items"]) == 1 and p2["total"] == 2
        for bad in (
            {"status": "bogus"},
            {"severity": "loud"},
            {"limit": 0},
            {"limit": 501},
            {"offset": -1},
            {"since": "yesterday"},
            {"line": "a/b"},
            {"station": "x" * 65},
            {"kind": "DROP TABLE"},
        ):
            _err(c.get("/api/alerts", params=bad), 422, "invalid")
        detail = c.get(f"/api/alerts/{by_kind['defect']['id']}").json()
        assert [h["action"] for h in detail["history"]] == ["raised", "repeated"]
        img = c.get(detail["image_url"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
        assert img.content == thumb
        _err(c.get(f"/api/alerts/{by_kind['anomaly']['id']}/image"), 404, "not_found")
        _err(c.get("/api/alerts/999999"), 404, "not_found")
        _err(c.get("/api/alerts/0"), 422)
        _err(c.get("/api/alerts/abc"), 422)
        _err(c.get("/api/alerts/99999999999999999999999"), 422)
        _err(c.get("/api/nothing-here"), 404)
        _err(c.delete("/api/alerts"), 405)


def test_lifecycle_actions_and_bulk_ack(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1), feed.alert(2, line="L2"), feed.alert(3, line="L3")])
    actor = f"alice-{feed.site}"
    with feed.client(feed.operator) as c:
        ids = sorted(a["id"] for a in c.get("/api/alerts").json()["items"])
        a = c.post(f"/api/alerts/{ids[0]}/ack").json()
        assert a["status"] == "acknowledged" and a["acknowledged_by"] == actor
        _err(c.post(f"/api/alerts/{ids[0]}/ack"), 409, "bad_transition")
        a = c.post(f"/api/alerts/{ids[0]}/assign", json={"assignee": "bob"}).json()
        assert a["assignee"] == "bob"
        _err(c.post(f"/api/alerts/{ids[0]}/assign", json={}), 422)
        a = c.post(f"/api/alerts/{ids[0]}/comment", json={"text": "belt slipping"}).json()
        _err(c.post(f"/api/alerts/{ids[0]}/comment", json={"text": ""}), 422)
        _err(
            c.post(
                f"/api/alerts/{ids[0]}/comment",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
        _err(c.post(f"/api/alerts/{ids[0]}/comment", json={"text": "x", "extra": 1}), 422)
        a = c.post(f"/api/alerts/{ids[0]}/resolve", json={"note": "fixed"}).json()
        assert a["status"] == "resolved" and a["resolved_by"] == actor
        _err(c.post(f"/api/alerts/{ids[0]}/resolve"), 409)
        _err(c.post(f"/api/alerts/{ids[0]}/assign", json={"assignee": "x"}), 409)
        _err(c.post("/api/alerts/424242/ack"), 404, "not_found")
        r = c.post("/api/alerts/bulk/ack", json={"ids": [ids[1], ids[2], ids[0], 424242]}).json()
        assert r["acknowledged"] == [ids[1], ids[2]]
        assert r["skipped"] == {str(ids[0]): "bad_transition", "424242": "not_found"}
        _err(c.post("/api/alerts/bulk/ack", json={"ids": []}), 422)
        hist = c.get(f"/api/alerts/{ids[0]}").json()["history"]
        assert [h["action"] for h in hist] == [
            "raised",
            "acknowledged",
            "assigned",
            "commented",
            "resolved",
        ]
        assert {h["actor"] for h in hist[1:]} == {actor}
        assert hist[3]["note"] == "belt slipping"


def test_suppression_window_keeps_events_without_alerts(feed: Feed) -> None:
    with feed.client(feed.operator) as c:
        r = c.post(
            "/api/suppressions",
            json={
                "line": "L1",
                "station": "S1",
                "duration_min": 30,
                "reason": "planned maintenance",
            },
        )
        assert r.status_code == 201, r.text
        sup = r.json()
        assert sup["created_by"] == f"alice-{feed.site}"
        _err(c.post("/api/suppressions", json={"line": "L1", "reason": "x"}), 422)
        _err(
            c.post(
                "/api/suppressions",
                json={
                    "line": "L1",
                    "reason": "x",
                    "starts_at": "2026-01-02T00:00:00Z",
                    "ends_at": "2026-01-01T00:00:00Z",
                },
            ),
            422,
        )
        _err(
            c.post("/api/suppressions", json={"line": "L 1", "reason": "x", "duration_min": 5}), 422
        )
        store(feed.engine, [feed.alert(1), feed.alert(2, station="S9")])
        items = c.get("/api/alerts").json()["items"]
        assert [a["station"] for a in items] == ["S9"]
        with feed.engine.connect() as conn:
            outcomes: list[str] = sorted(conn.execute(select(s.T_ALERT_SOURCE.c.outcome)).scalars())
        assert outcomes == ["raised", "suppressed"]
        assert [x["id"] for x in c.get("/api/suppressions").json()["items"]] == [sup["id"]]
        assert c.delete(f"/api/suppressions/{sup['id']}").status_code == 200
        _err(c.delete(f"/api/suppressions/{sup['id']}"), 404)
        assert c.get("/api/suppressions").json()["items"] == []
        store(feed.engine, [feed.alert(3)])
        assert c.get("/api/alerts").json()["total"] == 2


def test_escalation_of_unacknowledged_critical(feed: Feed) -> None:
    old = utcnow() - timedelta(minutes=5)
    store(
        feed.engine, [feed.alert(1, severity="critical", ts=old), feed.alert(2, line="L2", ts=old)]
    )
    assert len(feed.app.state.escalator.once()) == 1
    assert feed.app.state.escalator.once() == []
    with feed.client(feed.viewer) as c:
        crit = c.get("/api/alerts", params={"severity": "critical"}).json()["items"][0]
        assert crit["escalated_at"] is not None
        hist = c.get(f"/api/alerts/{crit['id']}").json()["history"]
        assert hist[-1]["action"] == "escalated" and hist[-1]["actor"] == "system"
        assert "lw_feed_escalations_total 1.0" in c.get("/metrics").text


# ---- families, lines, workers, cameras ------------------------------------------------------


def _verdict(feed: Feed, n: int, verdict: str, **kw: Any) -> Verdict:
    now = utcnow()
    base: dict[str, Any] = dict(
        stream=f"{feed.site}/L1/S1/camera/c1",
        key=f"{feed.site}/L1/S1/camera/c1#0:{n}",
        seq=n,
        worker="W1",
        received_at=now,
        decided_at=now,
        verdict=verdict,
        defect_score=0.9 if verdict != "ok" else 0.1,
        novelty_score=1.0,
        predicted_class="scratch",
        model_version="m1",
        latency_ms=5.0,
    )
    base.update(kw)
    return Verdict(**base)


def test_families_gallery_and_curation(feed: Feed) -> None:
    now = utcnow()
    fams = [
        FamilyUpdate(
            family=f,
            name=f"family {f}",
            event="created",
            size=3,
            first_seen=now,
            last_seen=now,
            ts=now,
        )
        for f in ("F1", "F2", "F3")
    ]
    v = _verdict(feed, 1, "anomaly")
    ff = FrameFamily(stream=v.stream, key=v.key, family="F1", distance=0.1, ts=now)
    ev = feed.alert(1, kind="anomaly", frame_key=v.key, family="F1", thumbnail=_jpeg())
    store(feed.engine, [*fams, v, ff, ev])
    with feed.client(feed.operator) as c:
        items = {f["family"]: f for f in c.get("/api/families").json()["items"]}
        assert set(items) == {"F1", "F2", "F3"}
        assert len(items["F1"]["sample_images"]) == 1
        html = render(feed.engine, with_data=True, lines_window_s=300)  # the page's gallery
        assert 'data-family="F1"' in html and items["F1"]["sample_images"][0] in html
        img = c.get(items["F1"]["sample_images"][0])
        assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
        _err(c.get("/api/frames/987654/image"), 404)
        r = c.patch("/api/families/F1", json={"name": "edge chip"})
        assert r.status_code == 200, r.text
        assert r.json()["family"]["name"] == "edge chip"
        rid = r.json()["request_id"]
        r = c.patch("/api/families/F2", json={"merge_into": "F3"})
        assert r.json()["family"]["status"] == "merged"
        _err(c.patch("/api/families/F2", json={"name": "late"}), 409)
        assert c.patch("/api/families/F3", json={"split": 2}).status_code == 200
        _err(c.patch("/api/families/F1", json={"name": "a", "split": 2}), 422)
        _err(c.patch("/api/families/F1", json={}), 422)
        _err(c.patch("/api/families/F9", json={"name": "x"}), 404)
        _err(c.patch("/api/families/F1", json={"merge_into": "F1"}), 409)
        _err(c.patch("/api/families/F1", json={"split": 11}), 422)
        _err(c.patch("/api/families/bad%20id", json={"name": "x"}), 422)
        assert {f["family"] for f in c.get("/api/families").json()["items"]} == {"F1", "F3"}
        merged = c.get("/api/families", params={"include_merged": True}).json()["items"]
        assert len(merged) == 3
    controls = wait_for(
        lambda: [
            json.loads(p)
            for t, p in feed.received
            if t == topics.FAMILY_CONTROL and rid.encode() in p
        ],
        10,
        what="FamilyControl on the bus",
    )
    assert controls[0]["op"] == "rename" and controls[0]["name"] == "edge chip"
    assert controls[0]["actor"] == f"alice-{feed.site}"
    with feed.engine.connect() as conn:
        events = conn.execute(
            select(
                s.T_FAMILY_EVENTS.c.family, s.T_FAMILY_EVENTS.c.event, s.T_FAMILY_EVENTS.c.actor
            ).where(s.T_FAMILY_EVENTS.c.actor.is_not(None))
        ).all()
    assert {(f, e) for f, e, _ in events} == {
        ("F1", "renamed"),
        ("F2", "merged"),
        ("F3", "split_requested"),
    }


def test_lines_and_workers(feed: Feed) -> None:
    now = utcnow()
    verdicts = [_verdict(feed, i, "defect" if i % 4 == 0 else "ok") for i in range(1, 9)]
    status = WorkerStatus(
        worker=f"W{feed.site}",
        role="edge",
        state="online",
        counter=1,
        ts=now,
        load=0.5,
        p95_ms=12.0,
        capacity_fps=30.0,
    )
    assign = Assignment(
        worker=f"W{feed.site}", epoch=3, streams=(verdicts[0].stream,), dispatcher="d1", ts=now
    )
    store(feed.engine, [*verdicts, status, assign])
    with feed.engine.begin() as conn:  # a NaN that slipped into SQL must never reach JSON
        repo.upsert_workers(
            conn,
            [
                {
                    "worker": f"N{feed.site}",
                    "role": "edge",
                    "state": "online",
                    "counter": 1,
                    "load": float("nan" if conn.dialect.name == "postgresql" else "-inf"),
                    "p95_ms": float("inf"),
                    "streams": [],
                    "last_seen": now,
                }
            ],
        )
    with feed.client(feed.viewer) as c:
        lines = c.get("/api/lines").json()
        (tile,) = [x for x in lines["items"] if x["site"] == feed.site]
        assert tile["frames"] == 8 and tile["defect_rate"] == pytest.approx(0.25)
        assert tile["last_verdict"] == "defect" and tile["frames_per_min"] > 0
        _err(c.get("/api/lines", params={"window_s": 1}), 422)
        r = c.get("/api/workers")
        assert "NaN" not in r.text and "Infinity" not in r.text
        workers = {w["worker"]: w for w in json.loads(r.text, parse_constant=_no_const)["items"]}
        w = workers[f"W{feed.site}"]
        assert w["assignment"]["epoch"] == 3 and w["assignment"]["streams"] == [verdicts[0].stream]
        assert workers[f"N{feed.site}"]["load"] is None
        assert 0 <= w["age_s"] < 60 and w["state"] == "online"


def _no_const(name: str) -> None:
    raise AssertionError(f"response holds {name}")


def test_camera_thresholds(feed: Feed) -> None:
    cam = f"{feed.site}/L1/S1/c1"
    with feed.client(feed.operator) as c:
        r = c.put(
            f"/api/cameras/{cam}/thresholds",
            json={"defect_threshold": 0.8, "reason": "too many alarms"},
        )
        assert r.status_code == 202, r.text
        rid = r.json()["request_id"]
        _err(c.put(f"/api/cameras/{cam}/thresholds", json={}), 422)
        _err(c.put(f"/api/cameras/{cam}/thresholds", json={"defect_threshold": 1.5}), 422)
        _err(
            c.put(
                f"/api/cameras/{cam}/thresholds",
                content=b'{"defect_threshold": NaN}',
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
        _err(
            c.put("/api/cameras/not-a-camera/thresholds", json={"defect_threshold": 0.5}),
            422,
            "bad_stream",
        )
        _err(
            c.put(
                f"/api/cameras/{feed.site}/L1/S1/sensor/t1/thresholds",
                json={"defect_threshold": 0.5},
            ),
            422,
            "bad_stream",
        )
    with feed.client(feed.viewer) as v:
        _err(v.put(f"/api/cameras/{cam}/thresholds", json={"defect_threshold": 0.5}), 403)
        store(
            feed.engine,
            [
                ThresholdChange(
                    key=f"{feed.site}-tc1",
                    stream=f"{feed.site}/L1/S1/camera/c1",
                    defect_threshold=0.8,
                    novelty_threshold=2.0,
                    actor=f"alice-{feed.site}",
                    worker="W1",
                    ts=utcnow(),
                )
            ],
        )
        hist = v.get(f"/api/cameras/{cam}/thresholds").json()["items"]
        assert hist[0]["defect_threshold"] == 0.8 and hist[0]["actor"] == f"alice-{feed.site}"
    got = wait_for(
        lambda: [json.loads(p) for _, p in feed.received if rid.encode() in p],
        10,
        what="ThresholdControl on the bus",
    )
    assert got[0]["stream"] == f"{feed.site}/L1/S1/camera/c1"
    assert got[0]["defect_threshold"] == 0.8 and got[0]["actor"] == f"alice-{feed.site}"


def test_ops_endpoints_and_page(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1, message="<script>alert(1)</script>")])
    with feed.client() as anon:  # reads need a token here: ops endpoints too
        assert anon.get("/healthz").json() == {"status": "ok"}
        _err(anon.get("/metrics"), 401)
        _err(anon.get("/openapi.json"), 401)
        _err(anon.get("/docs"), 401)  # Swagger UI is a read like the schema it shows
    with feed.client(feed.viewer) as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["db"] is True and health["bus"] is True
        assert "lw_feed_open_alerts" in c.get("/metrics").text
        spec = c.get("/openapi.json").json()
        for path in (
            "/api/alerts",
            "/api/alerts/{alert_id}/ack",
            "/api/alerts/bulk/ack",
            "/api/suppressions",
            "/api/families/{family}",
            "/api/lines",
            "/api/workers",
            "/api/frames/{frame_id}/image",
            "/api/stream",
            "/api/cameras/{camera}/thresholds",
        ):
            assert path in spec["paths"], path
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        docs = c.get("/docs")
        assert docs.status_code == 200 and 'integrity="sha384-' in docs.text
        page = c.get("/")
        assert page.status_code == 200 and "LineWatch" in page.text
        assert "<script>alert(1)</script>" not in page.text
        assert c.get("/static/app.js").status_code == 200


# ---- SSE ------------------------------------------------------------------------------------


def _read_events(lines: Iterator[str], n: int) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    event_id, data = None, None
    for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:], parse_constant=_no_const)
        elif line == "" and event_id is not None and data is not None:
            out.append((event_id, data))
            event_id, data = None, None
            if len(out) == n:
                break
    return out


def test_sse_resume_after_dropped_connection(feed: Feed) -> None:
    store(feed.engine, [feed.alert(i, line=f"L{i}") for i in range(5)])
    seen: list[tuple[int, dict[str, Any]]] = []
    with feed.client(feed.viewer) as v:
        ticket = v.post("/api/stream/ticket").json()["ticket"]
    with feed.client() as c:
        _err(c.get("/api/stream"), 401)
        _err(
            c.get("/api/stream", params={"ticket": ticket}, headers={"Last-Event-ID": "abc"}),
            400,
            "bad_last_event_id",
        )
        with c.stream("GET", "/api/stream", params={"after": 0, "ticket": ticket}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            seen += _read_events(r.iter_lines(), 3)  # then the connection drops mid-stream
        last = seen[-1][0]
        store(feed.engine, [feed.alert(i, line=f"M{i}") for i in range(4)])  # while away
        with c.stream(
            "GET",
            "/api/stream",
            params={"ticket": ticket},
            headers={"Last-Event-ID": str(last)},
        ) as r:
            lines = r.iter_lines()
            seen += _read_events(lines, 6)
            ack_id = seen[-1][1]["alert"]["id"]
            with feed.client(feed.operator) as op:
                op.post(f"/api/alerts/{ack_id}/ack")
            seen += _read_events(lines, 1)
    ids = [i for i, _ in seen]
    with feed.engine.connect() as conn:
        all_ids: Sequence[int] = (
            conn.execute(select(s.T_ALERT_EVENTS.c.id).order_by(s.T_ALERT_EVENTS.c.id))
            .scalars()
            .all()
        )
    assert ids == list(all_ids) and len(ids) == 10  # nothing missed, nothing repeated
    assert seen[-1][1]["action"] == "acknowledged"
    assert seen[-1][1]["alert"]["acknowledged_by"] == f"alice-{feed.site}"
    assert [d["action"] for _, d in seen[:9]] == ["raised"] * 9


def test_sse_from_now_sees_only_new_events(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1)])
    with feed.client(feed.viewer) as c, c.stream("GET", "/api/stream") as r:
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        store(feed.engine, [feed.alert(2, line="L9")])
        (event,) = _read_events(lines, 1)
    assert event[1]["alert"]["line"] == "L9"


HOSTILE = [
    ("GET", "/api/lines?window_s=nan", None),
    ("GET", "/api/lines?window_s=inf", None),
    ("GET", "/api/alerts?since=nan", None),
    ("GET", "/api/alerts?limit=1e3", None),
    ("GET", "/api/alerts?offset=99999999999", None),
    ("GET", "/api/alerts/-1", None),
    ("GET", "/api/frames/abc/image", None),
    ("GET", "/api/cameras//thresholds", None),
    ("GET", "/api/cameras/%00/thresholds", None),
    ("GET", "/api/stream?after=-5", None),
    ("GET", "/api/suppressions?all=maybe", None),
    ("PATCH", "/api/families/%C3%A9", {"name": "x"}),
    ("DELETE", "/api/suppressions/abc", None),
    ("POST", "/api/suppressions", {"line": "L1", "reason": "x", "duration_min": 1e308}),
    (
        "POST",
        "/api/suppressions",
        {"line": "L1", "reason": "x", "duration_min": 600, "starts_at": "9999-12-31T23:59:59Z"},
    ),
    ("POST", "/api/suppressions", {"line": "L1", "reason": "x", "ends_at": "9999-12-31T23:59:59Z"}),
    ("POST", "/api/alerts/bulk/ack", {"ids": [0]}),
    ("POST", "/api/alerts/bulk/ack", {"ids": "all"}),
    ("POST", "/api/alerts/1/assign", {"assignee": "x" * 129}),
    ("PUT", "/api/cameras/a/b/c/d/thresholds", {"novelty_threshold": -1}),
]


def test_hostile_inputs_get_a_json_4xx_never_500(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1)])
    with feed.client(feed.operator) as c:
        for method, url, body in HOSTILE:
            r = c.request(method, url, json=body)
            assert 400 <= r.status_code < 500, (method, url, r.status_code, r.text)
            assert set(r.json()) == {"error", "detail"}, (method, url, r.text)
        r = c.get("/api/alerts", headers={"Authorization": "Bearer " + "x" * 5000})
        _err(r, 401)
        r = c.get("/api/alerts", headers={"Authorization": "Bearer"})
        _err(r, 401)
