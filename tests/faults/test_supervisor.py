"""Fault tests of `linewatch up`: a SIGKILLed child comes back; SIGTERM leaves no process.

The supervisor runs the real embedded broker when this build has it, plus one extra
command given through ``LINEWATCH_UP_COMPONENTS`` (the documented hook for supervising
extra site processes): a Python process that starts a grandchild, so the tests also show
that a child's whole process tree goes away. Without the embedded broker, the supervisor
runs against the real Mosquitto instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from services.upplan import Component
from services.upproc import Child, Supervisor
from tests.helpers import wait_for

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
HAS_EMBEDDED = importlib.util.find_spec("broker.embedded") is not None
DUMMY = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1] + '-g'])\n"
    "time.sleep(600)\n"
)


def until(cond: Callable[[], T | None], timeout: float, what: str) -> T:
    """wait_for, polling gently: every poll runs `ps` on a shared machine."""
    value = wait_for(cond, timeout=timeout, interval=0.2, what=what)
    assert value is not None
    return value


def ps_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, args) for every live (non-zombie) process."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), stat, args[0] if args else "")
    return table


def descendants(root: int, table: dict[int, tuple[int, str, str]]) -> dict[int, str]:
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, args) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = args
                frontier.append(pid)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    marker: str
    broker_port: int | None
    stderr: Path
    stdout: Path

    def tree(self) -> dict[int, str]:
        return descendants(self.proc.pid, ps_table())

    def child_pid(self, needle: str) -> int | None:
        """Pid of the supervisor's direct child whose command line contains ``needle``."""
        table = ps_table()
        for pid, (ppid, _, args) in table.items():
            if ppid == self.proc.pid and needle in args:
                return pid
        return None

    def out(self) -> str:
        return self.stdout.read_text(errors="replace")

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def ready(self) -> bool:
        tree = self.tree()
        have_dummy = any(a.endswith(f"{self.marker}-g") for a in tree.values())
        have_broker = self.broker_port is None or (
            self.child_pid("services.cli broker") is not None and port_open(self.broker_port)
        )
        return have_dummy and have_broker


@contextlib.contextmanager
def run_up(tmp_path: Path, mqtt_url: str | None) -> Iterator[Up]:
    """`linewatch up` with the embedded broker (or ``mqtt_url``) and the dummy extra."""
    marker = f"lwtest-{uuid.uuid4().hex[:10]}"
    extra = tmp_path / "extra.json"
    webroot = tmp_path / marker
    webroot.mkdir()
    (webroot / "index.html").write_text(marker)
    web = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(webroot)]
    extra.write_text(
        json.dumps(
            [
                {"name": "dummy", "argv": [sys.executable, "-c", DUMMY, marker]},
                {"name": "web", "argv": web, "http": True},
            ]
        )
    )
    env = {
        **os.environ,
        "LINEWATCH_UP_COMPONENTS": str(extra),
        "LINEWATCH_DB_URL": f"sqlite:///{tmp_path / 'lw.db'}",
        "LINEWATCH_DATA_DIR": str(tmp_path / "var"),
    }
    args = [sys.executable, "-m", "services.cli", "up"]
    broker_port: int | None = None
    if mqtt_url is None:
        broker_port = free_port()
        env.pop("LINEWATCH_MQTT_URL", None)
        args += ["--broker-port", str(broker_port), "--only", "broker,dummy,web"]
    else:
        env["LINEWATCH_MQTT_URL"] = mqtt_url
        args += ["--only", "dummy,web"]
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL
        )
    handle = Up(proc, marker, broker_port, err, out)
    seen: dict[int, str] = {}
    try:
        until(
            lambda: handle.ready() or proc.poll() is not None,
            timeout=60,
            what="supervisor children to start",
        )
        assert proc.poll() is None, f"supervisor exited early:\n{handle.log()}"
        yield handle
    finally:
        if proc.poll() is None:
            seen = handle.tree()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid, (_, _, cmd) in ps_table().items():  # never leave our processes behind
            if marker in cmd or seen.get(pid) == cmd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Up]:
    mqtt_url = None if HAS_EMBEDDED else request.getfixturevalue("mosquitto_url")
    with run_up(tmp_path, mqtt_url) as handle:
        yield handle


def kill_and_await_restart(up: Up, needle: str) -> int:
    """SIGKILL the child whose command line has ``needle``; return its successor's pid."""
    old = until(lambda: up.child_pid(needle), timeout=10, what=f"child {needle}")
    os.kill(old, signal.SIGKILL)

    def successor() -> int | None:
        pid = up.child_pid(needle)
        return pid if pid is not None and pid != old else None

    new = until(successor, timeout=30, what=f"{needle} restarted")
    until(lambda: f"(pid {new})" in up.log(), timeout=10, what="restart logged")
    return new


