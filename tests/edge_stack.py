"""Real-process helpers for the edge e2e and fault tests: store + edge worker + publisher."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import wait_for

from broker.codecs import decode_output
from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic, worker_status_topic
from broker.transport import Inbound

ROOT = Path(__file__).resolve().parents[1]
FAST_MODEL = ROOT / "var" / "models" / "test-fast"


def linewatch(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run a `linewatch` command to completion (raises with its output on failure)."""
    res = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise AssertionError(
            f"linewatch {' '.join(args)} exited {res.returncode}:\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


class Proc:
    """A `linewatch` child process with its output in a log file; always stopped by the test."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = {**os.environ, **env}
        self.log = logdir / f"{name}.log"
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        fh = self.log.open("ab")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()
        return self

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash: no goodbye, the broker sends the Last Will)."""
        if self.alive():
            assert self.p is not None
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        return self.p.returncode

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Watcher:
    """Test-side MQTT client: publishes frames, records status messages."""

    url: str
    client_id: str
    status: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t = MqttTransport(self.url, self.client_id, clean_start=True)
        self._lock = threading.Lock()

    def start(self, workers: Iterable[str]) -> Watcher:
        for w in workers:
            self.t.subscribe(worker_status_topic(w), self._on_status)
        self.t.start()
        return self

    def _on_status(self, m: Inbound) -> None:
        msg = decode_output(m.topic, m.payload)
        with self._lock:
            self.status.setdefault(msg.worker, []).append(msg)  # type: ignore[attr-defined]
        m.ack()

    def states(self, worker: str) -> list[str]:
        with self._lock:
            return [s.state for s in self.status.get(worker, [])]

    def last(self, worker: str) -> Any:
        with self._lock:
            got = self.status.get(worker, [])
            return got[-1] if got else None

    def wait_online(self, worker: str, timeout: float = 120, counter_above: int = 0) -> Any:
        def ready() -> Any:
            with self._lock:
                for s in reversed(self.status.get(worker, [])):
                    if s.state in ("online", "heartbeat") and s.counter > counter_above:
                        return s
            return None

        return wait_for(ready, timeout, 0.05, what=f"{worker} online")

    def publish_frame(self, stream: StreamRef, image: bytes, seq: int | None) -> Any:
        props = {} if seq is None else {"seq": str(seq)}
        return self.t.publish(frame_topic(stream), image, properties=props)

    def stop(self) -> None:
        self.t.stop()


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the history DB with the stdlib driver (tests never import SQLAlchemy)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def ensure_fast_model() -> Path:
    """The model build's fast ``test`` profile, built once into var/models/test-fast.

    The build caches by its inputs (a rebuild with the same inputs is a no-op), so
    calling it every session is cheap once the model exists. ``LINEWATCH_TEST_EDGE_MODEL``
    names another model directory to use instead.
    """
    override = os.environ.get("LINEWATCH_TEST_EDGE_MODEL")
    if override:  # a model built elsewhere (e.g. the demo model)
        return Path(override)
    linewatch("model", "build", "--profile", "test", "--out", str(FAST_MODEL), timeout=1800)
    assert (FAST_MODEL / "model.card.json").is_file(), f"no model card in {FAST_MODEL}"
    return FAST_MODEL
