"""Before the simulated line starts: wait until the processes it feeds are live on the bus."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from broker.codecs import Rejected, decode_output
from broker.messages import WorkerStatus
from broker.topics import ALL_STATUS
from broker.transport import Inbound, Transport


class LiveRoles:
    """Which roles have a process that is live now: a status heard as it happened (a birth or
    heartbeat delivered live, not a retained copy that may be left from an earlier run).

    A dispatcher counts from its second live heartbeat: it beats at the start of each
    round and takes the lead (if it can) within the round, and only a leading dispatcher
    holds the first inputs of streams nobody serves yet for their owner (before that, such
    inputs reach nobody).
    """

    def __init__(self, roles: Iterable[str]) -> None:
        self.wanted = frozenset(roles)
        self.live: dict[str, str] = {}  # role -> a worker heard live
        self._beats: dict[str, int] = {}  # dispatcher -> live heartbeats heard
        self._lock = threading.Lock()
        self._all = threading.Event()
        if not self.wanted:
            self._all.set()

    def on_status(self, msg: Inbound) -> None:
        try:
            status = decode_output(msg.topic, msg.payload) if msg.payload else None
        except Rejected:
            status = None
        if (
            isinstance(status, WorkerStatus)
            and not msg.retain
            and status.state != "offline"
            and status.role in self.wanted
        ):
            with self._lock:
                if self._counts(status):
                    self.live.setdefault(status.role, status.worker)
                if self.wanted <= self.live.keys():
                    self._all.set()
        msg.ack()

    def _counts(self, status: WorkerStatus) -> bool:
        if status.role != "dispatch":
            return True
        if status.state == "heartbeat":
            self._beats[status.worker] = self._beats.get(status.worker, 0) + 1
        return self._beats.get(status.worker, 0) >= 2

    def missing(self) -> list[str]:
        with self._lock:
            return sorted(self.wanted - self.live.keys())

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout
        while not self._all.is_set() and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._all.wait(min(left, 0.2))
        return self._all.is_set()


def listen(transport: Transport, roles: Iterable[str]) -> LiveRoles:
    """Subscribe (before ``start``) to every process's status, tracking ``roles``."""
    live = LiveRoles(roles)
    if live.wanted:
        transport.subscribe(ALL_STATUS, live.on_status)
    return live
