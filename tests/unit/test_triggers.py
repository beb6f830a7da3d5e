"""Trigger logic: liveness from status counters, expiry, overload, rate change, cool-down."""

from __future__ import annotations

import pytest

from services.dispatcher.triggers import (
    CoolDown,
    Effect,
    Liveness,
    OverloadDetector,
    RateTracker,
    expired,
    moved,
    rate_changed,
    status_effect,
)

pytestmark = pytest.mark.unit


def test_status_effects_follow_the_incarnation_counter() -> None:
    assert status_effect(None, "online", 3) is Effect.BIRTH
    alive = Liveness(3, True, 0.0)
    assert status_effect(alive, "heartbeat", 3) is Effect.HEARTBEAT
    assert status_effect(alive, "online", 3) is Effect.HEARTBEAT  # redelivered birth
    assert status_effect(alive, "online", 4) is Effect.BIRTH  # restarted
    assert status_effect(alive, "offline", 2) is Effect.STALE  # death of an old incarnation
    assert status_effect(alive, "heartbeat", 2) is Effect.STALE
    assert status_effect(alive, "offline", 3) is Effect.DEATH
    dead = Liveness(3, False, 0.0)
    assert status_effect(dead, "offline", 3) is Effect.STALE  # repeated death
    assert status_effect(dead, "heartbeat", 3) is Effect.BIRTH  # heard from again
    assert status_effect(dead, "online", 4) is Effect.BIRTH


def test_expired_after_one_and_a_half_keepalives() -> None:
    seen = {
        "a": Liveness(1, True, 10.0),
        "b": Liveness(1, True, 13.0),
        "c": Liveness(1, False, 0.0),
    }
    assert expired(seen, 17.4, keepalive_s=5) == []
    assert expired(seen, 17.6, keepalive_s=5) == ["a"]
    assert expired(seen, 30.0, keepalive_s=5) == ["a", "b"]


def test_overload_on_p95_above_bound_then_clears() -> None:
    d = OverloadDetector(p95_bound_ms=100, samples=3)
    assert d.observe("w", 0, 150) is None
    assert d.observe("w", 0, 150) is None
    assert d.observe("w", 0, 150) is True
    assert d.overloaded("w")
    assert d.observe("w", 0, 150) is None
    assert d.observe("w", 0, 50) is None
    assert d.observe("w", 0, 50) is None
    assert d.observe("w", 0, 50) is False
    assert not d.overloaded("w")


def test_overload_on_growing_queue_only_when_deep_enough() -> None:
    d = OverloadDetector(p95_bound_ms=1e9, samples=3, min_queue=8)
    assert [d.observe("w", q, 1) for q in (1, 2, 3, 4)] == [None] * 4  # growing but shallow
    d2 = OverloadDetector(p95_bound_ms=1e9, samples=3, min_queue=8)
    assert [d2.observe("w", q, 1) for q in (5, 9, 14, 20)] == [None, None, None, True]
    d3 = OverloadDetector(p95_bound_ms=1e9, samples=3, min_queue=8)
    assert [d3.observe("w", q, 1) for q in (20, 30, 25, 40)] == [None] * 4  # not monotonic


def test_one_spike_does_not_flap() -> None:
    d = OverloadDetector(p95_bound_ms=100, samples=3)
    assert [d.observe("w", 0, p) for p in (50, 500, 50, 500, 50)] == [None] * 5


def test_rate_tracker_and_rate_change() -> None:
    r = RateTracker(window_s=2.0)
    for i in range(40):
        r.observe("s", i * 0.1)  # 10 fps for 4 s
    assert r.fps("s", 4.0) == pytest.approx(10.0, abs=0.6)
    assert r.fps("other", 4.0) == 0.0
    assert RateTracker(window_s=2.0).fps("s", 1.0) is None
    assert not rate_changed(10.0, 11.0)
    assert rate_changed(10.0, 14.0)
    assert rate_changed(10.0, 5.0)
    assert not rate_changed(10.0, 2.5, rate=0.25)  # a reduced stream inspects a quarter
    assert not rate_changed(10.0, None)


def test_cooldown_pins_recent_moves_only() -> None:
    c = CoolDown(cooldown_s=30)
    c.record({"a", "b"}, 100.0)
    c.record({"c"}, 120.0)
    assert c.pinned(125.0) == {"a", "b", "c"}
    assert c.pinned(131.0) == {"c"}
    assert c.pinned(151.0) == frozenset()
    assert c.moved_at("c") == 120.0


def test_moved() -> None:
    assert moved({"a": "w1", "b": "w2"}, {"a": "w1", "b": "w3"}) == {"b"}
    assert moved({"a": "w1"}, {}) == {"a"}
