"""Bus test kit: free ports, a private Mosquitto, child processes whose output is read by line."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from helpers import wait_for

from broker.mqtt import MqttTransport

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUBSCRIBER = HERE / "_subscriber.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Child:
    """A child process whose stdout JSON lines are collected by a reader thread."""

    def __init__(
        self, args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._log: BinaryIO | None = open(log, "wb") if log else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._log or subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            text = line.decode(errors="replace").strip()
            self.raw.append(text)
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                continue

    def wait_line(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0, what: str = "a line"
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not any(pred(x) for x in self.lines):
                raise AssertionError(
                    f"child exited ({self.proc.returncode}) before {what}; output: {self.raw[-5:]}"
                )
            return next((x for x in self.lines if pred(x)), None)

        return wait_for(found, timeout, what=what)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self) -> None:
        """Stop the child for good (SIGKILL if needed) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()


def subscriber(*args: str) -> Child:
    """Run tests/integration/_subscriber.py with ``args`` (see its --help)."""
    return Child([sys.executable, str(SUBSCRIBER), *args])


class PrivateMosquitto:
    """A Mosquitto of the test's own, on a free port, from a config text with ``{port}``."""

    def __init__(self, workdir: Path, conf: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # run as the test's own user: as root, mosquitto would otherwise switch to the
        # `mosquitto` user, which cannot read the test's private temporary directory
        me = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(f"user {me}\n" + conf.replace("{port}", str(self.port)))
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_port: int | None = None  # a second (TLS) listener, when the config has one

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        wait_for(
            lambda: port_open(self.port) or self._died(),
            10,
            what=f"private mosquitto on port {self.port}",
        )
        if self._died():
            raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL: the broker saves nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def purge_session(url: str, client_id: str) -> None:
    """Drop a persistent session a test left on a shared broker (clean start, no expiry)."""
    t = MqttTransport(url, client_id, clean_start=True, connect_timeout_s=5)
    try:
        t.start()
    finally:
        t.stop()


def clear_retained(t: MqttTransport, topic: str) -> None:
    assert t.publish(topic, b"", retain=True).wait(5)


def deadline_ok(start: float, bound: float) -> float:
    """Seconds since ``start`` (monotonic), asserted to be within ``bound``."""
    took = time.monotonic() - start
    assert took <= bound, f"took {took:.2f}s, bound {bound:.2f}s"
    return took
