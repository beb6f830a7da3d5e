"""A Mosquitto of the benchmark's own, with the project's broker/mosquitto.conf settings.

Benchmarks that time MQTT must not share a broker with other work (another process's
workers may take the bench's frames) nor run on a broker with other settings (Debian's
stock Mosquitto lets Nagle's algorithm hold small packets ~40 ms). ``private_broker()``
starts ``mosquitto`` on a free loopback port with broker/mosquitto.conf (listener and
persistence moved into a temporary folder) and stops it on exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "broker" / "mosquitto.conf"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conf_for(port: int, workdir: Path, text: str | None = None) -> str:
    """broker/mosquitto.conf with its listener on ``port`` and its files under ``workdir``."""
    lines = []
    for line in (text if text is not None else CONF.read_text()).splitlines():
        if line.startswith("listener "):
            line = f"listener {port} 127.0.0.1"
        elif line.startswith("persistence_location "):
            line = f"persistence_location {workdir}/"
        lines.append(line)
    if f"listener {port} 127.0.0.1" not in lines:
        raise ValueError(f"{CONF} has no listener line to move to port {port}")
    # As root, mosquitto switches to the `mosquitto` user, which cannot use our temp folder.
    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n" + "\n".join(lines) + "\n"


@contextmanager
def private_broker(timeout: float = 10.0) -> Iterator[str]:
    """Yield the URL of a fresh Mosquitto (broker/mosquitto.conf); stopped on exit."""
    if shutil.which("mosquitto") is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="lw-bench-mqtt-") as tmp:
        work, port = Path(tmp), _free_port()
        (work / "mosquitto.conf").write_text(conf_for(port, work))
        log = (work / "mosquitto.log").open("wb")
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(work / "mosquitto.conf")], stdout=log, stderr=log, cwd=work
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited at start: {(work / 'mosquitto.log').read_text()[-800:]}"
                    )
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on port {port} in {timeout} s")
                time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.close()
