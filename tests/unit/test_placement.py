"""Placement: MILP optimum vs brute force, greedy+LS quality, constraints, migration, repair."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import replace

import pytest

from services.dispatcher.examples import random_instance
from services.dispatcher.heuristic import greedy_local_search
from services.dispatcher.model import Instance, StreamInfo, WorkerInfo, check_plan, plan_cost
from services.dispatcher.placement import objective, repair, solve, solve_milp

pytestmark = pytest.mark.unit


def _small(seed: int, n_s: int = 6, n_w: int = 3) -> Instance:
    rng = random.Random(seed)
    workers = tuple(
        WorkerInfo(
            f"w{i}",
            rng.choice([50, 80, 120]),
            round(rng.uniform(0.5, 2.0), 2),
            {"site": rng.choice("AB")},
        )
        for i in range(n_w)
    )
    streams = tuple(
        StreamInfo(
            f"s{j}",
            rng.choice([5, 10, 20, 30, 45]),
            {"site": rng.choice("AB")} if rng.random() < 0.3 else {},
        )
        for j in range(n_s)
    )
    current = {s.id: rng.choice(workers).id for s in streams if rng.random() < 0.5}
    return Instance(workers, streams, current, migration_penalty=rng.choice([0.0, 0.1, 0.5]))


def _brute_force(inst: Instance) -> float:
    """Minimum objective over every assignment (a stream may also be left unplaced)."""
    ids = [w.id for w in inst.workers]
    best = float("inf")
    for combo in itertools.product([None, *ids], repeat=len(inst.streams)):
        a = {s.id: w for s, w in zip(inst.streams, combo, strict=True) if w is not None}
        if not check_plan(inst, a):
            best = min(best, objective(inst, a))
    return best


@pytest.mark.parametrize("seed", range(8))
def test_milp_is_optimal_against_brute_force(seed: int) -> None:
    inst = _small(seed)
    res = solve_milp(inst)
    assert res.optimal and res.assignment is not None
    assert check_plan(inst, res.assignment, tol=1e-6) == []
    assert objective(inst, res.assignment) == pytest.approx(_brute_force(inst), abs=1e-6)
    plan = solve(inst, None)
    assert plan.optimal
    assert objective(inst, plan.assignment) == pytest.approx(_brute_force(inst), abs=1e-6)


@pytest.mark.parametrize(("seed", "n_s", "n_w"), [(1, 30, 5), (2, 40, 6), (3, 50, 8), (4, 60, 8)])
def test_greedy_local_search_within_one_percent(seed: int, n_s: int, n_w: int) -> None:
    inst = random_instance(seed, n_s, n_w)
    exact = solve_milp(inst, 60)
    assert exact.optimal and exact.assignment is not None
    heur = greedy_local_search(inst, time.perf_counter() + 5.0)  # stops on patience, not time
    assert check_plan(inst, heur) == []
    assert objective(inst, heur) <= 1.01 * objective(inst, exact.assignment) + 1e-9


def test_labels_and_capacity_respected() -> None:
    for seed in range(3):
        inst = random_instance(seed, 80, 10)
        plan = solve(inst, 200)
        assert plan.unplaced == ()
        assert check_plan(inst, plan.assignment, tol=1e-6) == []
        by_id = {w.id: w for w in inst.workers}
        for s in inst.streams:
            w = by_id[plan.assignment[s.id]]
            assert all(w.labels.get(k) == v for k, v in s.requires.items())


def test_unplaced_reported_when_demand_exceeds_capacity() -> None:
    inst = Instance(
        (WorkerInfo("w1", 100, 1.0, {"site": "A"}),),
        (StreamInfo("a", 50), StreamInfo("b", 50), StreamInfo("c", 10, {"site": "B"})),
    )
    plan = solve(inst, 200)
    assert len(plan.unplaced) == 2 and "c" in plan.unplaced
    assert len(plan.assignment) == 1
    assert plan.cost == pytest.approx(1.0)


def test_no_workers_means_all_unplaced() -> None:
    inst = Instance((), (StreamInfo("a", 5),))
    plan = solve(inst, 200)
    assert plan.unplaced == ("a",) and plan.assignment == {} and plan.cost == 0.0


def test_migration_penalty_keeps_healthy_streams_in_place() -> None:
    workers = (WorkerInfo("cheap", 100, 1.0), WorkerInfo("dear", 100, 1.2))
    streams = (StreamInfo("a", 30), StreamInfo("b", 30))
    current = {"a": "dear", "b": "dear"}
    stay = solve(Instance(workers, streams, current, migration_penalty=0.5), 200)
    assert stay.assignment == current and stay.moves == 0
    assert stay.cost == pytest.approx(1.2)
    move = solve(Instance(workers, streams, current, migration_penalty=0.05), 200)
    assert move.assignment == {"a": "cheap", "b": "cheap"} and move.moves == 2
    assert move.cost == pytest.approx(1.0 + 2 * 0.05)


def test_pinned_streams_stay_even_when_moving_would_be_cheaper() -> None:
    workers = (WorkerInfo("cheap", 100, 1.0), WorkerInfo("dear", 100, 5.0))
    streams = (StreamInfo("a", 30), StreamInfo("b", 30))
    inst = Instance(
        workers,
        streams,
        {"a": "dear", "b": "cheap"},
        migration_penalty=0.0,
        pinned=frozenset({"a"}),
    )
    plan = solve(inst, 200)
    assert plan.assignment["a"] == "dear"


def test_single_worker_failure_moves_only_its_streams() -> None:
    for seed in range(3):
        inst = random_instance(seed, 100, 12)
        first = solve(inst, 200)
        victim = max(
            set(first.assignment.values()),
            key=lambda w: sum(1 for v in first.assignment.values() if v == w),
        )
        workers = tuple(replace(w, alive=w.id != victim) for w in inst.workers)
        after = repair(Instance(workers, inst.streams, first.assignment), 200)
        assert check_plan(replace(inst, workers=workers), after.assignment, tol=1e-6) == []
        moved = {s for s, w in first.assignment.items() if after.assignment.get(s) != w}
        orphans = {s for s, w in first.assignment.items() if w == victim}
        assert moved == orphans
        assert after.unplaced == ()


def test_failure_moves_what_capacity_forces_and_no_more() -> None:
    workers = (
        WorkerInfo("w1", 100, 1.0),
        WorkerInfo("w2", 100, 1.0),
        WorkerInfo("w3", 100, 1.0),
        WorkerInfo("dead", 100, 1.0, alive=False),
    )
    streams = (
        StreamInfo("s1", 60),
        StreamInfo("s2", 20),
        StreamInfo("s4", 25),
        StreamInfo("s3", 50),
        StreamInfo("s5", 70),
    )
    current = {"s1": "w1", "s2": "w2", "s4": "w2", "s5": "w3", "s3": "dead"}
    plan = repair(Instance(workers, streams, current), 200)
    assert plan.unplaced == ()
    moved_healthy = {s for s in ("s1", "s2", "s4", "s5") if plan.assignment[s] != current[s]}
    assert len(moved_healthy) == 1  # s2 to w1 frees room for s3 on w2
    assert check_plan(Instance(workers, streams), plan.assignment) == []


def test_plan_cost_counts_moves_only_from_live_workers() -> None:
    workers = (WorkerInfo("a", 100, 1.0), WorkerInfo("b", 100, 2.0, alive=False))
    inst = Instance(
        workers,
        (StreamInfo("x", 10), StreamInfo("y", 10)),
        {"x": "b", "y": "a"},
        migration_penalty=0.3,
    )
    assert plan_cost(inst, {"x": "a", "y": "a"}) == (pytest.approx(1.0), 0)
    assert plan_cost(inst, {"x": "a"}) == (pytest.approx(1.3), 1)


def test_budgeted_solve_at_full_size_is_fast_and_valid() -> None:
    inst = random_instance(7, 200, 20)
    plan = solve(inst, 200)
    assert plan.unplaced == ()
    assert check_plan(inst, plan.assignment, tol=1e-6) == []
    assert plan.solve_ms < 1000  # the 200 ms bar is measured by bench/dispatcher.py
