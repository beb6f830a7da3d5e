"""A writer killed with SIGKILL mid-batch loses nothing it had acked; the rest lands once."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import wait_for
from history import PublisherLog, engine_rows, report, wait_accounted
from store_procs import Writer, count, publish_all, purge_sessions, wait_online
from store_support import cam, verdict

from broker.mqtt import MqttTransport
from services.store import schema as s
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.fault
N = 10_000


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_sigkill_mid_stream_then_restart(
    backend: str, request: pytest.FixtureRequest, mosquitto_url: str, site_id: str, tmp_path: Path
) -> None:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'kill.db'}"
    )
    upgrade(url)
    engine = make_engine(url)
    c = cam(site=site_id)
    msgs = [verdict(c, i) for i in range(N)]
    log = PublisherLog()
    for m in msgs:
        log.record(c.key, m.seq)
    name = f"{site_id}-k"
    first = Writer(name, db_url=url, mqtt_url=mosquitto_url, site=site_id, workdir=tmp_path)
    second = Writer(name, db_url=url, mqtt_url=mosquitto_url, site=site_id, workdir=tmp_path)
    pub = MqttTransport(mosquitto_url, f"{site_id}-pub", clean_start=True)
    try:
        first.start()
        wait_online(engine, [first])
        pub.start()
        # everything is published first: the broker holds it in the writer's session (the
        # shared Mosquitto's default max_queued_messages=1000 would drop more published
        # while the writer is away; see docs/operations.md)
        publish_all(pub, msgs)
        wait_for(lambda: count(engine, s.T_FRAMES) >= N // 8, 60, what="some batches stored")
        first.kill()  # mid-stream: some batches committed and acked, the rest in flight
        at_kill = count(engine, s.T_FRAMES)
        assert at_kill < N, "the writer finished before it could be killed"
        # the same client id resumes the persistent session: the broker redelivers the
        # unacked messages (the DB already has some of them: they must land only once)
        second.start()
        # every verdict stored exactly once; a store records no gaps of its own
        print(report(wait_accounted(log, engine_rows(engine), 120)))
        wait_for(
            lambda: second.stat("pending") == 0 and second.stat("acked") > 0,
            30,
            what="the restarted writer idle",
        )
        assert count(engine, s.T_FRAMES) == N
        assert count(engine, s.T_DEAD_LETTERS, component="store") == 0
    finally:
        pub.stop()
        first.stop()
        second.stop()
        purge_sessions(mosquitto_url, [first.client_id])
        engine.dispose()
