"""Load measurement and the worker's birth / heartbeat / death on its status topic."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from broker.liveness import Liveness

log = logging.getLogger(__name__)


class LoadMeter:
    """Sliding-window capacity (frames per busy second), load (busy fraction), p95 latency."""

    def __init__(
        self,
        window_s: float = 30.0,
        latency_samples: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._batches: deque[tuple[float, int, float]] = deque()  # (end, frames, busy_s)
        self._latency: deque[float] = deque(maxlen=latency_samples)
        self._lock = threading.Lock()
        self._started = clock()
        self.baseline_fps = 0.0  # measured at start-up, used until real batches arrive

    def record_batch(self, frames: int, busy_s: float) -> None:
        now = self._clock()
        with self._lock:
            self._batches.append((now, frames, max(busy_s, 1e-6)))
            self._trim(now)

    def record_latency(self, ms: float) -> None:
        with self._lock:
            self._latency.append(ms)

    def _trim(self, now: float) -> None:
        while self._batches and self._batches[0][0] < now - self.window_s:
            self._batches.popleft()

    def capacity_fps(self) -> float:
        """Frames the worker can process per second when busy all the time."""
        with self._lock:
            self._trim(self._clock())
            frames = sum(b[1] for b in self._batches)
            busy = sum(b[2] for b in self._batches)
        if frames < 8 or busy <= 0:
            return self.baseline_fps
        return frames / busy

    def load(self) -> float:
        """Busy fraction of the inference thread over the window (0..1)."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            busy = sum(b[2] for b in self._batches)
        span = min(self.window_s, max(now - self._started, 1e-3))
        return float(min(1.0, busy / span))

    def p95_ms(self) -> float:
        with self._lock:
            if not self._latency:
                return 0.0
            values = np.fromiter(self._latency, dtype=np.float64)
        return float(np.percentile(values, 95))


class Heartbeat:
    """Publishes birth once connected, a heartbeat every ``period_s``, death on stop."""

    def __init__(
        self, liveness: Liveness, fields: Callable[[], dict[str, Any]], period_s: float = 1.0
    ) -> None:
        self._liveness = liveness
        self._fields = fields
        self.period_s = period_s
        self._next = 0.0
        self._born = False

    @property
    def counter(self) -> int:
        return self._liveness.counter

    def birth(self) -> None:
        self._liveness.birth(**self._fields())
        self._born = True
        self._next = time.monotonic() + self.period_s

    def tick(self, now: float | None = None) -> bool:
        """Send a heartbeat when due; True when one was sent."""
        now = time.monotonic() if now is None else now
        if not self._born or now < self._next:
            return False
        self._next = now + self.period_s
        try:
            self._liveness.heartbeat(**self._fields())
        except Exception as exc:  # a heartbeat must never kill the ticker
            log.warning("heartbeat not sent: %s", exc)
            return False
        return True

    def now(self) -> bool:
        """A heartbeat at once (e.g. right after subscribing to newly assigned streams, so the
        dispatcher learns they are served); the periodic schedule restarts from here."""
        self._next = 0.0
        return self.tick()

    def death(self, timeout: float = 5.0) -> bool:
        """Retained offline status, acknowledged before the caller disconnects."""
        if not self._born:
            return False
        self._born = False
        return self._liveness.death(timeout, **self._fields())
