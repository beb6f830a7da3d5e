"""Fencing of moved streams in the store: results older than a stream's move are stale."""

from __future__ import annotations


class EpochFence:
    """Who owns each stream since which epoch; older results of a moved stream are stale.

    A stream's fence is the epoch at which its CURRENT worker was given it. Results with an
    epoch below that fence come from before the move (a paused "zombie" worker) and are
    rejected. A stream with no known assignment accepts any epoch (0 = static assignment).
    """

    def __init__(self) -> None:
        self._owners: dict[str, tuple[str, int]] = {}

    def apply(self, worker: str, epoch: int, streams: tuple[str, ...] | list[str]) -> None:
        for st in streams:
            cur = self._owners.get(st)
            if cur is None or (cur[0] != worker and epoch > cur[1]):
                self._owners[st] = (worker, epoch)

    def fence(self, stream: str) -> int | None:
        cur = self._owners.get(stream)
        return None if cur is None else cur[1]

    def accepts(self, stream: str | None, epoch: int) -> bool:
        if stream is None:
            return True
        fence = self.fence(stream)
        return fence is None or epoch >= fence
