"""`linewatch up` on a terminal: one status block redrawn in place, children's logs in files;
`--verbose` brings back the interleaved stream."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def up(
    tmp_path: Path, mqtt_url: str, *args: str, tty: bool
) -> Iterator[tuple[subprocess.Popen[bytes], list[bytes]]]:
    """`linewatch up --only store ARGS` on a pseudo-terminal (or a pipe); output collected."""
    env = {
        **os.environ,
        "LINEWATCH_MQTT_URL": mqtt_url,
        "LINEWATCH_DB_URL": f"sqlite:///{tmp_path / 'lw.db'}",
        "LINEWATCH_DATA_DIR": str(tmp_path / "var"),
        "LINEWATCH_STATUS_S": "0.3",
        "LINEWATCH_STORE_NAME": tmp_path.name[-40:].replace(".", "-"),
    }
    master, slave = pty.openpty() if tty else os.pipe()  # (read, write)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--only", "store", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(master, 65536):
                chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield proc, chunks
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        os.close(master)


def test_a_terminal_gets_one_status_block_and_logs_go_to_files(
    mosquitto_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "var" / "log"
    with up(tmp_path, mosquitto_url, tty=True) as (proc, chunks):

        def text() -> str:
            return b"".join(chunks).decode(errors="replace")

        wait_for(lambda: text().count("\x1b[J") >= 3, 60, 0.1, what="status block redrawn")
        wait_for(lambda: "connected to" in (logs / "store.log").read_text(), 30, what="store log")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    out = text()
    assert "processes 1/1 running" in out and "frames    0.0/s" in out
    assert " INFO " not in out  # no process's log lines on the terminal
    assert "upgrade" in (logs / "db.log").read_text().lower()
    assert "got SIGTERM" in (logs / "up.log").read_text()


def test_verbose_interleaves_every_log_and_draws_no_block(
    mosquitto_url: str, tmp_path: Path
) -> None:
    with up(tmp_path, mosquitto_url, "--verbose", tty=False) as (proc, chunks):

        def text() -> str:
            return b"".join(chunks).decode(errors="replace")

        wait_for(lambda: "connected to" in text(), 60, 0.1, what="the store's log line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    out = text()
    assert "\x1b[" not in out and "up: page" not in out
    assert not (tmp_path / "var" / "log").exists()
