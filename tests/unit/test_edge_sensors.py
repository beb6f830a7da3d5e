"""Sensor checks: EWMA z-score, hard limits, stuck value, rate of change, valid range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edge.sensors import OutOfRange, SensorChecks, SensorState, check_valid, observe
from edge.settings import SensorLimit

pytestmark = pytest.mark.unit

CHECKS = SensorChecks(alpha=0.05, z=6.0, warmup=30, stuck=10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


NO_LIMIT = SensorLimit()


def feed(st: SensorState, values, limit=NO_LIMIT, dt=1.0, start=0.0):
    out = []
    for i, v in enumerate(values):
        ts = T0 + timedelta(seconds=start + i * dt)
        out.append(observe(st, float(v), ts, limit, CHECKS))
    return out


def test_noise_gives_no_findings_and_ewma_tracks_mean() -> None:
    rng = np.random.default_rng(0)
    st = SensorState()
    findings = feed(st, 20 + rng.normal(0, 0.5, 500))
    assert sum(len(f) for f in findings) == 0
    assert abs(st.mean - 20) < 0.3
    assert 0.1 < st.var < 0.6


def test_spike_is_a_zscore_anomaly() -> None:
    rng = np.random.default_rng(1)
    st = SensorState()
    feed(st, 20 + rng.normal(0, 0.5, 200))
    [found] = feed(st, [35.0])
    assert [f.kind for f in found] == ["zscore"]
    assert found[0].score > 6


def test_no_zscore_before_warmup() -> None:
    st = SensorState()
    assert feed(st, [1.0, 1.1, 50.0])[-1] == []


def test_hard_limits() -> None:
    lim = SensorLimit(low=0.0, high=100.0)
    st = SensorState()
    [high] = feed(st, [150.0], lim)
    assert high[0].kind == "limit" and "above" in high[0].detail
    [low] = feed(SensorState(), [-5.0], lim)
    assert low[0].kind == "limit" and "below" in low[0].detail


def test_stuck_value_reported_once_per_run() -> None:
    st = SensorState()
    findings = feed(st, [5.0] * 25)
    stuck = [f for fs in findings for f in fs if f.kind == "stuck"]
    assert len(stuck) == 1
    feed(st, [6.0])  # run broken
    again = [f for fs in feed(st, [6.0] * 10) for f in fs if f.kind == "stuck"]
    assert len(again) == 1


def test_rate_of_change_needs_timestamps() -> None:
    lim = SensorLimit(max_rate=2.0)
    st = SensorState()
    feed(st, [10.0, 11.0], lim)  # 1/s: fine
    [found] = feed(st, [20.0], lim, start=2.0)
    assert "rate" in [f.kind for f in found]
    st2 = SensorState()
    observe(st2, 1.0, None, lim, CHECKS)
    assert observe(st2, 100.0, None, lim, CHECKS) == []


def test_valid_range_and_non_finite() -> None:
    lim = SensorLimit(valid_min=-40.0, valid_max=200.0)
    check_valid(25.0, lim)
    for bad in (-41.0, 201.0, float("nan"), float("inf")):
        with pytest.raises(OutOfRange):
            check_valid(bad, lim)


def test_limit_settings_validated() -> None:
    with pytest.raises(ValueError):
        SensorLimit(low=5, high=1)
    with pytest.raises(ValueError):
        SensorLimit(valid_min=5, valid_max=5)
