"""Overload policies: which streams run at a reduced rate when demand exceeds capacity."""

from __future__ import annotations

import pytest

from services.dispatcher.model import Instance, StreamInfo, WorkerInfo, check_plan
from services.dispatcher.overload import (
    Policy,
    alert_text,
    competing,
    next_rates,
    plan_with_policy,
)
from services.dispatcher.placement import repair

pytestmark = pytest.mark.unit


def _inst() -> Instance:
    # one worker, 80 fps usable; 120 fps demanded; s4/s5 are low priority
    workers = (WorkerInfo("w", 100, 1.0),)
    streams = (
        StreamInfo("s1", 20, priority=2),
        StreamInfo("s2", 20, priority=2),
        StreamInfo("s3", 20, priority=1),
        StreamInfo("s4", 30, priority=0),
        StreamInfo("s5", 30, priority=0),
    )
    return Instance(workers, streams)


def test_reduce_lowest_priority_reduces_only_the_lowest() -> None:
    plan = plan_with_policy(_inst(), Policy.REDUCE_LOWEST_PRIORITY, min_rate=0.25)
    assert plan.unplaced == ()
    assert set(plan.rates) <= {"s4", "s5"} and plan.rates
    assert all(r == 0.25 for r in plan.rates.values())
    assert (
        check_plan(
            Instance(_inst().workers, _inst().streams, rates=plan.rates), plan.assignment, tol=1e-6
        )
        == []
    )


def test_proportional_scales_every_competing_stream() -> None:
    plan = plan_with_policy(_inst(), Policy.PROPORTIONAL, min_rate=0.1)
    assert plan.unplaced == ()
    assert set(plan.rates) == {"s1", "s2", "s3", "s4", "s5"}
    values = set(round(r, 6) for r in plan.rates.values())
    assert len(values) == 1 and 0.1 <= values.pop() < 1.0
    demand = sum(s.fps * plan.rates[s.id] for s in _inst().streams)
    assert demand <= 80 + 1e-6


def test_policy_none_leaves_streams_unplaced() -> None:
    plan = plan_with_policy(_inst(), Policy.NONE)
    assert plan.rates == {} and plan.unplaced
    text = alert_text(plan, Policy.NONE)
    assert text is not None and "not inspected" in text


def test_min_rate_floor_leaves_the_rest_unplaced() -> None:
    workers = (WorkerInfo("w", 10, 1.0),)  # 8 fps usable
    inst = Instance(workers, (StreamInfo("a", 30), StreamInfo("b", 30)))
    plan = plan_with_policy(inst, Policy.REDUCE_LOWEST_PRIORITY, min_rate=0.25)
    assert len(plan.unplaced) == 1  # 7.5 fps fit at 25 %, the other does not
    assert list(plan.rates.values()) == [0.25]
    text = alert_text(plan, "reduce_lowest_priority")
    assert text is not None and "reduced rate" in text and "not inspected" in text


def test_only_streams_sharing_capacity_are_reduced() -> None:
    workers = (WorkerInfo("a", 100, 1.0, {"site": "A"}), WorkerInfo("b", 100, 1.0, {"site": "B"}))
    streams = (
        StreamInfo("a1", 50, {"site": "A"}),
        StreamInfo("a2", 50, {"site": "A"}),
        StreamInfo("b1", 10, {"site": "B"}),
    )
    inst = Instance(workers, streams)
    assert competing(inst, ("a2",)) == ["a1", "a2"]
    plan = plan_with_policy(inst, Policy.PROPORTIONAL, min_rate=0.1)
    assert "b1" not in plan.rates and plan.unplaced == ()


def test_no_overload_means_no_rates_and_no_alert() -> None:
    inst = Instance((WorkerInfo("w", 100, 1.0),), (StreamInfo("a", 10),))
    plan = plan_with_policy(inst)
    assert plan.rates == {} and alert_text(plan, Policy.PROPORTIONAL) is None


def test_next_rates_is_stable_at_the_floor() -> None:
    inst = Instance((WorkerInfo("w", 10, 1.0),), (StreamInfo("a", 30),), rates={"a": 0.5})
    assert next_rates(inst, ("a",), Policy.REDUCE_LOWEST_PRIORITY, 0.5) == {"a": 0.5}


def test_policy_works_with_repair_solver() -> None:
    plan = plan_with_policy(_inst(), "proportional", 0.1, 200, repair)
    assert plan.unplaced == ()


def test_bad_policy_and_min_rate_rejected() -> None:
    with pytest.raises(ValueError):
        plan_with_policy(_inst(), "drop_everything")
    with pytest.raises(ValueError):
        plan_with_policy(_inst(), Policy.PROPORTIONAL, min_rate=0.0)
