"""Pure data model of the dispatcher: workers, streams, a placement instance and a plan."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TARGET_UTIL = 0.8
DEFAULT_MIGRATION_PENALTY = 0.05


class InstanceError(ValueError):
    """An instance (or its JSON) that cannot be solved as given."""


@dataclass(frozen=True)
class WorkerInfo:
    """A worker (server) as the dispatcher sees it; ``capacity_fps`` is measured frames/s."""

    id: str
    capacity_fps: float
    cost_per_hour: float
    labels: Mapping[str, str] = field(default_factory=dict)
    alive: bool = True
    counter: int = 0
    last_seen: float = 0.0
    queue_depth: int = 0
    p95_ms: float = 0.0


@dataclass(frozen=True)
class StreamInfo:
    """A camera stream (task): frames/s to inspect, labels it requires, priority (low = first
    to be reduced under overload)."""

    id: str
    fps: float
    requires: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True)
class Instance:
    """One placement problem. ``current`` maps running streams to their worker; ``pinned``
    streams must stay on their current worker (cool-down); ``rates`` scale a stream's fps."""

    workers: tuple[WorkerInfo, ...]
    streams: tuple[StreamInfo, ...]
    current: Mapping[str, str] = field(default_factory=dict)
    target_util: float = DEFAULT_TARGET_UTIL
    migration_penalty: float = DEFAULT_MIGRATION_PENALTY
    pinned: frozenset[str] = frozenset()
    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_instance(self)

    @property
    def live_workers(self) -> tuple[WorkerInfo, ...]:
        return tuple(w for w in self.workers if w.alive and w.capacity_fps > 0)

    def demand(self, s: StreamInfo) -> float:
        """Frames/s the stream needs, after any reduced rate."""
        return s.fps * self.rates.get(s.id, 1.0)

    def unplaced_penalty(self) -> float:
        """Objective weight of leaving one stream unplaced: more than any cost it could save."""
        return (
            sum(w.cost_per_hour for w in self.workers)
            + self.migration_penalty * (len(self.streams) + 1)
            + 1.0
        )


