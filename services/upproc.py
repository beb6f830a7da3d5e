"""Process shell of `linewatch up`: children in their own process groups, restarts, shutdown."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from services.upplan import Component, backoff_delay, http_url, next_failures, parse_listening

log = logging.getLogger("linewatch.up")


def command_available(comp: Component) -> bool:
    """True when the component's `linewatch` subcommand exists in this build (no import)."""
    if comp.command is None:
        return True
    from services.cli import COMMANDS

    try:
        return importlib.util.find_spec(COMMANDS[comp.command][0]) is not None
    except ModuleNotFoundError:
        return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor itself dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    comp: Component
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)
    announced_pid: int | None = None
    url: str | None = None  # where it serves HTTP, once announced

    def spawn(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        """Start the process; its stdout and stderr go to ``log_dir/<name>.log`` (appended)
        when ``log_dir`` is given, else to the supervisor's own."""
        out = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            out = (log_dir / f"{self.comp.name}.log").open("ab")
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"---- {stamp} linewatch up: starting {self.comp.display()}\n".encode())
            out.flush()
        try:
            self.proc = subprocess.Popen(
                self.comp.child_argv(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not None:
                out.close()  # the child holds its own descriptor
        self.started_at = time.monotonic()
        self.restart_at = None

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the child's whole process group; False when nothing is left."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def listening(pid: int) -> list[tuple[str, int]]:
    """TCP addresses process ``pid`` listens on (from /proc; empty when unknown)."""
    try:
        links = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
        tables = [Path(f"/proc/net/{t}").read_text() for t in ("tcp", "tcp6")]
    except OSError:
        return []
    return [addr for table in tables for addr in parse_listening(table, inodes)]


def _print(text: str) -> None:
    print(text, flush=True)


def announce_http(child: Child, say: Callable[[str], None] = _print) -> None:
    """Print the URL of a process that serves HTTP, once per pid, when it listens."""
    proc = child.proc
    if not child.comp.serves_http or proc is None or child.announced_pid == proc.pid:
        return
    addrs = listening(proc.pid)
    if addrs:
        child.announced_pid = proc.pid
        urls = sorted({http_url(h, p) for h, p in addrs})
        child.url = urls[0]
        say(f"  {child.comp.name}  {', '.join(urls)}")
        if child.comp.name == "feed":  # the page shows alerts; acting on them needs a token
            say(
                "  (to acknowledge or assign alerts: linewatch feed token create "
                "--role operator --name YOU)"
            )
        log.info("%s listening: %s", child.comp.name, ", ".join(urls))


def wait_port(host: str, port: int, timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.25)
    return False


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Supervisor:
    """Starts children, restarts crashed ones with backoff, stops them all on a signal."""

    def __init__(
        self,
        children: list[Child],
        env: dict[str, str],
        *,
        restart: bool,
        stop_timeout: float,
        log_dir: Path | None = None,
        say: Callable[[str], None] = _print,
    ) -> None:
        self.children = children
        self.env = env
        self.restart = restart
        self.stop_timeout = stop_timeout
        self.log_dir = log_dir  # None: children write to the supervisor's stdout and stderr
        self.say = say
        self.stopping = threading.Event()

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        log.info("got %s: stopping %d children", signal.Signals(signum).name, len(self.children))
        self.stopping.set()

    def run(self) -> int:
        """Supervise until asked to stop (or, with --no-restart, until all have exited)."""
        next_look = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                self._tend(child, now)
            if now >= next_look:
                next_look = now + 1.0
                for child in self.children:
                    announce_http(child, self.say)
            if not self.restart and all(c.proc is None for c in self.children):
                break
            self.stopping.wait(0.1)
        self.stop_all()
        if self.restart or not any(any(c.exit_codes) for c in self.children):
            return 0
        return 1

    def _tend(self, child: Child, now: float) -> None:
        if child.proc is not None and child.proc.poll() is not None:
            code, uptime = child.proc.returncode, now - child.started_at
            child.exit_codes.append(code)
            child.signal_group(signal.SIGKILL)  # leftovers of the dead child's group
            child.proc = None
            if code == 0 and child.comp.finishes:
                log.info("%s finished after %.1fs", child.comp.name, uptime)
                return
            if not self.restart:
                log.warning(
                    "%s exited with status %s after %.1fs (--no-restart)",
                    child.comp.name,
                    code,
                    uptime,
                )
                return
            child.failures = next_failures(child.failures, uptime)
            delay = backoff_delay(child.failures)
            child.restart_at = now + delay
            log.warning(
                "%s exited with status %s after %.1fs; restart #%d in %.1fs",
                child.comp.name,
                code,
                uptime,
                child.failures,
                delay,
            )
        elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
            if self.spawn(child):
                assert child.proc is not None
                log.warning("restarted %s (pid %d)", child.comp.name, child.proc.pid)
            else:
                child.failures += 1
                child.restart_at = now + backoff_delay(child.failures)

    def spawn(self, child: Child) -> bool:
        """Start ``child``; False (logged) when it cannot even be started."""
        try:
            child.spawn(self.env, self.log_dir)
            return True
        except OSError as exc:
            log.error("cannot start %s (%s): %s", child.comp.name, child.comp.display(), exc)
            return False

    def stop_all(self) -> None:
        """Stop the services, then the embedded broker (so their goodbyes still get out)."""
        self._stop([c for c in self.children if not c.comp.only_embedded])
        self._stop([c for c in self.children if c.comp.only_embedded])

    def _stop(self, children: list[Child]) -> None:
        """SIGTERM each child's group, wait up to stop_timeout, then SIGKILL the rest."""
        live = [c for c in children if c.signal_group(signal.SIGTERM)]
        deadline = time.monotonic() + self.stop_timeout
        while live and time.monotonic() < deadline:
            for c in live:
                if c.proc is not None:
                    c.proc.poll()
            live = [c for c in live if c.signal_group(0)]
            if live:
                time.sleep(0.05)
        for c in live:
            log.warning("%s did not stop within %.0fs: SIGKILL", c.comp.name, self.stop_timeout)
            c.signal_group(signal.SIGKILL)
        for c in children:
            if c.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=5)
                c.proc = None
