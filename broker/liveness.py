"""Process liveness on the bus: Last Will, retained birth/death and heartbeats with a counter."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from broker.messages import Role, WorkerStatus, utcnow
from broker.mqtt_support import encode_msg
from broker.topics import check_id, worker_status_topic
from broker.transport import Published, Transport

log = logging.getLogger(__name__)

State = Literal["online", "heartbeat", "offline"]


def next_counter(path: Path) -> int:
    """Read, increment and durably write the incarnation counter kept in ``path``.

    The counter only ever grows, so observers can ignore a death older than the latest
    birth. A missing file starts at 1; an unreadable one restarts above any plausible earlier
    value (the current Unix time) rather than going backwards.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous = int(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        previous = 0
    except (OSError, ValueError) as exc:
        previous = int(time.time())
        log.warning(
            "incarnation counter %s unreadable (%s); continuing from %d", path, exc, previous
        )
    value = max(previous, 0) + 1
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value


class Liveness:
    """Birth, heartbeat and death of one process on ``worker_status_topic(worker_id)``.

    Create it BEFORE ``transport.start()``: the constructor sets the Last Will (a retained
    ``offline`` status carrying this incarnation's counter), which the broker publishes if the
    process dies without saying goodbye. A graceful stop calls ``death()`` (retained
    ``offline``, waits for the broker's ack) and then ``transport.stop()``.
    """

    def __init__(self, transport: Transport, worker_id: str, role: Role, state_dir: Path) -> None:
        self.worker_id = check_id(worker_id, "worker")
        self.role: Role = role
        self.topic = worker_status_topic(worker_id)
        self.counter = next_counter(Path(state_dir) / f"{worker_id}.counter")
        self._transport = transport
        self._host, self._pid = socket.gethostname(), os.getpid()
        transport.set_will(self.topic, self.payload("offline"), retain=True)

    def status(self, state: State, **fields: Any) -> WorkerStatus:
        """The status message for ``state``; ``fields`` fill WorkerStatus's optional fields."""
        return WorkerStatus(
            worker=self.worker_id,
            role=self.role,
            state=state,
            counter=self.counter,
            ts=utcnow(),
            host=self._host,
            pid=self._pid,
            **fields,
        )

    def payload(self, state: State, **fields: Any) -> bytes:
        return encode_msg(self.status(state, **fields))

    def birth(self, **fields: Any) -> Published:
        """Retained ``online`` status (call once connected)."""
        return self._transport.publish(self.topic, self.payload("online", **fields), retain=True)

    def heartbeat(self, **fields: Any) -> Published:
        """Non-retained ``heartbeat`` status carrying current load figures."""
        return self._transport.publish(self.topic, self.payload("heartbeat", **fields))

    def death(self, timeout: float = 5.0, **fields: Any) -> bool:
        """Retained ``offline`` status; True once the broker acknowledged it."""
        pub = self._transport.publish(self.topic, self.payload("offline", **fields), retain=True)
        ok = pub.wait(timeout)
        if not ok:
            log.warning("%s: death status not acknowledged within %.1f s", self.worker_id, timeout)
        return ok
