"""Pure overload policy: when demand exceeds capacity, which streams run at a reduced rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum

from services.dispatcher.model import Instance, Plan, eligible
from services.dispatcher.placement import DEFAULT_BUDGET_MS, solve

MAX_ROUNDS = 5


class Policy(StrEnum):
    """What to do with streams that do not fit.

    - ``reduce_lowest_priority``: the lowest-priority competing streams drop to ``min_rate``
      first (then the next priority), until the missing capacity is freed.
    - ``proportional``: every competing stream's rate is scaled by the same factor
      (never below ``min_rate``).
    - ``none``: no rate is reduced; what does not fit stays unplaced.
    """

    REDUCE_LOWEST_PRIORITY = "reduce_lowest_priority"
    PROPORTIONAL = "proportional"
    NONE = "none"


def competing(inst: Instance, unplaced: tuple[str, ...]) -> list[str]:
    """Streams that can use a worker some unplaced stream could use (they share capacity)."""
    live = inst.live_workers
    by_id = {s.id: s for s in inst.streams}
    pool = {w.id for sid in unplaced for w in live if eligible(by_id[sid], w)}
    return [
        s.id
        for s in inst.streams
        if s.id in unplaced or any(w.id in pool and eligible(s, w) for w in live)
    ]


def _deficit(inst: Instance, unplaced: tuple[str, ...], pool: list[str]) -> float:
    """Frames/s to free: pool demand over the pool's usable capacity, at least the smallest
    unplaced stream (packing may waste room even when the totals fit)."""
    by_id = {s.id: s for s in inst.streams}
    workers = [w for w in inst.live_workers if any(eligible(by_id[s], w) for s in unplaced)]
    room = sum(inst.target_util * w.capacity_fps for w in workers)
    over = sum(inst.demand(by_id[s]) for s in pool) - room
    smallest = min((inst.demand(by_id[s]) for s in unplaced), default=0.0)
    return max(over, smallest)


def next_rates(
    inst: Instance, unplaced: tuple[str, ...], policy: Policy, min_rate: float
) -> dict[str, float]:
    """Rates for the next round; equal to ``inst.rates`` when nothing can be reduced further."""
    rates = {s.id: inst.rates.get(s.id, 1.0) for s in inst.streams}
    by_id = {s.id: s for s in inst.streams}
    pool = competing(inst, unplaced)
    deficit = _deficit(inst, unplaced, pool)
    if policy is Policy.PROPORTIONAL:
        total = sum(inst.demand(by_id[s]) for s in pool)
        factor = max(total - deficit, 0.0) / total if total > 0 else 1.0
        for sid in pool:
            rates[sid] = max(min_rate, rates[sid] * min(factor, 0.95))
    elif policy is Policy.REDUCE_LOWEST_PRIORITY:
        freed = 0.0
        order = sorted(pool, key=lambda s: (by_id[s].priority, -by_id[s].fps, s))
        for sid in order:
            if freed >= deficit:
                break
            if rates[sid] > min_rate:
                freed += by_id[sid].fps * (rates[sid] - min_rate)
                rates[sid] = min_rate
    return {k: v for k, v in rates.items() if v < 1.0}


def plan_with_policy(
    inst: Instance,
    policy: Policy | str = Policy.REDUCE_LOWEST_PRIORITY,
    min_rate: float = 0.25,
    budget_ms: float | None = DEFAULT_BUDGET_MS,
    solver: Callable[[Instance, float | None], Plan] = solve,
) -> Plan:
    """Solve; while streams stay unplaced, reduce rates by ``policy`` and solve again.

    ``solver`` is placement.solve (optimise) or placement.repair. The plan's ``rates`` hold
    every placed stream inspected below its full rate; what still does not fit at
    ``min_rate`` stays in ``unplaced``.
    """
    policy = Policy(policy)
    if not 0 < min_rate <= 1:
        raise ValueError("min_rate must be in (0, 1]")
    rounds = 1 if policy is Policy.NONE else MAX_ROUNDS
    per = None if budget_ms is None else budget_ms / rounds
    plan = solver(inst, per)
    spent = plan.solve_ms
    current = inst
    for _ in range(rounds - 1):
        if not plan.unplaced:
            break
        rates = next_rates(current, plan.unplaced, policy, min_rate)
        if rates == {k: v for k, v in current.rates.items() if v < 1.0}:
            break
        current = replace(current, rates=rates)
        plan = solver(current, per)
        spent += plan.solve_ms
    placed_rates = {k: v for k, v in plan.rates.items() if k in plan.assignment}
    return replace(plan, solve_ms=spent, rates=placed_rates)


def alert_text(plan: Plan, policy: Policy | str) -> str | None:
    """Operator text when any stream runs at a reduced rate or is unplaced; None otherwise."""
    parts = []
    if plan.rates:
        shown = ", ".join(f"{s} at {r:.0%}" for s, r in sorted(plan.rates.items())[:10])
        more = f" and {len(plan.rates) - 10} more" if len(plan.rates) > 10 else ""
        parts.append(
            f"{len(plan.rates)} stream(s) inspected at a reduced rate "
            f"(policy {Policy(policy).value}): {shown}{more}"
        )
    if plan.unplaced:
        shown = ", ".join(sorted(plan.unplaced)[:10])
        more = f" and {len(plan.unplaced) - 10} more" if len(plan.unplaced) > 10 else ""
        parts.append(f"{len(plan.unplaced)} stream(s) not inspected at all: {shown}{more}")
    if not parts:
        return None
    return "Demand exceeds worker capacity: " + "; ".join(parts) + "."
