"""Operators teach a camera through the feed, over a real Mosquitto, stored in SQLite and
Postgres: feedback recorded with actor and time, the frame kept at model-input size, the
camera's taught state versioned in SQL, rollback exact, a risky mark held for a second
operator. The edge worker runs the tiny ONNX model (tests/edge_tinymodel.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import httpx
import numpy as np
import pytest
from _buskit import clear_retained
from _feedkit import Feed, json_error
from helpers import wait_for
from PIL import Image
from sqlalchemy import select

from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic, teach_topic
from edge.settings import EdgeSettings
from edge.startup import build_worker
from services.store import schema as s
from services.store import schema_teach as st
from services.store.writer import StoreWriter

pytestmark = pytest.mark.integration


def spot(seed: int, corner: str = "tl") -> bytes:
    """A grey frame with a blue square in one corner (an anomaly the head does not know)."""
    rng = np.random.default_rng(seed)
    img = np.clip(128 + rng.normal(0, 3, (64, 64, 3)), 0, 255)
    y, x = {"tl": (0, 0), "br": (48, 48)}[corner]
    img[y : y + 16, x : x + 16] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Line:
    feed: Feed
    cam: StreamRef
    pub: MqttTransport
    seq: int = 0

    def frame(self, image: bytes) -> dict[str, Any]:
        """Publish a frame; wait for its stored verdict row."""
        self.seq += 1
        assert self.pub.publish(
            frame_topic(self.cam), image, properties={"seq": str(self.seq)}
        ).wait(5)
        key = f"{self.cam.key}#0:{self.seq}"
        f = s.T_FRAMES

        def row() -> Any:
            with self.feed.engine.connect() as conn:
                q = select(f.c.id, f.c.verdict, f.c.novelty_score).where(f.c.frame_key == key)
                return conn.execute(q).mappings().first()

        return dict(wait_for(row, 20, what=f"verdict of {key}"))

    def answered(self, c: httpx.Client, fid: int, status: str | None = None) -> dict[str, Any]:
        def done() -> Any:
            body = c.get(f"/api/feedback/{fid}").json()
            ok = body["status"] != "requested" and (status is None or body["status"] == status)
            return body if ok else None

        return dict(wait_for(done, 20, what=f"answer to feedback {fid}"))

    def teach(self, c: httpx.Client) -> list[dict[str, Any]]:
        r = c.get(f"/api/cameras/{self.cam.key}/teach")
        assert r.status_code == 200, r.text
        return list(r.json()["items"])


@pytest.fixture()
def line(feed: Feed, mosquitto_url: str, tmp_path: Path) -> Iterator[Line]:
    site = feed.site
    cam = StreamRef.camera(site, "L1", "S1", "c1")
    writer_t = MqttTransport(mosquitto_url, f"teach-store-{site}", clean_start=True)
    writer = StoreWriter(feed.engine, writer_t, flush_ms=20, site=site)
    writer.start()
    writer_t.start()
    edge_t = MqttTransport(mosquitto_url, f"teach-edge-{site}", clean_start=True)
    settings = EdgeSettings(
        worker_id=f"W{site}"[:64],
        model_dir=tiny.build(tmp_path / "model"),
        data_dir=tmp_path,
        heartbeat_s=0.5,
        max_wait_ms=5,
    )
    worker = build_worker(settings, edge_t)
    worker.start((cam.key,))
    pub = MqttTransport(mosquitto_url, f"teach-cam-{site}", clean_start=True)
    pub.start()
    try:
        yield Line(feed, cam, pub)
    finally:
        clear_retained(pub, teach_topic(cam))
        pub.stop()
        worker.stop()
        writer.stop()
        writer_t.stop()


def test_feedback_teaches_the_camera_and_rollback_restores_it(line: Line) -> None:
    feed = line.feed
    op = feed.client(feed.operator)
    assert line.frame(tiny.frame("good", 1))["verdict"] == "ok"
    flagged = line.frame(spot(2))
    assert flagged["verdict"] == "anomaly"

    viewer = feed.client(feed.viewer)
    body = {"frame_id": flagged["id"], "label": "not_a_defect", "note": "lamp moved"}
    json_error(viewer.post("/api/feedback", json=body), 403, "forbidden")
    r = op.post("/api/feedback", json=body)
    assert r.status_code == 202, r.text
    fid = r.json()["id"]
    got = line.answered(op, fid, "applied")
    assert got["actor"] == f"alice-{feed.site}" and got["label"] == "not_a_defect"
    assert got["created_at"] and got["version"] == 1 and got["image_url"]
    img = op.get(got["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(img.content)) as im:
        assert im.size == (tiny.SIZE, tiny.SIZE)  # kept at model-input size

    hist = wait_for(lambda: line.teach(op), 10, what="taught change stored")
    assert hist[0]["version"] == 1 and hist[0]["action"] == "teach"
    assert line.frame(spot(3))["verdict"] == "ok"  # the same mark no longer alerts
    assert line.frame(spot(4, "br"))["verdict"] == "anomaly"  # elsewhere still does

    r = op.post(f"/api/cameras/{line.cam.key}/teach/rollback", json={})
    assert r.status_code == 202 and r.json()["undone"] == 1 and r.json()["restores"] == 0
    hist = wait_for(lambda: [h for h in line.teach(op) if h["version"] == 2], 10, what="v2")
    assert hist[0]["action"] == "rollback" and hist[0]["actor"] == f"alice-{feed.site}"
    t = st.T_TEACH_CHANGES
    with feed.engine.connect() as conn:
        rows = {r.version: r for r in conn.execute(select(t).where(t.c.stream == line.cam.key))}
    assert bytes(rows[2].allowance) == bytes(rows[1].previous_allowance) == b""
    assert rows[2].novelty_threshold == rows[1].previous_novelty_threshold
    assert bytes(rows[2].previous_allowance) == bytes(rows[1].allowance) != b""
    assert line.frame(spot(3))["verdict"] == "anomaly"  # flagged again, as before

    # the false-alarm rate around each change: before v1 one of two frames was flagged,
    # between v1 and v2 one of two, after the rollback one of one
    v2, v1 = line.teach(op)
    assert (v1["false_alarm_before"], v1["frames_before"]) == (0.5, 2)
    assert (v1["false_alarm_after"], v1["frames_after"]) == (0.5, 2)
    assert (v2["false_alarm_after"], v2["frames_after"]) == (1.0, 1)


def test_mark_hiding_a_confirmed_defect_waits_for_a_second_operator(line: Line, feed: Feed) -> None:
    from services.feed import auth

    op = feed.client(feed.operator)
    real = line.frame(spot(5))
    r = op.post(
        "/api/feedback", json={"frame_id": real["id"], "label": "confirmed", "family": "blue_a"}
    )
    assert line.answered(op, r.json()["id"], "applied")["family"] == "blue_a"
    look = line.frame(spot(6))
    r = op.post("/api/feedback", json={"frame_id": look["id"], "label": "not_a_defect"})
    fid = r.json()["id"]
    held = line.answered(op, fid, "held")
    assert held["recall_before"] == 1.0 and held["recall_after"] == 0.0
    assert line.frame(spot(7))["verdict"] == "anomaly"  # nothing was taught
    json_error(op.post(f"/api/feedback/{fid}/approve"), 409, "second_operator")

    second = feed.client(auth.create(feed.engine, "operator", f"bob-{feed.site}"))
    r = second.post(f"/api/feedback/{fid}/approve")
    assert r.status_code == 202, r.text
    wait_for(
        lambda: line.answered(op, fid)["status"] == "applied", 20, what="approved mark applied"
    )
    assert op.get(f"/api/feedback/{fid}").json()["approved_by"] == f"bob-{feed.site}"
    json_error(second.post(f"/api/feedback/{fid}/approve"), 409, "not_held")
    json_error(op.post("/api/feedback", json={"frame_id": 10**9, "label": "unsure"}), 404)
    json_error(op.post("/api/feedback", json={"label": "unsure"}), 422)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_operator_teaches_and_rolls_back_from_the_page(line: Line, chromium: str) -> None:
    """Headless Chromium: "Not a defect" on an alert row, the taught change listed with its
    false-alarm rates, then rolled back with a click; SQL records who did it."""
    from playwright.sync_api import expect, sync_playwright

    feed = line.feed
    flagged = line.frame(spot(20))
    assert flagged["verdict"] == "anomaly"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{feed.base}/#token={feed.operator}")
            row = page.locator("#alerts tbody tr.alert").first
            expect(row).to_have_count(1, timeout=20_000)
            row.locator("button.fb-not_a_defect").click()
            expect(page.locator("#teach-msg")).to_contain_text("applied", timeout=20_000)
            taught = page.locator("#teach tbody tr[data-version='1']")
            expect(taught).to_contain_text("teach")
            expect(taught).to_contain_text("100.0 % of 1")  # before: the one frame, flagged
            taught.locator("button.rollback").click()
            expect(page.locator("#teach-msg")).to_contain_text("rolling back v1")
            expect(page.locator("#teach tbody tr[data-version='2']")).to_contain_text(
                "rollback", timeout=20_000
            )
        finally:
            browser.close()
    t = st.T_TEACH_CHANGES
    with feed.engine.connect() as conn:
        got = conn.execute(select(t.c.version, t.c.action, t.c.actor).order_by(t.c.version)).all()
    assert [tuple(r) for r in got] == [
        (1, "teach", f"alice-{feed.site}"),
        (2, "rollback", f"alice-{feed.site}"),
    ]
