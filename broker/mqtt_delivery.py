"""Inbound side of the MQTT adapter: handler table, bounded queue, delivery thread, dead letters."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from broker.messages import DeadLetter, utcnow
from broker.mqtt_support import MqttError, Waiter, encode_msg
from broker.topics import dead_letter_topic
from broker.transport import Handler, Inbound, topic_matches

log = logging.getLogger(__name__)

PUT_TIMEOUT_S = 0.5  # longest paho's network thread waits for room in the inbound queue
UNROUTED_HOLD_S = 30.0  # how long a message no handler wants waits for one, unacked
Ack = Callable[[], None]
Publish = Callable[[str, bytes], Waiter]


class _Wake:
    """Queue item that only wakes the delivery thread (a handler was registered)."""


_WAKE = _Wake()
_Item = tuple[Inbound, Ack | None] | _Wake | None  # None stops the thread


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
    message to the first registered pattern that matches.

    A QoS 1 message no handler wants yet is HELD, unacknowledged (``unrouted_held`` counts
    them, the ``held`` gauge says how many wait): a resumed persistent session redelivers
    queued messages right after CONNACK, before the application has registered its handlers.
    When a matching handler is registered, held messages go to it (before anything queued
    after them) and its ``ack`` settles them. Holding is bounded: at most ``hold_max``
    messages (default: ``queue_size``, the Receive Maximum, so every message the broker may
    have in flight to us fits); beyond that a message is left unacked for redelivery after
    the next reconnect (``inbound_dropped_unacked``). A message still unwanted after
    ``hold_s`` (an old subscription kept by the session) is acknowledged and counted as
    ``unrouted``, so it does not occupy the broker's in-flight window for ever; so are
    unwanted retained messages at once (the broker keeps those). QoS 0 needs no ack.

    A handler that raises is counted (``handler_errors``), a ``DeadLetter`` with reason
    ``handler_error`` is published, and the message is acknowledged once the dead letter is.
    Retained messages are acknowledged here after their handler returns.
    """

    def __init__(
        self,
        name: str,
        component: str,
        queue_size: int,
        stats: Stats,
        publish: Publish,
        *,
        hold_s: float = UNROUTED_HOLD_S,
        hold_max: int | None = None,
    ) -> None:
        self._name, self._component = name, component
        self._size, self._stats, self._publish = queue_size, stats, publish
        self._hold_s = hold_s
        self._hold_max = queue_size if hold_max is None else hold_max
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Handler, int]] = {}
        self._queue: queue.Queue[_Item] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        # (held since, message, ack): only the delivery thread adds or delivers; the lock
        # guards them against stop()/forget_held() on other threads.
        self._held: deque[tuple[float, Inbound, Ack]] = deque()
        self._recheck = False  # a handler was registered since the held ones were routed

    # ---- handler table --------------------------------------------------------------------

    def register(self, pattern: str, handler: Handler, qos: int) -> None:
        with self._lock:
            self._subs[pattern] = (handler, qos)
            wake = bool(self._held)
            self._recheck = self._recheck or wake
        if wake:  # a full queue needs no wake-up: held ones are routed before the next item
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_WAKE)

    def remove(self, pattern: str) -> None:
        with self._lock:
            self._subs.pop(pattern, None)

    def patterns(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(p, q) for p, (_, q) in self._subs.items()]

    def handler_for(self, topic: str) -> Handler | None:
        with self._lock:
            return self._match(topic)

    def _match(self, topic: str) -> Handler | None:  # with self._lock held
        for pattern, (handler, _) in self._subs.items():
            if topic_matches(pattern, topic):
                return handler
        return None

    # ---- queue and thread -----------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def held(self) -> int:
        """Messages waiting, unacked, for a handler."""
        with self._lock:
            return len(self._held)

    def forget_held(self) -> int:
        """Drop held messages, unacked: after a reconnect to a kept session the broker
        redelivers them (their acks would be stale anyway). Returns how many."""
        with self._lock:
            n = len(self._held)
            self._held.clear()
        return n

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
        """Drop what is still queued or held (unacked: the broker redelivers it), end the
        thread. Returns how many messages were dropped."""
        with self._queue.mutex:
            dropped = sum(1 for item in self._queue.queue if isinstance(item, tuple))
            self._queue.queue.clear()
            self._queue.not_full.notify_all()
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        return dropped + self.forget_held()

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

    def _run(self, q: queue.Queue[_Item]) -> None:
        while True:
            try:
                item = q.get(timeout=self._next_expiry())
            except queue.Empty:
                item = _WAKE
            if item is None:
                return
            self.settle_held()
            if isinstance(item, tuple):
                self.dispatch(*item)

    def _next_expiry(self) -> float | None:
        with self._lock:
            if not self._held:
                return None
            oldest = self._held[0][0]
        return max(0.01, oldest + self._hold_s - time.monotonic())

    # ---- held (not yet routable) messages --------------------------------------------------

    def settle_held(self, now: float | None = None) -> None:
        """Deliver held messages a handler now matches (oldest first); acknowledge, as
        ``unrouted``, those held longer than ``hold_s``. Runs on the delivery thread."""
        now = time.monotonic() if now is None else now
        routed: list[tuple[Handler, Inbound, Ack]] = []
        old: list[tuple[Inbound, Ack]] = []
        with self._lock:
            if not self._held:
                return
            expired = self._held[0][0] + self._hold_s <= now
            if not (self._recheck or expired):
                return
            self._recheck = False
            keep: deque[tuple[float, Inbound, Ack]] = deque()
            for since, inbound, ack in self._held:
                handler = self._match(inbound.topic)
                if handler is not None:
                    routed.append((handler, inbound, ack))
                elif since + self._hold_s <= now:
                    old.append((inbound, ack))
                else:
                    keep.append((since, inbound, ack))
            self._held = keep
        for inbound, ack in old:
            self._stats.add("unrouted")
            log.info(
                "%s: no handler for %s within %g s (old session subscription?); acked",
                self._name,
                inbound.topic,
                self._hold_s,
            )
            ack()
        for handler, inbound, ack in routed:
            self._call(handler, inbound, ack)

    def _hold(self, inbound: Inbound, ack: Ack) -> None:
        with self._lock:
            full = len(self._held) >= self._hold_max
            if not full:
                self._held.append((time.monotonic(), inbound, ack))
        if full:
            self._stats.add("inbound_dropped_unacked")
            log.warning(
                "%s: %d messages already wait for a handler; message on %s left unacked for "
                "redelivery",
                self._name,
                self._hold_max,
                inbound.topic,
            )
            return
        self._stats.add("unrouted_held")
        log.debug("%s: no handler for %s yet; held unacked", self._name, inbound.topic)

    # ---- one message ----------------------------------------------------------------------

    def dispatch(self, inbound: Inbound, ack: Ack | None) -> None:
        handler = self.handler_for(inbound.topic)
        if handler is None:
            if ack is not None and not inbound.retain:
                self._hold(inbound, ack)
                return
            self._stats.add("unrouted")
            log.debug(
                "%s: no handler for %s; %s",
                self._name,
                inbound.topic,
                "acked" if ack else "dropped",
            )
            if ack is not None:
                ack()
            return
        self._call(handler, inbound, ack)

    def _call(self, handler: Handler, inbound: Inbound, ack: Ack | None) -> None:
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
