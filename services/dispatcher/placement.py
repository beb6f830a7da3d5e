"""Pure placement: exact MILP (scipy/HiGHS) within a time budget, greedy + local search first."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from services.dispatcher.heuristic import Problem, greedy_local_search
from services.dispatcher.model import Instance, Plan, eligible, plan_cost
from services.dispatcher.subsets import unions

log = logging.getLogger(__name__)

DEFAULT_BUDGET_MS = 200.0
HEURISTIC_SHARE = 0.4
SAFETY_SHARE = 0.25
MILP_OVERHEAD_MS = 15.0  # building the matrices and HiGHS set-up, kept out of its time limit
MILP_MS_PER_PAIR = 0.04  # HiGHS overshoots a short time limit by about this per x[s,w]


@dataclass(frozen=True)
class MilpResult:
    """The MILP's best assignment (None when HiGHS found none) and whether it is proven."""

    assignment: dict[str, str] | None
    optimal: bool
    gap: float
    bound: float = float("-inf")  # lower bound on objective() proven by HiGHS


def objective(inst: Instance, assignment: Mapping[str, str]) -> float:
    """Cost plus the unplaced penalty: what every solver here minimises."""
    cost, _ = plan_cost(inst, assignment)
    unplaced = sum(1 for s in inst.streams if s.id not in assignment)
    return cost + inst.unplaced_penalty() * unplaced


def solve_milp(
    inst: Instance, time_limit_s: float | None = None, rel_gap: float = 1e-6
) -> MilpResult:
    """Exact placement with HiGHS: binary x[s,w], y[w], u[s] (unplaced).

    min  Σ cost_w·y_w + penalty·Σ_{s running on live w0}(1 − x[s,w0]) + U·Σ u_s
    s.t. Σ_w x[s,w] + u_s = 1                         (each stream once, or unplaced)
         Σ_s demand_s/cap_w · x[s,w] ≤ target·y_w     (capacity; a used worker costs)
         x[s,w] = 0 unless w carries the labels s requires; x[s,w0] = 1 for pinned s.
    """
    p = Problem.build(inst)
    n_pairs, n_s, n_w = len(p.pairs), len(p.streams), len(p.workers)
    n = n_pairs + n_s + n_w
    if n_s == 0:
        return MilpResult({}, True, 0.0, 0.0)
    ps = np.fromiter((s for s, _ in p.pairs), dtype=np.int64, count=n_pairs)
    pw = np.fromiter((w for _, w in p.pairs), dtype=np.int64, count=n_pairs)
    c = np.zeros(n)
    c[n_pairs : n_pairs + n_s] = inst.unplaced_penalty()
    c[n_pairs + n_s :] = p.cost
    on_current = p.current[ps] == pw
    c[:n_pairs][on_current] = -inst.migration_penalty
    lb, ub = np.zeros(n), np.ones(n)
    for k, (s, w) in enumerate(p.pairs):
        if p.pinned[s] and p.current[s] == w:
            lb[k] = 1.0
    rows_eq = np.concatenate([ps, np.arange(n_s)])
    cols_eq = np.concatenate([np.arange(n_pairs), n_pairs + np.arange(n_s)])
    a_eq = coo_matrix((np.ones(len(rows_eq)), (rows_eq, cols_eq)), shape=(n_s, n))
    loads = p.demand[ps] / p.cap[pw]
    a_cap = coo_matrix(
        (
            np.concatenate([loads, np.full(n_w, -inst.target_util)]),
            (
                np.concatenate([pw, np.arange(n_w)]),
                np.concatenate([np.arange(n_pairs), n_pairs + n_s + np.arange(n_w)]),
            ),
        ),
        shape=(n_w, n),
    )
    constraints = [
        LinearConstraint(a_eq.tocsr(), 1.0, 1.0),
        LinearConstraint(a_cap.tocsr(), -np.inf, 0.0),
    ]
    constraints.append(_cover_rows(inst, p, n_pairs, n))
    sym = _symmetry_rows(inst, p, n_pairs + n_s, n)
    if sym is not None:
        constraints.append(sym)
    options: dict[str, object] = {"disp": False, "mip_rel_gap": rel_gap}
    if time_limit_s is not None:
        options["time_limit"] = max(time_limit_s, 0.001)
    res = milp(
        c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(lb, ub), options=options
    )
    offset = inst.migration_penalty * int(np.count_nonzero(p.current >= 0))
    raw = getattr(res, "mip_dual_bound", None)
    bound = (float(raw) if raw is not None else float("-inf")) + offset
    if res.x is None:
        return MilpResult(None, False, float("inf"), bound)
    x = res.x[:n_pairs] > 0.5
    assignment = {
        p.streams[s].id: p.workers[w].id for (s, w), on in zip(p.pairs, x, strict=True) if on
    }
    gap = float(getattr(res, "mip_gap", 0.0) or 0.0)
    return MilpResult(assignment, res.status == 0, gap, bound)


