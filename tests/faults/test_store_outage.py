"""Postgres stopped for 30 s during a stream: the writer stops acking, reconnects, and every
message is stored exactly once. Uses a PRIVATE Postgres cluster (never the shared one)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from history import PublisherLog, engine_rows, report, wait_accounted
from store_procs import Writer, count, purge_sessions, wait_online
from store_support import cam, verdict

from broker import topics
from broker.codecs import encode
from broker.mqtt import MqttTransport
from services.store import schema as s
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.fault
N, RATE, OUTAGE_S = 6000, 150.0, 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """initdb + pg_ctl in a temp dir owned by `postgres` (initdb refuses root)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins or shutil.which("runuser") is None:
            pytest.fail("PostgreSQL server binaries and runuser are needed for this test")
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="lw-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data, self.port = self.dir / "data", _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.dir,
        )

    def init(self) -> None:
        self._as_pg(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_pg(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "pg.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_pg(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def private_pg() -> Iterator[PrivatePostgres]:
    if os.geteuid() != 0:
        pytest.fail("this test runs Postgres as user postgres via runuser (needs root)")
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        try:
            pg.stop()
        finally:
            pg.remove()


def _stream(pub: MqttTransport, site: str, done: threading.Event, log: PublisherLog) -> None:
    """N verdicts at RATE per second, every publish confirmed by the broker."""
    c = cam(site=site)
    start = time.monotonic()
    for i in range(N):
        pause = start + i / RATE - time.monotonic()
        if pause > 0:
            done.wait(pause)
        assert pub.publish(topics.verdict_topic(c), encode(verdict(c, i))).wait(30)
        log.record(c.key, i)
    done.set()


def test_postgres_outage_of_30_s(
    private_pg: PrivatePostgres, mosquitto_url: str, site_id: str, tmp_path: Path
) -> None:
    upgrade(private_pg.url)
    engine = make_engine(private_pg.url)
    writer = Writer(
        f"{site_id}-o",
        db_url=private_pg.url,
        mqtt_url=mosquitto_url,
        site=site_id,
        workdir=tmp_path,
    )
    pub = MqttTransport(mosquitto_url, f"{site_id}-pub", clean_start=True)
    done = threading.Event()
    log = PublisherLog()
    sender = threading.Thread(target=_stream, args=(pub, site_id, done, log), daemon=True)
    try:
        writer.start()
        wait_online(engine, [writer])
        pub.start()
        sender.start()
        wait_for(lambda: count(engine, s.T_FRAMES) >= 300, 60, what="stream flowing")
        engine.dispose()
        private_pg.stop()
        stopped_at = time.monotonic()
        first = wait_for(
            lambda: writer.stats if writer.stat("db_errors") >= 1 else None,
            30,
            what="the writer to notice the outage",
        )
        acked_at_outage = int(first["acked"])
        done.wait(OUTAGE_S - (time.monotonic() - stopped_at))  # the outage lasts 30 s
        during = dict(writer.stats)
        assert int(during["acked"]) == acked_at_outage, "acked while the database was down"
        assert during["db_errors"] > first["db_errors"], "no reconnect attempts"
        assert during["pending"] > 0 or during["received"] > first["received"]
        private_pg.start()
        sender.join(120)
        assert done.is_set(), "publisher did not finish"
        assert log.count() == N
        print(report(wait_accounted(log, engine_rows(engine), 120)))
        wait_for(lambda: writer.stat("pending") == 0, 30, what="writer idle")
        assert count(engine, s.T_FRAMES) == N
        assert count(engine, s.T_DEAD_LETTERS, component="store") == 0
        assert writer.stat("acked") > acked_at_outage
    finally:
        done.set()
        pub.stop()
        writer.stop()
        purge_sessions(mosquitto_url, [writer.client_id])
        engine.dispose()
