"""Ports of the dispatcher shell: leader lock, SQL records, and the per-worker held state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from broker.messages import Assignment, DispatchDecision


class LeaderLock(Protocol):
    """services.store.leadership.Leadership, or anything with the same calls."""

    def try_acquire(self) -> bool: ...
    def renew(self) -> bool: ...
    def release(self) -> None: ...


class AssignmentStore(Protocol):
    """Where decisions are recorded and recovered from (SQL in production)."""

    def max_epoch(self) -> int: ...
    def latest_assignments(self) -> dict[str, tuple[int, tuple[str, ...]]]: ...
    def record(
        self, assignments: list[Assignment], decision: DispatchDecision, reason: str
    ) -> None: ...
    def last_seqs(self, streams: list[str]) -> dict[str, int]: ...


@dataclass
class Held:
    """The latest assignment of one worker: epoch, streams, reduced rates."""

    epoch: int
    streams: tuple[str, ...]
    rates: dict[str, float]


def capacity_moved(old: float, new: float, tolerance: float = 0.25) -> bool:
    """A worker's measured capacity appeared, vanished or moved by more than ``tolerance``."""
    if old <= 0 or new <= 0:
        return (old <= 0) != (new <= 0)
    return abs(new - old) > tolerance * old


def owners(held: dict[str, Held]) -> dict[str, str]:
    """Each stream's current owner: the worker holding it at the highest epoch."""
    best: dict[str, tuple[int, str]] = {}
    for w, h in held.items():
        for s in h.streams:
            if s not in best or h.epoch > best[s][0]:
                best[s] = (h.epoch, w)
    return {s: w for s, (_, w) in best.items()}


def held_rates(held: dict[str, Held]) -> dict[str, float]:
    """The sampling rate each held stream was granted (1.0 where none was)."""
    return {s: r for h in held.values() for s, r in h.rates.items()}
