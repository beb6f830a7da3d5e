"""The worker's seq accounting, shared by its threads: seqs seen in, gap records out.

``GapTracker`` (edge/gaps.py) is pure and single-threaded; the delivery, inference, ticker
and stopping threads all feed it, so this wraps it in one lock and publishes what it finds
through the worker's outputs, under the worker's current epoch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from broker.topics import StreamRef
from edge.gaps import GapTracker, Missing, SeqStatus
from edge.outputs import Outputs

log = logging.getLogger(__name__)


class SeqGaps:
    """Thread-safe :class:`GapTracker` with its reports (see the module docstring)."""

    def __init__(self, reorder_timeout_s: float, out: Outputs, epoch: Callable[[], int]) -> None:
        self._tracker = GapTracker(reorder_timeout_s)
        self._lock = threading.Lock()
        self._out = out
        self._epoch = epoch

    def observe(self, stream: StreamRef, pub_epoch: int, seqs: Sequence[int]) -> SeqStatus:
        status = SeqStatus.FIRST
        now = time.monotonic()
        with self._lock:
            for seq in seqs:
                status = self._tracker.observe(stream.key, pub_epoch, seq, now)
        return status

    def take_over(self, resume: Mapping[str, int]) -> None:
        """Seed streams taken over after the seqs already accounted for (before subscribing:
        the first frame finds the seed)."""
        with self._lock:
            for key, after in resume.items():
                self._tracker.takeover(key, after)

    def release(self, stream: StreamRef) -> None:
        """A stream left: the ranges it still awaited are reported now."""
        with self._lock:
            missing = self._tracker.release(stream.key)
        self._report(missing)

    def report_expired(self) -> None:
        """Ranges whose reorder timeout passed become gaps."""
        with self._lock:
            missing = self._tracker.expire(time.monotonic())
        self._report(missing)

    def report_open(self, deadline: float) -> None:
        """Graceful stop: every range still awaited becomes a gap now, acknowledged before
        the death is published (the next incarnation would not know about them)."""
        with self._lock:
            missing = self._tracker.flush()
        epoch = self._epoch()
        pubs = [p for m in missing if (p := self._out.missing(m, epoch)) is not None]
        if missing:
            log.info("reported %d open seq ranges at stop", len(missing))
        for p in pubs:
            if not p.wait(max(0.1, deadline - time.monotonic())):
                log.warning("a gap reported at stop was not acknowledged by the broker")

    def _report(self, missing: list[Missing]) -> None:
        epoch = self._epoch()
        for m in missing:
            self._out.missing(m, epoch)
