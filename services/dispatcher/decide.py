"""Pure decision step: world view + trigger -> plan, changed assignments and the messages."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from broker.messages import Alert, Assignment, DispatchDecision
from broker.topics import StreamRef, TopicError
from services.dispatcher.model import Instance, Plan, StreamInfo, WorkerInfo, plan_cost
from services.dispatcher.overload import Policy, alert_text, plan_with_policy
from services.dispatcher.placement import repair, solve

REPAIR_TRIGGERS = frozenset({"death", "expired", "startup", "takeover", "config"})


@dataclass(frozen=True)
class Params:
    """Decision knobs taken from DispatchSettings."""

    target_util: float = 0.8
    migration_penalty: float = 0.05
    policy: Policy = Policy.REDUCE_LOWEST_PRIORITY
    min_rate: float = 0.25
    budget_ms: float = 200.0


@dataclass(frozen=True)
class View:
    """What the dispatcher knows when it decides."""

    workers: tuple[WorkerInfo, ...]
    streams: tuple[StreamInfo, ...]
    current: Mapping[str, str]
    rates: Mapping[str, float] = field(default_factory=dict)
    pinned: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """A decision: the plan, the per-worker assignments that changed, what moved."""

    trigger: str
    plan: Plan
    before: dict[str, str]
    changed: dict[str, tuple[tuple[str, ...], dict[str, float]]]
    moved: frozenset[str]
    cost_before: float


def decide(view: View, trigger: str, params: Params) -> Outcome:
    """Re-plan for ``trigger``. Failures, start-up and take-over repair (healthy streams stay
    unless capacity forces a move); joins, overload, rate changes and rebalances optimise
    with the migration penalty. Streams in cool-down are pinned either way."""
    inst = Instance(
        view.workers,
        view.streams,
        dict(view.current),
        params.target_util,
        params.migration_penalty,
        view.pinned,
    )
    solver = repair if is_repair(trigger) else solve
    plan = plan_with_policy(inst, params.policy, params.min_rate, params.budget_ms, solver)
    live = {w.id for w in inst.live_workers}
    cost_before, _ = plan_cost(
        replace(inst, current={}), {s: w for s, w in view.current.items() if w in live}
    )
    moved = frozenset(s for s, w in view.current.items() if plan.assignment.get(s) != w)
    return Outcome(trigger, plan, dict(view.current), _changed(view, plan), moved, cost_before)


def is_repair(trigger: str) -> bool:
    """A comma-separated trigger label holds a failure, start-up, take-over or config change."""
    return any(t.split(":", 1)[0] in REPAIR_TRIGGERS for t in trigger.split(","))


def _per_worker(
    assign: Mapping[str, str], rates: Mapping[str, float]
) -> dict[str, tuple[tuple[str, ...], dict[str, float]]]:
    out: dict[str, tuple[list[str], dict[str, float]]] = {}
    for s, w in sorted(assign.items()):
        streams, r = out.setdefault(w, ([], {}))
        streams.append(s)
        if rates.get(s, 1.0) < 1.0:
            r[s] = rates[s]
    return {w: (tuple(ss), r) for w, (ss, r) in out.items()}


def _changed(view: View, plan: Plan) -> dict[str, tuple[tuple[str, ...], dict[str, float]]]:
    """Workers whose stream set or rates differ (a worker that lost everything gets ())."""
    old = _per_worker(view.current, view.rates)
    new = _per_worker(plan.assignment, plan.rates)
    changed = {w: v for w, v in new.items() if old.get(w) != v}
    for w in old:
        if w not in new:
            changed[w] = ((), {})
    return changed


def assignments(out: Outcome, epoch: int, dispatcher: str, now: datetime) -> list[Assignment]:
    return [
        Assignment(
            worker=w, epoch=epoch, streams=streams, rates=rates, dispatcher=dispatcher, ts=now
        )
        for w, (streams, rates) in sorted(out.changed.items())
    ]


def decision(out: Outcome, epoch: int, dispatcher: str, now: datetime) -> DispatchDecision:
    p = out.plan
    return DispatchDecision(
        decision_id=uuid.uuid4().hex,
        dispatcher=dispatcher,
        trigger=out.trigger[:200],
        before=out.before,
        after=dict(p.assignment),
        cost_before=out.cost_before,
        cost_after=p.cost,
        solve_ms=p.solve_ms,
        optimal=p.optimal,
        unplaced=p.unplaced,
        epochs=dict.fromkeys(sorted(out.changed), epoch),
        ts=now,
    )


def alerts(out: Outcome, policy: Policy, decision_id: str, now: datetime) -> list[Alert]:
    """One ``reduced_rate`` alert per station with reduced or unplaced streams."""
    p = out.plan
    stations: dict[tuple[str, str, str], list[str]] = {}
    for s in [*p.rates, *p.unplaced]:
        try:
            ref = StreamRef.parse_key(s)
        except TopicError:
            continue
        stations.setdefault((ref.site, ref.line, ref.station), []).append(s)
    result = []
    for (site, line, station), streams in sorted(stations.items()):
        sub = replace(
            p,
            rates={s: r for s, r in p.rates.items() if s in streams},
            unplaced=tuple(s for s in p.unplaced if s in streams),
        )
        text = alert_text(sub, policy) or ""
        result.append(
            Alert(
                event_id=f"dispatch:{decision_id}:{site}/{line}/{station}",
                kind="reduced_rate",
                severity="major" if sub.unplaced else "warning",
                site=site,
                line=line,
                station=station,
                stream=streams[0] if len(streams) == 1 else None,
                message=text,
                ts=now,
            )
        )
    return result
