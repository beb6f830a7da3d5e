"""Integration fixtures shared by the feed's test files: the feed on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _feedkit import Feed, serving

from broker import topics
from broker.mqtt import MqttTransport
from broker.transport import Inbound
from services.feed import auth
from services.feed.app import create_app
from services.feed.settings import FeedSettings
from services.store.engine import make_engine, upgrade


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
    try:
        with serving(app) as port:
            op = auth.create(engine, "operator", f"alice-{site_id}")
            viewer = auth.create(engine, "viewer", f"victor-{site_id}")
            yield Feed(f"http://127.0.0.1:{port}", engine, site_id, op, viewer, received, app)
    finally:
        transport.stop()
        listener.stop()
        engine.dispose()
