"""Pure family alert rules: a new family (N members within T) and a family's rate jumping."""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

AlertKind = Literal["new_family", "family_growth"]


@dataclass(frozen=True)
class AlertConfig:
    """N, T and the growth jump; docs/clustering.md#alerts."""

    new_family_members: int = 5  # N: members a family needs ...
    new_family_window_s: float = 3600.0  # ... within T seconds to raise a new-family alert
    growth_factor: float = 3.0  # recent rate >= factor × baseline rate -> growth alert
    growth_window_s: float = 600.0  # the recent window
    growth_baseline_s: float = 3600.0  # the baseline window, just before the recent one
    growth_min_members: int = 5  # members the recent window needs before growth can fire
    growth_cooldown_s: float = 600.0  # at most one growth alert per family per cooldown
    max_history: int = 100_000  # timestamps kept per family (bounded memory)

    def __post_init__(self) -> None:
        if self.new_family_members < 1 or self.growth_min_members < 1:
            raise ValueError("member counts must be at least 1")
        if min(self.new_family_window_s, self.growth_window_s, self.growth_baseline_s) <= 0:
            raise ValueError("alert windows must be positive")
        if self.growth_factor <= 1.0:
            raise ValueError("growth_factor must be above 1")

    @property
    def horizon_s(self) -> float:
        return max(self.new_family_window_s, self.growth_window_s + self.growth_baseline_s)


@dataclass(frozen=True)
class AlertEvent:
    kind: AlertKind
    family: str
    ts: float
    count: int  # members in the window that fired
    rate_per_hour: float
    baseline_per_hour: float = 0.0
    message: str = ""


COMPACT_MIN = 4096  # dropped entries kept in front of the live ones before a compaction


@dataclass
class _History:
    """A family's arrival times: ``times[start:]`` sorted; ``times[:start]`` dropped ones.

    Dropping moves ``start`` (compacting now and then), so a family at ``max_history`` does
    not move 100,000 entries for every new member; ``array('d')`` keeps them as raw doubles,
    saved as one array."""

    first: float
    times: array[float] = field(default_factory=lambda: array("d"))
    new_alerted: bool = False
    last_growth: float | None = None
    start: int = 0

    def add(self, ts: float) -> None:
        t = self.times
        if len(t) == self.start or ts >= t[-1]:
            t.append(ts)  # the usual case: arrivals in time order
        else:
            t.insert(bisect.bisect_right(t, ts, self.start), ts)

    def drop_before(self, index: int) -> None:
        """Drop ``times[start:index]`` (an absolute index)."""
        if index <= self.start:
            return
        self.start = index
        if self.start >= COMPACT_MIN and self.start * 2 >= len(self.times):
            del self.times[: self.start]
            self.start = 0

    def live(self) -> np.ndarray:
        """The live timestamps, a float64 copy."""
        return np.frombuffer(self.times[self.start :], dtype=np.float64)


class AlertTracker:
    """Counts each family's arrivals and decides when an alert is due."""

    def __init__(self, config: AlertConfig | None = None) -> None:
        self.config = config or AlertConfig()
        self._h: dict[str, _History] = {}

    def observe(self, family: str, ts: float) -> list[AlertEvent]:
        """Record one member of ``family`` at ``ts``; return the alerts it triggers."""
        cfg = self.config
        h = self._h.get(family)
        if h is None:
            h = self._h[family] = _History(first=ts)
        h.first = min(h.first, ts)
        h.add(ts)
        t = h.times
        cut = bisect.bisect_left(t, max(t[-1] - cfg.horizon_s, ts - cfg.horizon_s), h.start)
        h.drop_before(max(cut, len(t) - cfg.max_history))
        out = []
        if not h.new_alerted:
            n = self._count(h, ts - cfg.new_family_window_s, ts)
            if n >= cfg.new_family_members:
                h.new_alerted = True
                rate = self.rate_per_hour(family, ts)
                out.append(
                    AlertEvent(
                        "new_family",
                        family,
                        ts,
                        n,
                        rate,
                        message=(
                            f"new defect family {family}: {n} parts within "
                            f"{_span(cfg.new_family_window_s)}"
                        ),
                    )
                )
        growth = self._growth(family, h, ts)
        if growth is not None:
            out.append(growth)
        return out

    def _growth(self, family: str, h: _History, ts: float) -> AlertEvent | None:
        cfg = self.config
        if ts - h.first < cfg.growth_window_s + cfg.growth_baseline_s:
            return None  # no full baseline yet: the new-family rule covers young families
        if h.last_growth is not None and ts - h.last_growth < cfg.growth_cooldown_s:
            return None
        recent_start = ts - cfg.growth_window_s
        recent = self._count(h, recent_start, ts)
        if recent < cfg.growth_min_members:
            return None
        base = self._count(h, recent_start - cfg.growth_baseline_s, recent_start, right=False)
        rate = recent / cfg.growth_window_s * 3600.0
        base_rate = max(base, 1) / cfg.growth_baseline_s * 3600.0
        if rate < cfg.growth_factor * base_rate:
            return None
        h.last_growth = ts
        return AlertEvent(
            "family_growth",
            family,
            ts,
            recent,
            rate,
            base_rate,
            message=(
                f"defect family {family} is growing: {rate:.0f}/h over the last "
                f"{_span(cfg.growth_window_s)}, {rate / base_rate:.1f}× its baseline of "
                f"{base_rate:.1f}/h"
            ),
        )

    @staticmethod
    def _count(h: _History, lo: float, hi: float, right: bool = True) -> int:
        """Members with ``lo < t <= hi`` (``lo < t < hi`` when ``right`` is False)."""
        t, s = h.times, h.start
        end = bisect.bisect_right(t, hi, s) if right else bisect.bisect_left(t, hi, s)
        return max(end - bisect.bisect_right(t, lo, s), 0)

    def rate_per_hour(self, family: str, now: float) -> float:
        """Members per hour over the recent growth window."""
        h = self._h.get(family)
        if h is None:
            return 0.0
        win = self.config.growth_window_s
        return self._count(h, now - win, now) / win * 3600.0

    def merge(self, source: str, into: str) -> None:
        """A curation merge: the source's history now counts for the target."""
        src = self._h.pop(source, None)
        if src is None:
            return
        dst = self._h.setdefault(into, _History(first=src.first))
        both = np.sort(np.concatenate([dst.live(), src.live()]))[-self.config.max_history :]
        dst.times, dst.start = array("d", both.tobytes()), 0
        dst.first = min(dst.first, src.first)
        dst.new_alerted = dst.new_alerted or src.new_alerted

    def to_state(self) -> dict[str, Any]:
        """JSON-able state, but ``times`` are float64 arrays (``state.save`` stores them as
        arrays; ``load_state`` takes arrays or lists)."""
        return {
            f: {
                "first": h.first,
                "times": h.live(),
                "new_alerted": h.new_alerted,
                "last_growth": h.last_growth,
            }
            for f, h in self._h.items()
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self._h = {
            f: _History(
                float(v["first"]),
                _doubles(v["times"]),
                bool(v["new_alerted"]),
                v.get("last_growth"),
            )
            for f, v in state.items()
        }


def _doubles(values: Any) -> array[float]:
    out = array("d")
    out.frombytes(np.asarray(values, dtype=np.float64).reshape(-1).tobytes())
    return out


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