@dataclass(frozen=True)
class Plan:
    """A solution: stream -> worker, cost (worker costs + migration penalty), solve time."""

    assignment: dict[str, str]
    cost: float
    solve_ms: float
    optimal: bool
    unplaced: tuple[str, ...] = ()
    moves: int = 0
    method: str = ""
    rates: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``linewatch dispatch plan`` output object."""
        return {
            "assignment": dict(sorted(self.assignment.items())),
            "cost": round(self.cost, 9),
            "solve_ms": round(self.solve_ms, 3),
            "optimal": self.optimal,
            "unplaced": sorted(self.unplaced),
        }


def eligible(stream: StreamInfo, worker: WorkerInfo) -> bool:
    """The worker carries every label the stream requires and is alive."""
    if not worker.alive or worker.capacity_fps <= 0:
        return False
    return all(worker.labels.get(k) == v for k, v in stream.requires.items())


def check_instance(inst: Instance) -> None:
    """Raise InstanceError on duplicate ids or non-finite / negative numbers."""
    seen: set[str] = set()
    for w in inst.workers:
        if w.id in seen:
            raise InstanceError(f"duplicate worker id {w.id!r}")
        seen.add(w.id)
        for name, v in (("capacity_fps", w.capacity_fps), ("cost_per_hour", w.cost_per_hour)):
            if not math.isfinite(v) or v < 0:
                raise InstanceError(f"worker {w.id!r}: {name} must be finite and >= 0")
    sids: set[str] = set()
    for s in inst.streams:
        if s.id in sids:
            raise InstanceError(f"duplicate stream id {s.id!r}")
        sids.add(s.id)
        if not math.isfinite(s.fps) or s.fps < 0:
            raise InstanceError(f"stream {s.id!r}: fps must be finite and >= 0")
    if not (0 < inst.target_util <= 1):
        raise InstanceError("target_utilisation must be in (0, 1]")
    if not math.isfinite(inst.migration_penalty) or inst.migration_penalty < 0:
        raise InstanceError("migration_penalty must be finite and >= 0")
    for sid, r in inst.rates.items():
        if not (0 < r <= 1):
            raise InstanceError(f"rate of {sid!r} must be in (0, 1]")


def plan_cost(inst: Instance, assignment: Mapping[str, str]) -> tuple[float, int]:
    """(cost, moves) of an assignment: used workers' cost plus migration penalty per move.

    A move is a stream whose current worker is still in the instance but which is not on it.
    """
    by_id = {w.id: w for w in inst.workers}
    used = {assignment[s.id] for s in inst.streams if s.id in assignment}
    cost = sum(by_id[w].cost_per_hour for w in used if w in by_id)
    moves = sum(
        1
        for s in inst.streams
        if inst.current.get(s.id) in by_id
        and by_id[inst.current[s.id]].alive
        and assignment.get(s.id) != inst.current[s.id]
    )
    return cost + inst.migration_penalty * moves, moves


def check_plan(inst: Instance, assignment: Mapping[str, str], tol: float = 1e-9) -> list[str]:
    """Every violated constraint (labels, capacity, unknown ids); empty when the plan is valid."""
    problems: list[str] = []
    by_id = {w.id: w for w in inst.workers}
    load: dict[str, float] = {}
    for s in inst.streams:
        wid = assignment.get(s.id)
        if wid is None:
            continue
        w = by_id.get(wid)
        if w is None or not eligible(s, w):
            problems.append(f"{s.id} on ineligible worker {wid}")
            continue
        load[wid] = load.get(wid, 0.0) + inst.demand(s) / w.capacity_fps
    for wid, u in load.items():
        if u > inst.target_util + tol:
            problems.append(f"{wid} load {u:.4f} > {inst.target_util}")
    return problems


# ---- JSON (the `plan` CLI format) ----------------------------------------------------------


def _labels(obj: Any, where: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InstanceError(f"{where} must be an object of strings")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in obj.items()}


def _number(obj: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InstanceError(f"{where}.{key} must be a number")
    return float(v)


def _id(obj: dict[str, Any], where: str) -> str:
    v = obj.get("id")
    if not isinstance(v, str) or not v:
        raise InstanceError(f"{where}.id must be a non-empty string")
    return v


def instance_from_json(doc: Any, migration_penalty: float | None = None) -> Instance:
    """Build an Instance from the documented input object; InstanceError says what is wrong."""
    if not isinstance(doc, dict):
        raise InstanceError("input must be a JSON object with workers and streams")
    ws, ss = doc.get("workers"), doc.get("streams")
    if not isinstance(ws, list) or not isinstance(ss, list):
        raise InstanceError("input needs lists 'workers' and 'streams'")
    workers = []
    for i, w in enumerate(ws):
        if not isinstance(w, dict):
            raise InstanceError(f"workers[{i}] must be an object")
        where = f"workers[{i}]"
        workers.append(
            WorkerInfo(
                _id(w, where),
                _number(w, "capacity_fps", where),
                _number(w, "cost_per_hour", where),
                _labels(w.get("labels"), f"{where}.labels"),
            )
        )
    streams = []
    for i, s in enumerate(ss):
        if not isinstance(s, dict):
            raise InstanceError(f"streams[{i}] must be an object")
        where = f"streams[{i}]"
        streams.append(
            StreamInfo(
                _id(s, where),
                _number(s, "fps", where),
                _labels(s.get("requires"), f"{where}.requires"),
                int(_number(s, "priority", where, 0)),
            )
        )
    current = doc.get("current") or {}
    if not isinstance(current, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in current.items()
    ):
        raise InstanceError("current must be an object {stream_id: worker_id}")
    target = _number(doc, "target_utilisation", "input", DEFAULT_TARGET_UTIL)
    penalty = (
        migration_penalty
        if migration_penalty is not None
        else _number(doc, "migration_penalty", "input", DEFAULT_MIGRATION_PENALTY)
    )
    return Instance(tuple(workers), tuple(streams), dict(current), target, penalty)