def test_sigkilled_child_is_restarted_with_a_new_pid(up: Up) -> None:
    kill_and_await_restart(up, "sys.argv[1] + '-g'")  # the dummy (a line of its code)
    assert "dummy exited with status -9" in up.log()
    if up.broker_port is not None:
        kill_and_await_restart(up, "services.cli broker")
        assert "broker exited with status -9" in up.log()
    if up.broker_port is not None:
        port = up.broker_port
        until(lambda: port_open(port), timeout=30, what="restarted broker listening")

    # the killed dummy's grandchild does not linger: exactly one grandchild remains
    def grandchildren() -> list[str]:
        return [a for a in up.tree().values() if a.endswith(f"{up.marker}-g")]

    until(lambda: len(grandchildren()) == 1, timeout=10, what="exactly one grandchild")
    assert up.proc.poll() is None


def test_url_of_an_http_child_is_announced_and_true(up: Up) -> None:
    def announced() -> str | None:
        for line in up.out().splitlines():
            if line.strip().startswith("web  http://"):
                return line.split()[1]
        return None

    url = until(announced, timeout=30, what="web URL announced")
    with urllib.request.urlopen(url + "index.html", timeout=10) as resp:
        assert resp.read().decode() == up.marker


def test_sigterm_stops_every_process_and_exits_zero(up: Up) -> None:
    tree = up.tree()
    assert len(tree) >= (3 if up.broker_port else 2), tree
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0, up.log()

    def leftovers() -> list[str]:
        table = ps_table()
        return [a for p, a in tree.items() if p in table and table[p][2] == a] + [
            a for _, _, a in table.values() if up.marker in a
        ]

    until(lambda: not leftovers(), timeout=10, what="no process left")
    assert "got SIGTERM" in up.log()
    if up.broker_port is not None:
        assert not port_open(up.broker_port)


def test_supervisor_killed_hard_still_takes_its_children(up: Up) -> None:
    children = {p: a for p, a in up.tree().items() if ps_table().get(p, (0,))[0] == up.proc.pid}
    assert children
    up.proc.kill()
    up.proc.wait(timeout=10)

    def alive() -> list[int]:
        table = ps_table()
        return [p for p, a in children.items() if p in table and table[p][2] == a]

    until(lambda: not alive(), timeout=15, what="children to die with the supervisor")


def _supervisor(argv: list[str], *, restart: bool) -> tuple[Supervisor, Child]:
    child = Child(Component("probe", argv=tuple(argv)))
    return Supervisor([child], dict(os.environ), restart=restart, stop_timeout=5.0), child


def test_no_restart_reports_the_exit_status() -> None:
    sup, child = _supervisor([sys.executable, "-c", "raise SystemExit(3)"], restart=False)
    assert sup.spawn(child)
    assert sup.run() == 1
    assert child.exit_codes == [3]
    sup, child = _supervisor([sys.executable, "-c", "pass"], restart=False)
    assert sup.spawn(child)
    assert sup.run() == 0


def test_crash_loop_backs_off_and_stop_ends_it() -> None:
    sup, child = _supervisor([sys.executable, "-c", "raise SystemExit(1)"], restart=True)
    assert sup.spawn(child)
    runner = threading.Thread(target=sup.run)
    runner.start()
    try:
        until(lambda: len(child.exit_codes) >= 3, timeout=30, what="three crashes")
    finally:
        sup.stopping.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert child.proc is None
    assert child.failures == len(child.exit_codes) >= 3  # waits of 0.5 s, 1 s, 2 s, ...
    assert set(child.exit_codes) == {1}


def test_a_command_that_cannot_start_is_reported_not_raised() -> None:
    sup, child = _supervisor(["/nonexistent/linewatch-probe"], restart=True)
    assert sup.spawn(child) is False
    assert child.proc is None


def test_external_broker_is_used_and_its_password_never_printed(
    tmp_path: Path, mosquitto_url: str
) -> None:
    parts = mosquitto_url.split("://", 1)
    with_secret = f"{parts[0]}://lwuser:s3cret-pw@{parts[1]}"
    with run_up(tmp_path, with_secret) as up:
        assert up.child_pid("services.cli broker") is None  # no embedded broker
        out = until(lambda: up.out() if "MQTT" in up.out() else None, timeout=30, what="summary")
        assert f"{parts[0]}://lwuser:***@{parts[1]}" in out
        assert "(embedded)" not in out
    assert "s3cret-pw" not in up.out() + up.log()
