"""In-memory loopback bus implementing the Transport interface, for hermetic tests."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from broker.transport import Handler, Inbound, topic_matches

log = logging.getLogger(__name__)


class _Done:
    """A publish that completed at once (the loopback hub is 'the broker')."""

    done = True

    def wait(self, timeout: float | None = None) -> bool:
        return True


@dataclass
class _Pending:
    topic: str
    payload: bytes
    retain: bool
    properties: Mapping[str, str]


class LoopbackHub:
    """The 'broker': retained messages, wills and fan-out to connected loopback clients."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._clients: dict[str, LoopbackTransport] = {}
        self._retained: dict[str, _Pending] = {}
        self._mids = itertools.count(1)

    def _attach(self, client: LoopbackTransport) -> None:
        with self._lock:
            self._clients[client.client_id] = client

    def _detach(self, client: LoopbackTransport, *, send_will: bool) -> None:
        with self._lock:
            self._clients.pop(client.client_id, None)
        if send_will and client._will is not None:
            self.route(client._will)

    def retained_for(self, pattern: str) -> list[_Pending]:
        with self._lock:
            return [p for t, p in self._retained.items() if topic_matches(pattern, t)]

    def route(self, msg: _Pending) -> None:
        with self._lock:
            if msg.retain:
                if msg.payload:
                    self._retained[msg.topic] = msg
                else:
                    self._retained.pop(msg.topic, None)
            clients = list(self._clients.values())
        for c in clients:
            c._offer(msg, next(self._mids))


class LoopbackTransport:
    """A Transport on a LoopbackHub; delivery runs on its own thread, like paho's loop."""

    def __init__(self, hub: LoopbackHub, client_id: str, queue_size: int = 10_000) -> None:
        self.client_id = client_id
        self._hub = hub
        self._subs: dict[str, Handler] = {}
        self._will: _Pending | None = None
        self._queue: queue.Queue[tuple[Handler, Inbound] | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._connected = False
        self._stats = {
            "received": 0,
            "published": 0,
            "acked": 0,
            "handler_errors": 0,
            "dropped_queue_full": 0,
        }
        self._lock = threading.Lock()

    def set_will(self, topic: str, payload: bytes, retain: bool = True) -> None:
        self._will = _Pending(topic, payload, retain, {})

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"loopback-{self.client_id}", daemon=True
        )
        self._thread.start()
        self._connected = True
        self._hub._attach(self)

    def stop(self) -> None:
        """Graceful stop: no will (the process published its own death first)."""
        self._close(send_will=False)

    def kill(self) -> None:
        """Simulate a crash: the hub sends this client's will."""
        self._close(send_will=True)

    def _close(self, *, send_will: bool) -> None:
        if not self._connected:
            return
        self._connected = False
        self._hub._detach(self, send_will=send_will)
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def connected(self) -> bool:
        return self._connected

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        self._subs[pattern] = handler
        for p in self._hub.retained_for(pattern):
            self._enqueue(handler, p, 0, retained=True)

    def unsubscribe(self, pattern: str) -> None:
        self._subs.pop(pattern, None)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, str] | None = None,
    ) -> _Done:
        with self._lock:
            self._stats["published"] += 1
        self._hub.route(_Pending(topic, bytes(payload), retain, dict(properties or {})))
        return _Done()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def _offer(self, msg: _Pending, mid: int) -> None:
        for pattern, handler in list(self._subs.items()):
            if topic_matches(pattern, msg.topic):
                self._enqueue(handler, msg, mid, retained=False)
                return  # one delivery per message, like MQTT with overlapping subscriptions

    def _enqueue(self, handler: Handler, msg: _Pending, mid: int, *, retained: bool) -> None:
        acked = threading.Event()

        def ack() -> None:
            if not acked.is_set():
                acked.set()
                with self._lock:
                    self._stats["acked"] += 1

        inbound = Inbound(
            topic=msg.topic,
            payload=msg.payload,
            retain=retained,
            properties=msg.properties,
            receipt=f"{self.client_id}:{mid}",
            ack=ack,
        )
        try:
            self._queue.put_nowait((handler, inbound))
        except queue.Full:
            with self._lock:
                self._stats["dropped_queue_full"] += 1
            log.warning("loopback %s queue full; message on %s dropped", self.client_id, msg.topic)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            handler, inbound = item
            with self._lock:
                self._stats["received"] += 1
            try:
                handler(inbound)
            except Exception:
                with self._lock:
                    self._stats["handler_errors"] += 1
                log.exception("handler for %s failed; message acked and counted", inbound.topic)
                inbound.ack()