def _cover_rows(inst: Instance, p: Problem, u0: int, n: int) -> LinearConstraint:
    """Knapsack covers HiGHS can cut on: for each union E of distinct eligible sets (Hall),
    Σ_{w∈E} target·cap_w·y_w + Σ_{s: elig(s)⊆E} demand_s·u_s ≥ Σ_{s: elig(s)⊆E} demand_s.
    Implied by the capacity rows in integers, but stated as one row each so the MILP's bound
    is driven by whole workers rather than fractions of them."""
    sets = unions({frozenset(e) for e in p.elig if e})
    y0 = u0 + len(p.streams)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    rhs = np.zeros(len(sets))
    for r, e in enumerate(sets):
        for w in sorted(e):
            rows.append(r)
            cols.append(y0 + w)
            vals.append(p.capf[w])
        for s, es in enumerate(p.elig):
            if es and set(es) <= e:
                rows.append(r)
                cols.append(u0 + s)
                vals.append(float(p.demand[s]))
                rhs[r] += float(p.demand[s])
    a = coo_matrix((vals, (rows, cols)), shape=(len(sets), n)).tocsr()
    return LinearConstraint(a, rhs, np.inf)


def _symmetry_rows(inst: Instance, p: Problem, y0: int, n: int) -> LinearConstraint | None:
    """y_a ≥ y_b for interchangeable workers (same capacity, cost, labels, nothing running)."""
    running = set(inst.current.values())
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, w in enumerate(p.workers):
        if w.id in running:
            continue
        key = (w.capacity_fps, w.cost_per_hour, tuple(sorted(w.labels.items())))
        groups.setdefault(key, []).append(i)
    pairs = [(g[k], g[k + 1]) for g in groups.values() for k in range(len(g) - 1)]
    if not pairs:
        return None
    rows = np.repeat(np.arange(len(pairs)), 2)
    cols = np.array([y0 + i for ab in pairs for i in ab])
    vals = np.tile([1.0, -1.0], len(pairs))
    a = coo_matrix((vals, (rows, cols)), shape=(len(pairs), n)).tocsr()
    return LinearConstraint(a, 0.0, np.inf)


def _plan(
    inst: Instance, assignment: dict[str, str], t0: float, optimal: bool, method: str
) -> Plan:
    cost, moves = plan_cost(inst, assignment)
    unplaced = tuple(s.id for s in inst.streams if s.id not in assignment)
    return Plan(
        assignment,
        cost,
        (time.perf_counter() - t0) * 1000.0,
        optimal,
        unplaced,
        moves,
        method,
        {k: v for k, v in inst.rates.items() if v < 1.0},
    )


def solve(
    inst: Instance, budget_ms: float | None = DEFAULT_BUDGET_MS, *, milp_first: bool = False
) -> Plan:
    """Best plan within ``budget_ms`` (None: no limit, exact).

    Greedy + local search runs first (at most 40 % of the budget); the MILP then gets what is
    left, when that is enough for HiGHS to be useful on a problem of this size (it overshoots
    short time limits by a size-dependent set-up time), and the better plan is kept.
    ``milp_first`` (for near-integral problems such as minimum-move repairs) gives HiGHS the
    first 60 % and runs the heuristic only when no optimum was proven.
    ``optimal`` is True only when HiGHS proved the optimum.
    """
    t0 = time.perf_counter()
    n_pairs = sum(1 for s in inst.streams for w in inst.workers if eligible(s, w))
    if not n_pairs:
        return _plan(inst, greedy_local_search(inst, t0), t0, not inst.streams, "greedy+ls")
    first: MilpResult | None = None
    if milp_first:
        first = solve_milp(
            inst, _milp_limit(budget_ms, 0.6 * budget_ms if budget_ms else 0, n_pairs, t0)
        )
        if first.optimal and first.assignment is not None:
            return _plan(inst, first.assignment, t0, True, "milp")
    share = HEURISTIC_SHARE * (budget_ms if budget_ms is not None else 250.0)
    best = greedy_local_search(inst, deadline=max(t0 + share / 1000.0, time.perf_counter() + 0.005))
    method, optimal = "greedy+ls", False
    limit = _milp_limit(budget_ms, budget_ms or 0, n_pairs, t0)
    res = (
        first
        if first is not None
        else (solve_milp(inst, limit) if limit is None or limit > 0 else None)
    )
    if res is not None:
        if res.assignment is not None and (
            objective(inst, res.assignment) <= objective(inst, best) + 1e-9
        ):
            best, method = res.assignment, "milp"
        optimal = res.optimal
    return _plan(inst, best, t0, optimal, method)


