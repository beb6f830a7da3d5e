"""The operator page in headless Debian Chromium: a defect published over MQTT appears live,
the operator acknowledges it with a click, and SQL records who did it."""

from __future__ import annotations

from pathlib import Path

import pytest
from edge_stack import query
from feed_e2e import FeedStack, defect_frames, flag_everything
from helpers import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOT = ROOT / "var" / "artifacts" / "feed.png"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_new_alert_appears_live_and_ack_records_the_actor(
    chromium: str, feed_stack: FeedStack
) -> None:
    # `chromium` comes first: without a browser the test skips before the stack starts
    from playwright.sync_api import expect, sync_playwright

    cam = feed_stack.camera("c1")
    frame = defect_frames(feed_stack.model_dir, 1)[0]
    flag_everything(feed_stack, cam)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{feed_stack.url}/#token={feed_stack.token}")
            expect(page.locator("#live")).to_have_class("live on", timeout=15_000)
            assert page.locator(f"tr.alert:has-text('{cam.station}')").count() == 0
            assert feed_stack.watcher.publish_frame(cam, frame, 0).wait(10)
            row = page.locator(f"#alerts tbody tr.alert:has-text('{cam.station}')")
            expect(row).to_have_count(1, timeout=30_000)  # arrived over SSE, no reload
            expect(row.locator(".status")).to_have_text("active")
            row.locator("button.ack").click()
            try:
                expect(row.locator(".status")).to_have_text("acknowledged", timeout=10_000)
            except AssertionError as exc:  # the page says why an action failed: show it
                msg = page.locator("#msg").text_content()
                raise AssertionError(f"page message {msg!r}: {exc}") from None
            expect(row.locator(".ackby")).to_have_text(feed_stack.token_name)
            row.locator(".comment-text").fill("checking the fixture")
            # the alert changes while the operator types (here: assigned by someone else);
            # the row is re-rendered from the live stream and the draft must survive it
            alert_id = row.get_attribute("data-alert-id")
            page.evaluate(
                "id => { document.querySelector(`tr[data-alert-id='${id}']`)"
                ".dataset.probe = '1'; }",
                alert_id,
            )
            page.evaluate(
                """([id, tok]) => fetch(`/api/alerts/${id}/assign`, {method: "POST",
                   headers: {"Authorization": "Bearer " + tok, "Content-Type": "application/json"},
                   body: JSON.stringify({assignee: "night-shift"})})""",
                [alert_id, feed_stack.token],
            )
            rerendered = page.locator(f"tr[data-alert-id='{alert_id}']:not([data-probe])")
            expect(rerendered).to_have_count(1, timeout=15_000)
            expect(row.locator(".comment-text")).to_have_value("checking the fixture")
            row.locator("button.comment").click()
            got = wait_for(
                lambda: query(
                    feed_stack.db,
                    "SELECT e.actor, e.note FROM alert_events e JOIN alerts a "
                    "ON a.id = e.alert_id WHERE a.station = ? AND e.action = 'commented'",
                    cam.station,
                ),
                30,
                what="comment row",
            )
            assert got == [(feed_stack.token_name, "checking the fixture")]
            page.reload()  # the server-rendered page: lines, families, workers filled in
            expect(page.locator("#live")).to_have_class("live on", timeout=15_000)
            expect(page.locator("#lines .tile")).not_to_have_count(0)
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOT))  # the first screen: alerts, lines, workers
        finally:
            browser.close()
    rows = query(
        feed_stack.db,
        "SELECT status, acknowledged_by, acknowledged_at FROM alerts WHERE station = ?",
        cam.station,
    )
    assert len(rows) == 1
    status, actor, at = rows[0]
    assert (status, actor) == ("acknowledged", feed_stack.token_name) and at is not None
    events = query(
        feed_stack.db,
        "SELECT e.action, e.actor FROM alert_events e JOIN alerts a "
        "ON a.id = e.alert_id WHERE a.station = ? ORDER BY e.id",
        cam.station,
    )
    assert ("acknowledged", feed_stack.token_name) in events
    assert ("assigned", feed_stack.token_name) in events
    assert SHOT.stat().st_size > 10_000
