"""Feed HTTP API on SQLite and the real Postgres: every endpoint, errors, auth (the live
stream: test_feed_sse.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from _feedkit import Feed, jpeg, json_error, no_const, store
from helpers import wait_for
from sqlalchemy import select

from broker import topics
from broker.messages import (
    Assignment,
    FamilyUpdate,
    FrameFamily,
    ThresholdChange,
    Verdict,
    WorkerStatus,
    utcnow,
)
from services.store import repo
from services.store import schema as s

pytestmark = pytest.mark.integration


# ---- auth -----------------------------------------------------------------------------------


def test_tokens_roles_and_actor(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1)])
    with (
        feed.client() as anon,
        feed.client("lwt_nope") as bad,
        feed.client(feed.viewer) as viewer,
        feed.client(feed.operator) as op,
    ):
        json_error(anon.get("/api/alerts"), 401, "unauthorized")
        json_error(bad.get("/api/alerts"), 401, "unauthorized")
        json_error(anon.post("/api/alerts/1/ack"), 401)
        json_error(anon.get("/api/alerts", headers={"Authorization": "Basic abc"}), 401)
        json_error(bad.post("/api/alerts/1/ack"), 401)
        alert_id = viewer.get("/api/alerts").json()["items"][0]["id"]
        json_error(viewer.post(f"/api/alerts/{alert_id}/ack"), 403, "forbidden")
        json_error(
            viewer.post("/api/suppressions", json={"line": "L1", "duration_min": 5, "reason": "x"}),
            403,
        )
        # a token is never taken from a URL; a ticket is, for reads only (EventSource, <img>)
        json_error(anon.post(f"/api/alerts/{alert_id}/ack?token={feed.operator}"), 401)
        json_error(anon.get(f"/api/whoami?token={feed.viewer}"), 401)
        assert viewer.get("/api/whoami").json() == {"name": f"victor-{feed.site}", "role": "viewer"}
        ticket = viewer.post("/api/stream/ticket").json()["ticket"]
        assert anon.get(f"/api/whoami?ticket={ticket}").json()["role"] == "viewer"
        op_ticket = op.post("/api/stream/ticket").json()["ticket"]
        json_error(anon.post(f"/api/alerts/{alert_id}/ack?ticket={op_ticket}"), 401)
        json_error(anon.get("/api/whoami?ticket=lwk_made_up"), 401)
        r = op.post(f"/api/alerts/{alert_id}/ack", json={"note": "on it"})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == f"alice-{feed.site}"
    with feed.engine.connect() as conn:
        hashes: Sequence[str] = conn.execute(select(s.T_TOKENS.c.token_hash)).scalars().all()
        assert (
            feed.operator not in hashes and len(hashes) == 2 and all(len(h) == 64 for h in hashes)
        )


# ---- alerts ---------------------------------------------------------------------------------


def test_alert_list_filters_detail_and_images(feed: Feed) -> None:
    thumb = jpeg()
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
            json_error(c.get("/api/alerts", params=bad), 422, "invalid")
        detail = c.get(f"/api/alerts/{by_kind['defect']['id']}").json()
        assert [h["action"] for h in detail["history"]] == ["raised", "repeated"]
        img = c.get(detail["image_url"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
        assert img.content == thumb
        json_error(c.get(f"/api/alerts/{by_kind['anomaly']['id']}/image"), 404, "not_found")
        json_error(c.get("/api/alerts/999999"), 404, "not_found")
        json_error(c.get("/api/alerts/0"), 422)
        json_error(c.get("/api/alerts/abc"), 422)
        json_error(c.get("/api/alerts/99999999999999999999999"), 422)
        json_error(c.get("/api/nothing-here"), 404)
        json_error(c.delete("/api/alerts"), 405)


def test_lifecycle_actions_and_bulk_ack(feed: Feed) -> None:
    store(feed.engine, [feed.alert(1), feed.alert(2, line="L2"), feed.alert(3, line="L3")])
    actor = f"alice-{feed.site}"
    with feed.client(feed.operator) as c:
        ids = sorted(a["id"] for a in c.get("/api/alerts").json()["items"])
        a = c.post(f"/api/alerts/{ids[0]}/ack").json()
        assert a["status"] == "acknowledged" and a["acknowledged_by"] == actor
        json_error(c.post(f"/api/alerts/{ids[0]}/ack"), 409, "bad_transition")
        a = c.post(f"/api/alerts/{ids[0]}/assign", json={"assignee": "bob"}).json()
        assert a["assignee"] == "bob"
        json_error(c.post(f"/api/alerts/{ids[0]}/assign", json={}), 422)
        a = c.post(f"/api/alerts/{ids[0]}/comment", json={"text": "belt slipping"}).json()
        json_error(c.post(f"/api/alerts/{ids[0]}/comment", json={"text": ""}), 422)
        json_error(
            c.post(
                f"/api/alerts/{ids[0]}/comment",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
        json_error(c.post(f"/api/alerts/{ids[0]}/comment", json={"text": "x", "extra": 1}), 422)
        a = c.post(f"/api/alerts/{ids[0]}/resolve", json={"note": "fixed"}).json()
        assert a["status"] == "resolved" and a["resolved_by"] == actor
        json_error(c.post(f"/api/alerts/{ids[0]}/resolve"), 409)
        json_error(c.post(f"/api/alerts/{ids[0]}/assign", json={"assignee": "x"}), 409)
        json_error(c.post("/api/alerts/424242/ack"), 404, "not_found")
        r = c.post("/api/alerts/bulk/ack", json={"ids": [ids[1], ids[2], ids[0], 424242]}).json()
        assert r["acknowledged"] == [ids[1], ids[2]]
        assert r["skipped"] == {str(ids[0]): "bad_transition", "424242": "not_found"}
        json_error(c.post("/api/alerts/bulk/ack", json={"ids": []}), 422)
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
        json_error(c.post("/api/suppressions", json={"line": "L1", "reason": "x"}), 422)
        json_error(
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
        json_error(
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
        json_error(c.delete(f"/api/suppressions/{sup['id']}"), 404)
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
    ev = feed.alert(1, kind="anomaly", frame_key=v.key, family="F1", thumbnail=jpeg())
    store(feed.engine, [*fams, v, ff, ev])
    with feed.client(feed.operator) as c:
        items = {f["family"]: f for f in c.get("/api/families").json()["items"]}
        assert set(items) == {"F1", "F2", "F3"}
        assert len(items["F1"]["sample_images"]) == 1
        gallery = {f["family"]: f for f in c.get("/api/live/families").json()["items"]}
        assert gallery["F1"]["sample_images"] == items["F1"]["sample_images"]  # page's gallery
        assert gallery["F1"]["cameras"] == [v.stream] and gallery["F2"]["cameras"] == []
        img = c.get(items["F1"]["sample_images"][0])
        assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
        json_error(c.get("/api/frames/987654/image"), 404)
        r = c.patch("/api/families/F1", json={"name": "edge chip"})
        assert r.status_code == 200, r.text
        assert r.json()["family"]["name"] == "edge chip"
        rid = r.json()["request_id"]
        r = c.patch("/api/families/F2", json={"merge_into": "F3"})
        assert r.json()["family"]["status"] == "merged"
        json_error(c.patch("/api/families/F2", json={"name": "late"}), 409)
        assert c.patch("/api/families/F3", json={"split": 2}).status_code == 200
        json_error(c.patch("/api/families/F1", json={"name": "a", "split": 2}), 422)
        json_error(c.patch("/api/families/F1", json={}), 422)
        json_error(c.patch("/api/families/F9", json={"name": "x"}), 404)
        json_error(c.patch("/api/families/F1", json={"merge_into": "F1"}), 409)
        json_error(c.patch("/api/families/F1", json={"split": 11}), 422)
        json_error(c.patch("/api/families/bad%20id", json={"name": "x"}), 422)
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
        json_error(c.get("/api/lines", params={"window_s": 1}), 422)
        r = c.get("/api/workers")
        assert "NaN" not in r.text and "Infinity" not in r.text
        workers = {w["worker"]: w for w in json.loads(r.text, parse_constant=no_const)["items"]}
        w = workers[f"W{feed.site}"]
        assert w["assignment"]["epoch"] == 3 and w["assignment"]["streams"] == [verdicts[0].stream]
        assert workers[f"N{feed.site}"]["load"] is None
        assert 0 <= w["age_s"] < 60 and w["state"] == "online"


def test_camera_thresholds(feed: Feed) -> None:
    cam = f"{feed.site}/L1/S1/c1"
    with feed.client(feed.operator) as c:
        r = c.put(
            f"/api/cameras/{cam}/thresholds",
            json={"defect_threshold": 0.8, "reason": "too many alarms"},
        )
        assert r.status_code == 202, r.text
        rid = r.json()["request_id"]
        json_error(c.put(f"/api/cameras/{cam}/thresholds", json={}), 422)
        json_error(c.put(f"/api/cameras/{cam}/thresholds", json={"defect_threshold": 1.5}), 422)
        json_error(
            c.put(
                f"/api/cameras/{cam}/thresholds",
                content=b'{"defect_threshold": NaN}',
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
        json_error(
            c.put("/api/cameras/not-a-camera/thresholds", json={"defect_threshold": 0.5}),
            422,
            "bad_stream",
        )
        json_error(
            c.put(
                f"/api/cameras/{feed.site}/L1/S1/sensor/t1/thresholds",
                json={"defect_threshold": 0.5},
            ),
            422,
            "bad_stream",
        )
    with feed.client(feed.viewer) as v:
        json_error(v.put(f"/api/cameras/{cam}/thresholds", json={"defect_threshold": 0.5}), 403)
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
        json_error(anon.get("/metrics"), 401)
        json_error(anon.get("/openapi.json"), 401)
        json_error(anon.get("/docs"), 401)  # Swagger UI is a read like the schema it shows
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
        json_error(r, 401)
        r = c.get("/api/alerts", headers={"Authorization": "Bearer"})
        json_error(r, 401)
