"""Store test kit for real processes: writer children with JSON stats, a verdict publisher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from helpers import wait_for
from sqlalchemy import Engine, func, select

from broker import topics
from broker.codecs import encode
from broker.messages import Msg
from broker.mqtt import MqttTransport
from services.store import schema as s

REPO = Path(__file__).resolve().parents[1]


class Writer:
    """`linewatch store run --stats-json` as a child process; its stats lines are collected."""

    def __init__(
        self,
        name: str,
        *,
        db_url: str,
        mqtt_url: str,
        site: str,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = [
            sys.executable,
            "-m",
            "services.cli",
            "store",
            "run",
            "--name",
            name,
            "--stats-json",
        ]
        self.env = {
            **os.environ,
            "LINEWATCH_DB_URL": db_url,
            "LINEWATCH_MQTT_URL": mqtt_url,
            "LINEWATCH_STORE_SITE": site,
            "LINEWATCH_DATA_DIR": str(workdir),
            "LINEWATCH_KEEPALIVE_S": "1",
            "LINEWATCH_STORE_BACKOFF_MAX_S": "1",
            "LINEWATCH_RETENTION_INTERVAL_S": "0",
            **(extra_env or {}),
        }
        self.log_path = workdir / f"{name}.log"
        self.stats: dict[str, Any] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def client_id(self) -> str:
        return f"store-{self.name}"

    def start(self) -> Writer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=self.env
            )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self.stats = json.loads(line)
            except ValueError:
                continue

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stat(self, key: str) -> int:
        return int(self.stats.get(key, 0))

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; always reaped."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def count(engine: Engine, table: s.Table, **where: Any) -> int:
    q = select(func.count()).select_from(table)
    for col, value in where.items():
        q = q.where(table.c[col] == value)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def wait_online(engine: Engine, writers: Iterable[Writer], timeout: float = 30) -> None:
    """A writer stores its own birth: seeing it online proves its subscriptions work."""
    for w in writers:
        wait_for(
            lambda w=w: _online(engine, w),
            timeout,
            what=f"writer {w.name} online (log: {w.log_path})",
        )


def _online(engine: Engine, w: Writer) -> bool:
    if not w.alive():
        raise AssertionError(f"writer {w.name} exited: {w.log_tail()}")
    with engine.connect() as conn:
        state = conn.execute(
            select(s.T_WORKERS.c.state).where(s.T_WORKERS.c.worker == w.client_id)
        ).scalar()
    return state in ("online", "heartbeat")


def publish_all(t: MqttTransport, msgs: Iterable[Msg], *, window: int = 500) -> int:
    """Publish QoS 1 and wait for every PUBACK (at most ``window`` unconfirmed)."""
    pending = []
    n = 0
    for m in msgs:
        stream = getattr(m, "stream", None)
        if not isinstance(stream, str):
            raise TypeError(f"publish_all needs messages with a stream, not {type(m).__name__}")
        ref = topics.StreamRef.parse_key(stream)
        pending.append(t.publish(topics.verdict_topic(ref), encode(m)))
        n += 1
        if len(pending) >= window:
            assert all(p.wait(30) for p in pending), "broker did not confirm publishes"
            pending.clear()
    assert all(p.wait(30) for p in pending), "broker did not confirm publishes"
    return n


def purge_sessions(mqtt_url: str, client_ids: Iterable[str]) -> None:
    """Drop persistent sessions and retained status a test left on the shared broker."""
    for cid in client_ids:
        t = MqttTransport(mqtt_url, cid, clean_start=True, connect_timeout_s=5)
        try:
            t.start()
            t.publish(topics.worker_status_topic(cid), b"", retain=True).wait(5)
        finally:
            t.stop()
