"""Dynamic micro-batching over bounded per-camera queues; when behind, the newest frame wins."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Queued(Generic[T]):
    camera: str
    item: T
    enqueued: float


class Batcher(Generic[T]):
    """Thread-safe batcher: producers ``put`` (never block), one consumer ``take``s batches.

    - Each camera holds at most ``camera_queue`` items and all cameras at most ``total_queue``.
      A full queue sheds its OLDEST item (the newest frame wins); ``put`` returns what it shed
      so the caller can count and record it. Nothing is dropped silently.
    - ``take`` returns at once when ``max_batch`` items are queued. With fewer, it waits for
      more only while waiting can pay: when, at the recent arrival rate, the batch would fill
      within ``max_wait_s`` of the oldest item's arrival; otherwise it takes what is there
      now (at light load a frame never waits for company that will not come, and under load
      batches grow by themselves while the previous batch runs). Never longer than
      ``max_wait_s``. Items are taken round-robin over cameras, oldest first.
    """

    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        camera_queue: int,
        total_queue: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1 or camera_queue < 1 or total_queue < 1 or max_wait_s < 0:
            raise ValueError("batch and queue sizes must be >= 1 and max_wait_s >= 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.camera_queue = camera_queue
        self.total_queue = total_queue
        self._clock = clock
        self._queues: OrderedDict[str, deque[Queued[T]]] = OrderedDict()
        self._depth = 0
        self._closed = False
        self._cond = threading.Condition()
        self._last_put: float | None = None
        self._gap_s = float("inf")  # EWMA of the time between arrivals
        self.shed_total = 0

    def put(self, camera: str, item: T) -> list[T]:
        """Queue ``item``; return the items shed to make room (oldest of their camera)."""
        shed: list[T] = []
        with self._cond:
            q = self._queues.setdefault(camera, deque())
            if len(q) >= self.camera_queue:
                shed.append(self._pop(camera).item)
            if self._depth >= self.total_queue:
                fullest = max(self._queues, key=lambda c: len(self._queues[c]))
                shed.append(self._pop(fullest).item)
            now = self._clock()
            if self._last_put is not None:
                gap = now - self._last_put
                self._gap_s = gap if self._gap_s == float("inf") else 0.8 * self._gap_s + 0.2 * gap
            self._last_put = now
            self._queues.setdefault(camera, deque()).append(Queued(camera, item, now))
            self._depth += 1
            self.shed_total += len(shed)
            self._cond.notify_all()
        return shed

    def _pop(self, camera: str) -> Queued[T]:
        q = self._queues[camera]
        entry = q.popleft()
        self._depth -= 1
        if not q:
            del self._queues[camera]
        return entry

    def take(self, timeout: float | None = None) -> list[Queued[T]]:
        """Block for the next batch (empty list on timeout or once closed and drained)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._depth >= self.max_batch or (self._closed and self._depth):
                    return self._select()
                if self._depth:
                    ready_at = self._ready_at()
                    if self._clock() >= ready_at:
                        return self._select()
                    wait_until = ready_at if deadline is None else min(ready_at, deadline)
                elif self._closed:
                    return []
                else:
                    wait_until = deadline if deadline is not None else self._clock() + 3600
                if deadline is not None and self._clock() >= deadline and not self._depth:
                    return []
                self._cond.wait(max(0.0, wait_until - self._clock()))
                if deadline is not None and self._clock() >= deadline and not self._depth:
                    return []

    def _oldest(self) -> float:
        return min(q[0].enqueued for q in self._queues.values())

    def _ready_at(self) -> float:
        """When the current partial batch should go (now, if waiting would not fill it)."""
        oldest = self._oldest()
        fill = (self.max_batch - self._depth) * self._gap_s
        if oldest + fill > oldest + self.max_wait_s:  # arrivals too slow to fill it in time
            return oldest
        return oldest + self.max_wait_s

    def _select(self) -> list[Queued[T]]:
        """Round-robin over cameras (the least recently served first), oldest item first."""
        batch: list[Queued[T]] = []
        while self._depth and len(batch) < self.max_batch:
            for camera in list(self._queues):
                if len(batch) >= self.max_batch:
                    break
                batch.append(self._pop(camera))
                if camera in self._queues:
                    self._queues.move_to_end(camera)
        return batch

    def drop_camera(self, camera: str) -> list[T]:
        """Remove and return everything queued for ``camera`` (it left this worker)."""
        with self._cond:
            q = self._queues.pop(camera, deque())
            self._depth -= len(q)
            return [e.item for e in q]

    @property
    def closed(self) -> bool:
        return self._closed

    def depth(self) -> int:
        with self._cond:
            return self._depth

    def close(self) -> None:
        """Wake the consumer; ``take`` then drains what is left and returns [] when empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
