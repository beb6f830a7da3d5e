"""Family alert rules: new family after N members within T; growth when the rate jumps."""

from __future__ import annotations

import pytest

from services.clustering.alerts import AlertConfig, AlertTracker

pytestmark = pytest.mark.unit


def test_new_family_alert_needs_n_members_within_t() -> None:
    t = AlertTracker(AlertConfig(new_family_members=3, new_family_window_s=60))
    assert t.observe("F1", 0.0) == []
    assert t.observe("F1", 100.0) == []  # the first member fell out of the window
    assert t.observe("F1", 130.0) == []
    events = t.observe("F1", 150.0)
    assert [(e.kind, e.family, e.count) for e in events] == [("new_family", "F1", 3)]
    assert t.observe("F1", 151.0) == []  # once per family


def test_growth_alert_when_rate_jumps_by_factor() -> None:
    cfg = AlertConfig(
        new_family_members=1,
        growth_factor=3.0,
        growth_window_s=600,
        growth_baseline_s=3600,
        growth_min_members=5,
        growth_cooldown_s=600,
    )
    t = AlertTracker(cfg)
    ts = 0.0
    for _ in range(12):  # a steady 6 per hour for two hours
        t.observe("F1", ts)
        ts += 600.0
    quiet = [e for e in t.observe("F1", ts) if e.kind == "family_growth"]
    assert quiet == []
    fired = []
    for i in range(10):  # then 10 within 5 minutes
        fired += [e for e in t.observe("F1", ts + 1 + 30 * i) if e.kind == "family_growth"]
    assert len(fired) == 1 and fired[0].rate_per_hour >= 3 * fired[0].baseline_per_hour


def test_growth_needs_a_full_baseline_and_respects_cooldown() -> None:
    cfg = AlertConfig(
        new_family_members=1,
        growth_window_s=60,
        growth_baseline_s=600,
        growth_min_members=3,
        growth_cooldown_s=300,
    )
    t = AlertTracker(cfg)
    young = [e for i in range(20) for e in t.observe("F2", float(i)) if e.kind == "family_growth"]
    assert young == []  # a young family only gets the new-family alert
    burst = [e for i in range(20) for e in t.observe("F2", 1000.0 + i) if e.kind == "family_growth"]
    assert len(burst) == 1


def test_merge_and_state_round_trip() -> None:
    t = AlertTracker(AlertConfig(new_family_members=2))
    t.observe("A", 1.0)
    t.observe("B", 2.0)
    t.merge("B", "A")
    copy = AlertTracker(t.config)
    copy.load_state(t.to_state())
    assert [(e.kind, e.count) for e in copy.observe("A", 3.0)] == [("new_family", 3)]
    assert copy.rate_per_hour("A", 3.0) == pytest.approx(3 / 600 * 3600)


def test_bad_alert_config_is_refused() -> None:
    with pytest.raises(ValueError):
        AlertConfig(growth_factor=1.0)
    with pytest.raises(ValueError):
        AlertConfig(new_family_members=0)
