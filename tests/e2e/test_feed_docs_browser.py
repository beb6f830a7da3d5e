"""/docs in headless Chromium under the feed's CSP: Swagger UI renders from same-origin assets,
opened with a read ticket, and an operator authorizes with a pasted token (secure profile)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from helpers import wait_for
from test_feed_browser import ARGS

from services.feed import auth
from services.feed.app import create_app
from services.feed.settings import FeedSettings
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.e2e


@pytest.fixture()
def secure_feed(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A secure-profile feed in this process (SQLite, no bus): its URL and a viewer token."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = FeedSettings(db_url=url, profile="secure", mqtt_url="mqtt://u:p@h", feed_mqtt=False)
    app = create_app(settings, engine=engine, escalate=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15, what="uvicorn started")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", auth.create(engine, "viewer", "vera")
    finally:
        server.should_exit = True
        thread.join(15)
        engine.dispose()


def test_swagger_ui_renders_under_csp_and_authorizes_with_a_token(
    chromium: str, secure_feed: tuple[str, str]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token = secure_feed
    ticket = httpx.post(
        f"{base}/api/stream/ticket", headers={"Authorization": f"Bearer {token}"}
    ).json()["ticket"]
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.on("response", lambda r: _status(r, problems))
            page.on("console", lambda m: _console(m, problems))
            page.on("pageerror", lambda e: problems.append(f"pageerror {e}"))
            page.goto(f"{base}/docs?ticket={ticket}")
            expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
            assert "ticket" not in page.url  # taken out of the address bar at once
            page.locator("button.authorize").first.click()
            page.locator(".auth-container input").first.fill(token)
            page.locator(".auth-container button.authorize").first.click()
            page.locator("button.btn-done").first.click()
            op = page.locator("#operations-ops-whoami_api_whoami_get")
            op.locator(".opblock-summary").click()
            op.locator("button.try-out__btn").click()
            op.locator("button.execute").click()
            expect(op.locator(".live-responses-table")).to_contain_text("vera", timeout=10_000)
            stored = page.evaluate("() => JSON.stringify(Object.entries(localStorage))")
            assert token not in stored  # a pasted token is not persisted
        finally:
            browser.close()
    assert requests and all(u.startswith(base + "/") for u in requests), requests
    assert not problems, problems


def _status(response: Any, problems: list[str]) -> None:
    if response.status >= 400:
        problems.append(f"{response.status} {response.url}")


def _console(message: Any, problems: list[str]) -> None:
    if message.type in ("error", "warning") and "DevTools" not in message.text:
        problems.append(f"console {message.type}: {message.text}")
