"""Exactly once: 10,000 verdicts delivered three times, to three concurrent writer processes
and redelivered again, give exactly 10,000 rows in Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import wait_for
from sqlalchemy import select
from store_procs import Writer, count, publish_all, purge_sessions, wait_online
from store_support import cam, verdict

from broker.mqtt import MqttTransport
from services.store import schema as s
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.integration
N = 10_000


def test_three_deliveries_from_three_processes_give_one_row_each(
    postgres_url: str, mosquitto_url: str, site_id: str, tmp_path: Path
) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    cams = [cam(site=site_id, line="L1", station=f"st{i}", name="cam1") for i in range(4)]
    msgs = [verdict(cams[i % 4], i, kind="defect" if i % 50 == 0 else "ok") for i in range(N)]
    writers = [
        Writer(
            f"{site_id}-{x}",
            db_url=postgres_url,
            mqtt_url=mosquitto_url,
            site=site_id,
            workdir=tmp_path,
        )
        for x in "abc"
    ]
    pub = MqttTransport(mosquitto_url, f"{site_id}-pub", clean_start=True)
    try:
        for w in writers:
            w.start()
        wait_online(engine, writers)
        pub.start()
        publish_all(pub, msgs)  # delivery 1, 2 and 3: each writer process gets every message
        publish_all(pub, msgs[: N // 5])  # and a fifth of them are published again
        expected = N + N // 5
        for w in writers:
            wait_for(
                lambda w=w: (
                    w.stat("msg_Verdict") >= expected
                    and w.stat("pending") == 0
                    and w.stat("acked") >= expected
                ),
                180,
                what=f"{w.name} to store {expected} deliveries (now {w.stats})",
            )
        assert count(engine, s.T_FRAMES) == N
        with engine.connect() as conn:
            keys: set[str] = set(conn.execute(select(s.T_FRAMES.c.frame_key)).scalars())
        assert keys == {m.key for m in msgs}
        assert count(engine, s.T_DEAD_LETTERS, component="store") == 0
        assert all(w.stat("store_errors") == 0 and w.stat("stale_epoch") == 0 for w in writers)
    finally:
        pub.stop()
        for w in writers:
            w.stop()
        purge_sessions(mosquitto_url, [w.client_id for w in writers])
        engine.dispose()
