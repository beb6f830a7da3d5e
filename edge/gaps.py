"""Per-stream sequence tracking: missing seqs become gaps after a reorder timeout (pure).

A stream taken over from another worker is seeded with the last seq already accounted for
(``takeover``): the seqs between it and the first one this worker receives are awaited like
missing ones and, if they do not arrive within the timeout, reported with reason
``failover`` (docs/contract.md, "Gaps").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Reason = Literal["missing", "failover"]


class SeqStatus(StrEnum):
    """How one observed ``seq`` relates to what the stream sent before."""

    FIRST = "first"  # first seq seen of this stream (and publisher epoch)
    IN_ORDER = "in_order"  # exactly the next seq
    AHEAD = "ahead"  # skipped some seqs: they are now awaited until the reorder timeout
    LATE = "late"  # an awaited seq arrived within the reorder timeout
    LATE_AFTER_GAP = "late_after_gap"  # arrived after its gap was already reported
    DUPLICATE = "duplicate"  # seen before


@dataclass(frozen=True)
class Missing:
    """Seqs ``from_seq..to_seq`` (inclusive) of a stream that never arrived in time."""

    stream: str
    pub_epoch: int
    from_seq: int
    to_seq: int
    reason: Reason = "missing"  # "failover": not received after a take-over (never arrived)

    @property
    def count(self) -> int:
        return self.to_seq - self.from_seq + 1


@dataclass
class _Open:
    lo: int
    hi: int
    deadline: float
    reason: Reason = "missing"


@dataclass
class _State:
    expected: int
    open: list[_Open] = field(default_factory=list)
    reported: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=64))


class GapTracker:
    """Tracks ``(stream, publisher epoch)`` sequences; not thread-safe (one caller at a time).

    ``observe`` is called for every sequenced input, ``expire`` periodically: it returns the
    ranges that stayed missing for ``timeout_s``. A stream keeps at most ``max_open`` open
    ranges; beyond that the oldest one is reported at once.
    """

    def __init__(self, timeout_s: float = 2.0, max_open: int = 1000) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self.max_open = max_open
        self._states: dict[tuple[str, int], _State] = {}
        self._early: list[Missing] = []
        self._seeds: dict[str, int] = {}  # stream -> last seq accounted before a take-over

    def takeover(self, stream: str, after_seq: int) -> None:
        """This worker takes ``stream`` over; seqs up to ``after_seq`` are accounted for.

        The first seq then observed (any publisher epoch), if above ``after_seq + 1``,
        opens the range ``after_seq + 1 .. seq - 1`` with reason ``failover``: seqs of it
        that arrive within the timeout close their part, the rest is reported by ``expire``.
        """
        self.forget(stream)
        self._seeds[stream] = after_seq

    def observe(self, stream: str, pub_epoch: int, seq: int, now: float) -> SeqStatus:
        key = (stream, pub_epoch)
        st = self._states.get(key)
        if st is None:
            self._drop_idle_epochs(stream)
            st = self._states[key] = _State(expected=seq + 1)
            after = self._seeds.pop(stream, None)
            if after is not None and seq > after + 1:
                st.open.append(_Open(after + 1, seq - 1, now + self.timeout_s, "failover"))
            return SeqStatus.FIRST
        if seq == st.expected:
            st.expected += 1
            return SeqStatus.IN_ORDER
        if seq > st.expected:
            st.open.append(_Open(st.expected, seq - 1, now + self.timeout_s))
            st.expected = seq + 1
            while len(st.open) > self.max_open:
                first = st.open.pop(0)
                self._early.append(self._report(stream, pub_epoch, st, first))
            return SeqStatus.AHEAD
        return self._behind(st, seq)

    def _behind(self, st: _State, seq: int) -> SeqStatus:
        for i, rng in enumerate(st.open):
            if rng.lo <= seq <= rng.hi:
                parts = [
                    _Open(rng.lo, seq - 1, rng.deadline, rng.reason),
                    _Open(seq + 1, rng.hi, rng.deadline, rng.reason),
                ]
                st.open[i : i + 1] = [p for p in parts if p.lo <= p.hi]
                return SeqStatus.LATE
        if any(lo <= seq <= hi for lo, hi in st.reported):
            return SeqStatus.LATE_AFTER_GAP
        return SeqStatus.DUPLICATE

    def _report(self, stream: str, epoch: int, st: _State, rng: _Open) -> Missing:
        st.reported.append((rng.lo, rng.hi))
        return Missing(stream, epoch, rng.lo, rng.hi, rng.reason)

    def _drop_idle_epochs(self, stream: str) -> None:
        """A publisher restarted with a new epoch: forget its old epochs with nothing open."""
        for key in [k for k, s in self._states.items() if k[0] == stream and not s.open]:
            del self._states[key]

    def expire(self, now: float) -> list[Missing]:
        """Ranges whose reorder timeout has passed (each reported once), oldest first."""
        return self._expire(now, everything=False)

    def flush(self) -> list[Missing]:
        """Every open range now, timeout or not (a graceful stop reports what it awaits)."""
        return self._expire(0.0, everything=True)

    def _expire(self, now: float, everything: bool) -> list[Missing]:
        out, self._early = self._early, []
        for (stream, epoch), st in self._states.items():
            keep = []
            for rng in st.open:
                if everything or rng.deadline <= now:
                    out.append(self._report(stream, epoch, st, rng))
                else:
                    keep.append(rng)
            st.open = keep
        return out

    def release(self, stream: str) -> list[Missing]:
        """The stream leaves this worker: its open ranges are reported now (nobody else
        awaits them), then it is forgotten."""
        out: list[Missing] = []
        for (name, epoch), st in self._states.items():
            if name == stream:
                out.extend(self._report(name, epoch, st, rng) for rng in st.open)
                st.open = []
        self.forget(stream)
        return out

    def forget(self, stream: str) -> int:
        """Stop tracking a stream (it left this worker); returns the open ranges dropped."""
        self._seeds.pop(stream, None)
        keys = [k for k in self._states if k[0] == stream]
        dropped = sum(len(self._states[k].open) for k in keys)
        for k in keys:
            del self._states[k]
        return dropped

    def open_count(self) -> int:
        """Seqs currently awaited over all streams."""
        return sum(r.hi - r.lo + 1 for st in self._states.values() for r in st.open)
