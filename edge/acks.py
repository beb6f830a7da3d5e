"""Pending acks: an input is acked only after every output it caused is acked by the broker."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from broker.transport import Published

log = logging.getLogger(__name__)


class AckTracker:
    """Watches publishes without blocking the delivery thread.

    A publish handle with a ``then`` callback (the MQTT transport's) reports completion
    itself; any other handle that is not done yet is waited on by one watcher thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._acked = 0
        self._failed = 0
        self._idle = threading.Condition(self._lock)
        self._queue: queue.Queue[tuple[Published, Callable[[bool], None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="edge-ack-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def open(
        self,
        ack: Callable[[], None],
        what: str = "",
        unacked: Callable[[], None] | None = None,
    ) -> InputAck:
        """A new pending input; call ``seal()`` on it once all its outputs are registered.
        ``unacked`` runs instead of ``ack`` when an output failed (the input stays unacked)."""
        with self._lock:
            self._pending += 1
        return InputAck(self, ack, what, unacked)

    def watch(self, pub: Published, done: Callable[[bool], None]) -> None:
        """Call ``done(ok)`` once ``pub`` is resolved (at once if it already is)."""
        then = getattr(pub, "then", None)
        if callable(then):
            then(lambda p: done(bool(p.wait(0))))
        elif pub.done:
            done(bool(pub.wait(0)))
        else:
            self.start()
            self._queue.put((pub, done))

    def _watch(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pub, done = item
            while not pub.wait(1.0) and not pub.done:
                continue  # not acknowledged yet (e.g. reconnecting): keep waiting, in order
            done(bool(pub.wait(0)))

    def _finished(self, ok: bool) -> None:
        with self._lock:
            self._pending -= 1
            if ok:
                self._acked += 1
            else:
                self._failed += 1
            self._idle.notify_all()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"pending": self._pending, "acked": self._acked, "failed": self._failed}

    def drain(self, timeout: float) -> bool:
        """Wait until no input is pending; True if drained in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


class InputAck:
    """One delivered input: acked once sealed and all registered outputs succeeded.

    If the broker refuses any output, the input is NOT acked: the broker redelivers it
    after the next reconnect, and the failure is counted and logged.
    """

    __slots__ = ("_ack", "_failed", "_lock", "_open", "_tracker", "_unacked", "what")

    def __init__(
        self,
        tracker: AckTracker,
        ack: Callable[[], None],
        what: str,
        unacked: Callable[[], None] | None = None,
    ) -> None:
        self._tracker, self._ack, self.what, self._unacked = tracker, ack, what, unacked
        self._open = 1  # the seal
        self._failed = False
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Expect one more output that is not published yet (pair with ``add`` or ``release``)."""
        with self._lock:
            self._open += 1

    def add(self, pub: Published, *, held: bool = False) -> None:
        """Wait for ``pub``; ``held=True`` turns an earlier ``hold()`` into this publish."""
        if not held:
            self.hold()
        self._tracker.watch(pub, self._output_done)

    def _output_done(self, ok: bool) -> None:
        if not ok:
            with self._lock:
                self._failed = True
        self.release()

    def fail(self) -> None:
        """An output could not even be queued: do not ack (the input will be redelivered)."""
        with self._lock:
            self._failed = True

    def release(self) -> None:
        with self._lock:
            self._open -= 1
            finished, failed = self._open == 0, self._failed
        if not finished:
            return
        if failed:
            log.error(
                "outputs of %s were not acknowledged by the broker; input left unacked "
                "for redelivery",
                self.what or "an input",
            )
            if self._unacked is not None:
                self._unacked()
        else:
            self._ack()
        self._tracker._finished(not failed)

    def seal(self) -> None:
        """No more outputs will be registered."""
        self.release()
