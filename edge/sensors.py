"""Per-sensor online checks: EWMA z-score, hard limits, stuck value, rate of change (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from edge.settings import SensorLimit

AnomalyKind = Literal["zscore", "limit", "stuck", "rate"]
STUCK_EPS = 1e-9


class OutOfRange(ValueError):
    """A reading outside the sensor's physically valid range: dead-lettered, not scored."""

    reason = "out_of_range"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Finding:
    """One anomaly of one reading."""

    kind: AnomalyKind
    score: float
    detail: str


@dataclass
class SensorState:
    """Online statistics of one sensor stream."""

    n: int = 0
    mean: float = 0.0
    var: float = 0.0
    last: float | None = None
    last_ts: datetime | None = None
    same_run: int = 0
    stuck_reported: bool = False


@dataclass(frozen=True)
class SensorChecks:
    """Settings of the checks (shared by every sensor; limits come per sensor)."""

    alpha: float = 0.05
    z: float = 6.0
    warmup: int = 30
    stuck: int = 50


def check_valid(value: float, limit: SensorLimit) -> None:
    """Raise OutOfRange for NaN/inf or a value outside ``valid_min..valid_max``."""
    if not math.isfinite(value):
        raise OutOfRange(f"value {value} is not finite")
    if limit.valid_min is not None and value < limit.valid_min:
        raise OutOfRange(f"value {value} is below the valid minimum {limit.valid_min}")
    if limit.valid_max is not None and value > limit.valid_max:
        raise OutOfRange(f"value {value} is above the valid maximum {limit.valid_max}")


def _z_finding(st: SensorState, value: float, checks: SensorChecks) -> Finding | None:
    if st.n < checks.warmup:
        return None
    sd = math.sqrt(st.var)
    if sd <= STUCK_EPS * max(1.0, abs(st.mean)):
        return None  # a flat signal has no scale yet; the stuck check covers it
    z = (value - st.mean) / sd
    if abs(z) >= checks.z:
        return Finding("zscore", abs(z), f"z={z:.2f} vs EWMA mean {st.mean:.6g} sd {sd:.3g}")
    return None


def _limit_finding(value: float, limit: SensorLimit) -> Finding | None:
    if limit.low is not None and value < limit.low:
        span = abs(limit.low) or 1.0
        return Finding("limit", (limit.low - value) / span, f"{value} below limit {limit.low}")
    if limit.high is not None and value > limit.high:
        span = abs(limit.high) or 1.0
        return Finding("limit", (value - limit.high) / span, f"{value} above limit {limit.high}")
    return None


def _rate_finding(
    st: SensorState, value: float, ts: datetime | None, limit: SensorLimit
) -> Finding | None:
    if limit.max_rate is None or st.last is None or ts is None or st.last_ts is None:
        return None
    dt = (ts - st.last_ts).total_seconds()
    if dt <= 0:
        return None
    rate = abs(value - st.last) / dt
    if rate > limit.max_rate:
        return Finding(
            "rate",
            rate / limit.max_rate,
            f"changed {value - st.last:+.6g} in {dt:.3f} s ({rate:.4g}/s > {limit.max_rate:g}/s)",
        )
    return None


def _stuck_finding(st: SensorState, value: float, checks: SensorChecks) -> Finding | None:
    if st.last is not None and abs(value - st.last) <= STUCK_EPS * max(1.0, abs(value)):
        st.same_run += 1
    else:
        st.same_run, st.stuck_reported = 1, False
    if st.same_run >= checks.stuck and not st.stuck_reported:
        st.stuck_reported = True  # one finding per stuck run
        return Finding("stuck", float(st.same_run), f"{st.same_run} identical readings {value}")
    return None


def _update(st: SensorState, value: float, alpha: float) -> None:
    if st.n == 0:
        st.mean, st.var = value, 0.0
    else:
        diff = value - st.mean
        incr = alpha * diff
        st.mean += incr
        st.var = (1.0 - alpha) * (st.var + diff * incr)
    st.n += 1


def observe(
    st: SensorState, value: float, ts: datetime | None, limit: SensorLimit, checks: SensorChecks
) -> list[Finding]:
    """Score one valid reading against the state, then fold it in; return its findings.

    The z-score uses the statistics BEFORE this reading, so a spike does not hide itself.
    A reading flagged by the z-score still updates the statistics (slowly, by ``alpha``),
    so a genuine level shift becomes the new normal instead of alarming forever.
    """
    findings = [
        f
        for f in (
            _limit_finding(value, limit),
            _z_finding(st, value, checks),
            _rate_finding(st, value, ts, limit),
            _stuck_finding(st, value, checks),
        )
        if f is not None
    ]
    _update(st, value, checks.alpha)
    st.last = value
    if ts is not None:
        st.last_ts = ts
    return findings
