"""Inbound side of the MQTT adapter: handler table, bounded queue, delivery thread, dead letters."""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable

from broker.messages import DeadLetter, utcnow
from broker.mqtt_support import MqttError, Waiter, encode_msg
from broker.topics import dead_letter_topic
from broker.transport import Handler, Inbound, topic_matches

log = logging.getLogger(__name__)

PUT_TIMEOUT_S = 0.5  # longest paho's network thread waits for room in the inbound queue
Ack = Callable[[], None]
Publish = Callable[[str, bytes], Waiter]


class Stats:
    """Thread-safe counters."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter({k: 0 for k in keys})

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


class Delivery:
    """Hands messages from paho's network thread to handlers on ONE delivery thread.

    ``offer`` (network thread) puts ``(inbound, ack)`` in a bounded queue, waiting at most
    ``PUT_TIMEOUT_S`` for room so the network thread never stalls for long; if the queue is
    still full the message is left unacknowledged (the broker redelivers it after the next
    reconnect) and counted as ``inbound_dropped_unacked``. The delivery thread routes each
    message to the first registered pattern that matches. A message no handler wants (an old
    subscription kept by a persistent session) is acknowledged and counted as ``unrouted``.
    A handler that raises is counted (``handler_errors``), a ``DeadLetter`` with reason
    ``handler_error`` is published, and the message is acknowledged once the dead letter is.
    Retained messages are acknowledged here after their handler returns.
    """

    def __init__(
        self, name: str, component: str, queue_size: int, stats: Stats, publish: Publish
    ) -> None:
        self._name, self._component = name, component
        self._size, self._stats, self._publish = queue_size, stats, publish
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Handler, int]] = {}
        self._queue: queue.Queue[tuple[Inbound, Ack | None] | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None

    # ---- handler table --------------------------------------------------------------------

    def register(self, pattern: str, handler: Handler, qos: int) -> None:
        with self._lock:
            self._subs[pattern] = (handler, qos)

    def remove(self, pattern: str) -> None:
        with self._lock:
            self._subs.pop(pattern, None)

    def patterns(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(p, q) for p, (_, q) in self._subs.items()]

    def handler_for(self, topic: str) -> Handler | None:
        with self._lock:
            for pattern, (handler, _) in self._subs.items():
                if topic_matches(pattern, topic):
                    return handler
        return None

    # ---- queue and thread -----------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._queue = queue.Queue(self._size)
        self._thread = threading.Thread(
            target=self._run, args=(self._queue,), daemon=True, name=f"mqtt-deliver-{self._name}"
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self, timeout: float = 5.0) -> int:
        """Drop what is still queued (unacked: the broker redelivers it), end the thread."""
        with self._queue.mutex:
            dropped = sum(1 for item in self._queue.queue if item is not None)
            self._queue.queue.clear()
            self._queue.not_full.notify_all()
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        return dropped

    def offer(self, inbound: Inbound, ack: Ack | None) -> bool:
        try:
            self._queue.put((inbound, ack), timeout=PUT_TIMEOUT_S)
        except queue.Full:
            self._stats.add("inbound_dropped_unacked")
            log.warning(
                "%s: inbound queue full (%d); message on %s left unacked for redelivery",
                self._name,
                self._size,
                inbound.topic,
            )
            return False
        return True

    def _run(self, q: queue.Queue[tuple[Inbound, Ack | None] | None]) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            self.dispatch(*item)

    # ---- one message ----------------------------------------------------------------------

    def dispatch(self, inbound: Inbound, ack: Ack | None) -> None:
        handler = self.handler_for(inbound.topic)
        if handler is None:
            self._stats.add("unrouted")
            log.debug(
                "%s: no handler for %s (old session subscription?); acked",
                self._name,
                inbound.topic,
            )
            if ack is not None:
                ack()
            return
        try:
            handler(inbound)
        except Exception as exc:
            self._stats.add("handler_errors")
            log.exception(
                "%s: handler for %s raised; dead-lettered and acked", self._name, inbound.topic
            )
            self._dead_letter(inbound, exc, ack)
            return
        if inbound.retain and ack is not None:
            ack()

    def _dead_letter(self, inbound: Inbound, exc: Exception, ack: Ack | None) -> None:
        now = utcnow()
        dl = DeadLetter(
            key=inbound.receipt or f"{self._component}:{now.isoformat()}",
            component=self._component,
            topic=inbound.topic[:512],
            reason="handler_error",
            detail=f"{type(exc).__name__}: {exc}"[:500],
            payload_size=len(inbound.payload),
            payload_head=inbound.payload[:64],
            ts=now,
        )
        try:
            pub = self._publish(dead_letter_topic(self._component), encode_msg(dl))
        except MqttError as err:
            log.error(
                "%s: dead letter for %s not queued (%s); message acked anyway",
                self._name,
                inbound.topic,
                err,
            )
            if ack is not None:
                ack()
            return
        self._stats.add("dead_letters")
        if ack is not None:
            done = ack
            pub.then(lambda _w: done())
