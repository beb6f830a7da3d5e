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
