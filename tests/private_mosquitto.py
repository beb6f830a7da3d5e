"""A Mosquitto of a fault test's own (broker/mosquitto.conf settings, persistence in a temp
folder) that the test may SIGKILL, stop gracefully and restart on the same port and files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from helpers import wait_for

from bench._broker import conf_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateMosquitto:
    """``start`` / ``kill`` (SIGKILL) / ``stop`` (SIGTERM: persistence written) / ``remove``."""

    def __init__(self) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="lw-fault-mqtt-"))
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        (self.dir / "mosquitto.conf").write_text(conf_for(self.port, self.dir))
        self.log = self.dir / "mosquitto.log"
        self.p: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15) -> PrivateMosquitto:
        with self.log.open("ab") as log:
            self.p = subprocess.Popen(
                ["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
                stdout=log,
                stderr=log,
                cwd=self.dir,
            )

        def up() -> bool:
            assert self.p is not None
            if self.p.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.tail()}")
            return _listening(self.port)

        wait_for(up, timeout, 0.02, what=f"mosquitto listening on {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: what is not yet in the persistence file is gone."""
        if self.p is not None and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""