def _milp_limit(budget_ms: float | None, until_ms: float, n_pairs: int, t0: float) -> float | None:
    """HiGHS's time limit (s) so that it is done by ``until_ms`` after ``t0``, keeping a safety
    share of the budget and its size-dependent set-up time; None when there is no budget."""
    if budget_ms is None:
        return None
    left_ms = until_ms - (time.perf_counter() - t0) * 1000.0
    left_ms -= SAFETY_SHARE * budget_ms  # HiGHS's stop is late, and the host may be busy
    return (left_ms - MILP_OVERHEAD_MS - MILP_MS_PER_PAIR * n_pairs) / 1000.0


def repair(inst: Instance, budget_ms: float | None = DEFAULT_BUDGET_MS) -> Plan:
    """Re-place after a failure without moving healthy streams unless capacity forces it.

    First every stream whose worker is alive (and still fits there) stays, and only the
    orphans are placed, on the room left (workers already in use cost nothing more). If that
    leaves a placeable stream unplaced, the full problem is solved with a migration penalty
    larger than any cost saving: fewest unplaced first, then fewest moves, then cost.
    """
    t0 = time.perf_counter()
    keep, reduced = _orphan_instance(inst)
    part = solve(reduced, None if budget_ms is None else 0.4 * budget_ms)
    plan = {**keep, **part.assignment}
    placeable = [
        s
        for s in part.unplaced
        if any(eligible(x, w) for x in inst.streams if x.id == s for w in inst.live_workers)
    ]
    optimal = part.optimal
    if placeable:
        spent = (time.perf_counter() - t0) * 1000.0
        rest = None if budget_ms is None else max(budget_ms - spent, 0.4 * budget_ms)
        heavy = replace(inst, migration_penalty=sum(w.cost_per_hour for w in inst.workers) + 1)
        forced = solve(heavy, rest, milp_first=True)
        if objective(heavy, forced.assignment) < objective(heavy, plan) - 1e-9:
            plan, optimal = forced.assignment, forced.optimal
    return _plan(inst, plan, t0, optimal, "repair")


def _orphan_instance(inst: Instance) -> tuple[dict[str, str], Instance]:
    """(streams that stay, the instance of the orphans on the room the stayers leave)."""
    live = {w.id: w for w in inst.live_workers}
    keep: dict[str, str] = {}
    load: dict[str, float] = {}
    for s in inst.streams:
        w = live.get(inst.current.get(s.id, ""))
        if w is not None and eligible(s, w):
            keep[s.id] = w.id
            load[w.id] = load.get(w.id, 0.0) + inst.demand(s)
    for wid, used in load.items():  # a worker now over its target (derated): its streams move
        if used > inst.target_util * live[wid].capacity_fps * (1 + 1e-9):
            keep = {s: w for s, w in keep.items() if w != wid}
            load[wid] = 0.0
    workers = tuple(
        replace(
            w,
            capacity_fps=max(w.capacity_fps - load.get(w.id, 0.0) / inst.target_util, 0.0),
            cost_per_hour=0.0 if load.get(w.id, 0.0) > 0 else w.cost_per_hour,
        )
        for w in inst.live_workers
    )
    orphans = tuple(s for s in inst.streams if s.id not in keep)
    current = {s: w for s, w in inst.current.items() if s not in keep}
    return keep, replace(
        inst, workers=workers, streams=orphans, current=current, pinned=frozenset()
    )
