"""Pure trigger logic: worker liveness from status messages, overload, rate change, cool-down."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Effect(StrEnum):
    """What one WorkerStatus means for the world model."""

    BIRTH = "birth"  # a new incarnation (or a dead one heard from again)
    HEARTBEAT = "heartbeat"  # the known live incarnation
    DEATH = "death"  # the known incarnation went offline
    STALE = "stale"  # older than the latest birth: ignored


@dataclass
class Liveness:
    """Latest incarnation counter and state of one worker."""

    counter: int
    alive: bool
    last_seen: float


def status_effect(known: Liveness | None, state: str, counter: int) -> Effect:
    """Classify a status. A message whose counter is older than the latest birth is stale
    (e.g. a retained death of a previous incarnation); a death of the current one kills it;
    any online/heartbeat of the current or a newer incarnation means it is alive."""
    if known is not None and counter < known.counter:
        return Effect.STALE
    if state == "offline":
        if known is not None and not known.alive and counter == known.counter:
            return Effect.STALE  # a repeated death
        return Effect.DEATH
    if known is None or not known.alive or counter > known.counter:
        return Effect.BIRTH
    return Effect.HEARTBEAT


def expired(
    seen: Mapping[str, Liveness], now: float, keepalive_s: float, factor: float = 1.5
) -> list[str]:
    """Live workers not heard from for more than ``factor × keepalive_s``."""
    limit = factor * keepalive_s
    return sorted(w for w, lv in seen.items() if lv.alive and now - lv.last_seen > limit)


@dataclass
class OverloadDetector:
    """A worker is overloaded when its p95 latency stays above the bound, or its queue grows
    at every one of the last ``samples`` heartbeats (and holds at least ``min_queue``).
    It clears after ``samples`` healthy heartbeats in a row."""

    p95_bound_ms: float = 500.0
    samples: int = 3
    min_queue: int = 8
    _history: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    _state: dict[str, bool] = field(default_factory=dict)
    _healthy: dict[str, int] = field(default_factory=dict)

    def observe(self, worker: str, queue_depth: int, p95_ms: float) -> bool | None:
        """Feed one heartbeat; True/False when the worker's state changed, else None."""
        hist = self._history.setdefault(worker, deque(maxlen=self.samples + 1))
        hist.append((queue_depth, p95_ms))
        bad = self._bad(hist)
        was = self._state.get(worker, False)
        if bad and not was:
            self._state[worker] = True
            self._healthy[worker] = 0
            return True
        if was:
            self._healthy[worker] = 0 if bad else self._healthy.get(worker, 0) + 1
            if self._healthy[worker] >= self.samples:
                self._state[worker] = False
                return False
        return None

    def _bad(self, hist: deque[tuple[int, float]]) -> bool:
        if len(hist) < self.samples:
            return False
        recent = list(hist)[-self.samples :]
        if all(p95 > self.p95_bound_ms for _, p95 in recent):
            return True
        if len(hist) <= self.samples:
            return False
        depths = [q for q, _ in hist]
        growing = all(b > a for a, b in itertools.pairwise(depths))
        return growing and depths[-1] >= self.min_queue

    def overloaded(self, worker: str) -> bool:
        return self._state.get(worker, False)

    def forget(self, worker: str) -> None:
        for d in (self._history, self._state, self._healthy):
            d.pop(worker, None)


@dataclass
class RateTracker:
    """Observed frames/s per stream over a sliding window, from verdict arrivals."""

    window_s: float = 10.0
    _events: dict[str, deque[float]] = field(default_factory=dict)
    _first: float | None = None

    def observe(self, stream: str, now: float) -> None:
        if self._first is None:
            self._first = now
        q = self._events.setdefault(stream, deque())
        q.append(now)
        while q and q[0] < now - self.window_s:
            q.popleft()

    def fps(self, stream: str, now: float) -> float | None:
        """Observed rate, or None until a full window has been watched."""
        if self._first is None or now - self._first < self.window_s:
            return None
        q = self._events.get(stream, deque())
        while q and q[0] < now - self.window_s:
            q.popleft()
        return len(q) / self.window_s


def rate_changed(
    planned_fps: float, observed_fps: float | None, rate: float = 1.0, tolerance: float = 0.25
) -> bool:
    """The input rate (observed inspections ÷ inspection rate) left ``planned ± tolerance``."""
    if observed_fps is None or planned_fps <= 0:
        return False
    estimated = observed_fps / max(rate, 1e-6)
    return abs(estimated - planned_fps) > tolerance * planned_fps


@dataclass
class CoolDown:
    """Hysteresis: a stream that moved is pinned to its worker for ``cooldown_s`` (unless that
    worker dies; placement drops pins on dead workers)."""

    cooldown_s: float = 30.0
    _moved_at: dict[str, float] = field(default_factory=dict)

    def record(self, streams: Iterable[str], now: float) -> None:
        for s in streams:
            self._moved_at[s] = now

    def pinned(self, now: float) -> frozenset[str]:
        """Streams still inside their cool-down."""
        return frozenset(s for s, t in self._moved_at.items() if now - t < self.cooldown_s)

    def moved_at(self, stream: str) -> float | None:
        return self._moved_at.get(stream)


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> set[str]:
    """Streams that had a worker before and have a different one (or none) after."""
    return {s for s, w in before.items() if after.get(s) != w}
