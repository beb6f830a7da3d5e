"""Per-stream sequence tracking: missing seqs become gaps after a reorder timeout (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


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

    @property
    def count(self) -> int:
        return self.to_seq - self.from_seq + 1


@dataclass
class _Open:
    lo: int
    hi: int
    deadline: float


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

    def observe(self, stream: str, pub_epoch: int, seq: int, now: float) -> SeqStatus:
        key = (stream, pub_epoch)
        st = self._states.get(key)
        if st is None:
            self._drop_idle_epochs(stream)
            self._states[key] = _State(expected=seq + 1)
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
                parts = [_Open(rng.lo, seq - 1, rng.deadline), _Open(seq + 1, rng.hi, rng.deadline)]
                st.open[i : i + 1] = [p for p in parts if p.lo <= p.hi]
                return SeqStatus.LATE
        if any(lo <= seq <= hi for lo, hi in st.reported):
            return SeqStatus.LATE_AFTER_GAP
        return SeqStatus.DUPLICATE

    def _report(self, stream: str, epoch: int, st: _State, rng: _Open) -> Missing:
        st.reported.append((rng.lo, rng.hi))
        return Missing(stream, epoch, rng.lo, rng.hi)

    def _drop_idle_epochs(self, stream: str) -> None:
        """A publisher restarted with a new epoch: forget its old epochs with nothing open."""
        for key in [k for k, s in self._states.items() if k[0] == stream and not s.open]:
            del self._states[key]

    def expire(self, now: float) -> list[Missing]:
        """Ranges whose reorder timeout has passed (each reported once), oldest first."""
        out, self._early = self._early, []
        for (stream, epoch), st in self._states.items():
            keep = []
            for rng in st.open:
                if rng.deadline <= now:
                    out.append(self._report(stream, epoch, st, rng))
                else:
                    keep.append(rng)
            st.open = keep
        return out

    def forget(self, stream: str) -> int:
        """Stop tracking a stream (it left this worker); returns the open ranges dropped."""
        keys = [k for k in self._states if k[0] == stream]
        dropped = sum(len(self._states[k].open) for k in keys)
        for k in keys:
            del self._states[k]
        return dropped

    def open_count(self) -> int:
        """Seqs currently awaited over all streams."""
        return sum(r.hi - r.lo + 1 for st in self._states.values() for r in st.open)
