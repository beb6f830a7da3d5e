"""Dispatcher test kit: fake edge workers and an observer of assignments, on any Transport."""

from __future__ import annotations

import threading
from typing import Any, Literal

from broker.codecs import decode_output, encode
from broker.messages import Alert, Assignment, DispatchDecision, WorkerStatus, utcnow
from broker.topics import (
    ALL_ALERTS,
    ALL_ASSIGNMENTS,
    DISPATCH_DECISIONS,
    worker_status_topic,
)
from broker.transport import Inbound, Transport


class FakeEdge:
    """A worker on the loopback bus: retained birth, heartbeats, Last Will (offline)."""

    def __init__(self, transport: Transport, wid: str, counter: int = 1, **fields: Any) -> None:
        self.id, self.counter, self.fields = wid, counter, fields
        self.t = transport
        self.t.set_will(worker_status_topic(wid), self._payload("offline"), retain=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _payload(self, state: Literal["online", "heartbeat", "offline"], **extra: Any) -> bytes:
        fields = {**self.fields, **extra}
        return encode(
            WorkerStatus(
                worker=self.id,
                role="edge",
                state=state,
                counter=self.counter,
                ts=utcnow(),
                **fields,
            )
        )

    def start(self) -> FakeEdge:
        self.t.start()
        self.t.publish(worker_status_topic(self.id), self._payload("online"), retain=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(0.2):
            if self.t.connected:
                self.t.publish(worker_status_topic(self.id), self._payload("heartbeat"))

    def kill(self) -> None:
        """Crash: the loopback hub (or, for MQTT, the caller) sends the Last Will."""
        self._stop.set()
        self.t.kill()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
        self.t.stop()


class Observer:
    """Collects retained assignments (latest epoch per worker), decisions and alerts."""

    def __init__(self, transport: Transport, prefix: str = "") -> None:
        self.t, self.prefix = transport, prefix
        self.assign: dict[str, Assignment] = {}
        self.decisions: list[DispatchDecision] = []
        self.alerts: list[Alert] = []
        self._lock = threading.Lock()

    def start(self) -> Observer:
        self.t.start()
        self.t.subscribe(ALL_ASSIGNMENTS, self._on)
        self.t.subscribe(DISPATCH_DECISIONS, self._on)
        self.t.subscribe(ALL_ALERTS, self._on)
        return self

    def _on(self, msg: Inbound) -> None:
        m = decode_output(msg.topic, msg.payload)
        with self._lock:
            if isinstance(m, Assignment) and not m.worker.startswith(self.prefix):
                pass
            elif isinstance(m, Assignment):
                old = self.assign.get(m.worker)
                assert old is None or m.epoch >= old.epoch, "epoch went backwards"
                self.assign[m.worker] = m
            elif isinstance(m, DispatchDecision) and m.dispatcher.startswith(self.prefix):
                self.decisions.append(m)
            elif isinstance(m, Alert):
                self.alerts.append(m)
        msg.ack()

    def owner(self) -> dict[str, str]:
        with self._lock:
            out: dict[str, str] = {}
            for w, a in self.assign.items():
                for s in a.streams:
                    assert s not in out, f"{s} assigned to {out[s]} and {w}"
                    out[s] = w
            return out

    def placed(self, n: int) -> dict[str, str]:
        """The owner map once exactly ``n`` streams are placed, else {} (falsy)."""
        o = self.owner()
        return o if len(o) == n else {}
