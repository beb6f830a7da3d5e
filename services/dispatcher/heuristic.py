"""Greedy construction + local search for placement, the fallback when the MILP runs out of time."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass

import numpy as np

from services.dispatcher import subsets
from services.dispatcher.model import Instance, StreamInfo, WorkerInfo, eligible

EPS = 1e-9
MAX_STARTS = 200
PATIENCE = 40  # restarts without improvement before giving the time back


@dataclass
class Problem:
    """Index form of an instance: live workers, streams, eligible pairs, demands, pins."""

    workers: list[WorkerInfo]
    streams: list[StreamInfo]
    pairs: list[tuple[int, int]]
    elig: list[list[int]]
    cap: np.ndarray  # frames/s
    capf: list[float]  # usable frames/s = target * cap
    cost: np.ndarray
    demand: np.ndarray
    current: np.ndarray  # index of the live current worker, -1 when none
    pinned: list[bool]
    penalty: float
    unplaced_penalty: float

    @classmethod
    def build(cls, inst: Instance) -> Problem:
        workers = list(inst.live_workers)
        streams = list(inst.streams)
        widx = {w.id: i for i, w in enumerate(workers)}
        elig = [[i for i, w in enumerate(workers) if eligible(s, w)] for s in streams]
        pairs = [(s, w) for s, ws in enumerate(elig) for w in ws]
        current = np.array(
            [widx.get(inst.current.get(s.id, ""), -1) for s in streams], dtype=np.int64
        )
        demand = np.array([inst.demand(s) for s in streams], dtype=float)
        cap = np.array([w.capacity_fps for w in workers], dtype=float)
        capf = [inst.target_util * c for c in cap.tolist()]
        pinned = [
            s.id in inst.pinned and current[i] >= 0 and int(current[i]) in elig[i]
            for i, s in enumerate(streams)
        ]
        pinned_load = [0.0] * len(workers)
        for i, on in enumerate(pinned):
            if on:
                pinned_load[int(current[i])] += float(demand[i])
        for i, on in enumerate(pinned):  # pins that no longer fit are released
            if on and pinned_load[int(current[i])] > capf[int(current[i])] * (1 + 1e-9):
                pinned[i] = False
        return cls(
            workers,
            streams,
            pairs,
            elig,
            cap,
            capf,
            np.array([w.cost_per_hour for w in workers], dtype=float),
            demand,
            current,
            pinned,
            inst.migration_penalty,
            inst.unplaced_penalty(),
        )


class State:
    """A mutable assignment with per-worker load and members, and its objective."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.assign = [-1] * len(p.streams)
        self.load = [0.0] * len(p.workers)
        self.members: list[set[int]] = [set() for _ in p.workers]

    def fits(self, s: int, w: int) -> bool:
        return self.load[w] + self.p.demand[s] <= self.p.capf[w] * (1 + 1e-12) + EPS

    def place(self, s: int, w: int) -> None:
        self.assign[s] = w
        self.load[w] += float(self.p.demand[s])
        self.members[w].add(s)

    def remove(self, s: int) -> None:
        w = self.assign[s]
        self.assign[s] = -1
        self.load[w] -= float(self.p.demand[s])
        self.members[w].discard(s)

    def objective(self) -> float:
        p = self.p
        cost = sum(float(p.cost[w]) for w, m in enumerate(self.members) if m)
        moves = sum(1 for s, w in enumerate(self.assign) if p.current[s] >= 0 and w != p.current[s])
        unplaced = self.assign.count(-1)
        return cost + p.penalty * moves + p.unplaced_penalty * unplaced

    def result(self) -> dict[str, str]:
        p = self.p
        return {p.streams[s].id: p.workers[w].id for s, w in enumerate(self.assign) if w >= 0}


def _best_open(st: State, s: int) -> int:
    """Best-fit among used workers (its current worker first); -1 when none fits."""
    p = st.p
    cur = int(p.current[s])
    if cur >= 0 and st.members[cur] and cur in p.elig[s] and st.fits(s, cur):
        return cur
    best, best_res = -1, float("inf")
    for w in p.elig[s]:
        if st.members[w] and st.fits(s, w):
            res = p.capf[w] - st.load[w] - p.demand[s]
            if res < best_res:
                best, best_res = w, res
    return best


def greedy(p: Problem, mode: int = 0, rng: random.Random | None = None) -> State:
    """Pins, then running streams kept where they fit, then the rest by difficulty; a worker is
    opened by the lowest cost per usable capacity (mode 1: per remaining eligible demand);
    ``rng`` randomises the opening choice for restarts."""
    st = State(p)
    for s, on in enumerate(p.pinned):
        if on:
            st.place(s, int(p.current[s]))
    rest = [s for s in range(len(p.streams)) if st.assign[s] < 0]
    for s in sorted(rest, key=lambda s: -p.demand[s]):
        cur = int(p.current[s])
        if cur >= 0 and cur in p.elig[s] and st.fits(s, cur):
            st.place(s, cur)
    rest = [s for s in rest if st.assign[s] < 0]
    remaining = [0.0] * len(p.workers)
    for s in rest:
        for w in p.elig[s]:
            remaining[w] += float(p.demand[s])
    for s in sorted(rest, key=lambda s: (len(p.elig[s]), -p.demand[s])):
        w = _best_open(st, s)
        if w < 0:
            w = _opener(st, s, remaining, mode, rng)
        if w >= 0:
            st.place(s, w)
        for v in p.elig[s]:
            remaining[v] -= float(p.demand[s])
    return st


def _opener(st: State, s: int, remaining: list[float], mode: int, rng: random.Random | None) -> int:
    p = st.p
    best, best_score = -1, float("inf")
    for w in p.elig[s]:
        if st.members[w] or not st.fits(s, w):
            continue
        useful = p.capf[w] if mode == 0 else min(p.capf[w], max(remaining[w], EPS))
        score = float(p.cost[w]) / max(useful, EPS)
        if rng is not None:
            score *= rng.uniform(0.75, 1.25)
        if score < best_score:
            best, best_score = w, score
    return best


def _try_close(st: State, close: tuple[int, ...], opened: int) -> float | None:
    """Move every stream off ``close`` (onto ``opened`` and other used workers); return the
    objective change and keep it when it improves, else undo and return None."""
    p = st.p
    movers = [s for w in close for s in st.members[w]]
    if any(p.pinned[s] for s in movers):
        return None
    need = sum(float(p.demand[s]) for s in movers)
    room = sum(p.capf[w] - st.load[w] for w, m in enumerate(st.members) if m and w not in close)
    if opened >= 0:
        room += p.capf[opened]
    if need > room + EPS:
        return None
    before = st.objective()
    old = {s: st.assign[s] for s in movers}
    for s in movers:
        st.remove(s)
    blocked = set(close)
    ok = True
    for s in sorted(movers, key=lambda s: -p.demand[s]):
        w = _target(st, s, blocked, opened)
        if w < 0:
            ok = False
            break
        st.place(s, w)
    delta = st.objective() - before if ok else 0.0
    if ok and delta < -EPS:
        return delta
    for s in movers:
        if st.assign[s] >= 0:
            st.remove(s)
        st.place(s, old[s])
    return None


def _target(st: State, s: int, blocked: set[int], opened: int) -> int:
    p = st.p
    cur = int(p.current[s])
    if (
        cur >= 0
        and cur not in blocked
        and cur in p.elig[s]
        and st.fits(s, cur)
        and (st.members[cur] or cur == opened)
    ):
        return cur
    best, best_res = -1, float("inf")
    for w in p.elig[s]:
        if w in blocked or not (st.members[w] or w == opened) or not st.fits(s, w):
            continue
        res = p.capf[w] - st.load[w] - p.demand[s]
        if res < best_res:
            best, best_res = w, res
    return best


def _place_unplaced(st: State) -> None:
    p = st.p
    for s in sorted((s for s, w in enumerate(st.assign) if w < 0), key=lambda s: -p.demand[s]):
        w = _best_open(st, s)
        if w < 0:
            cands = [v for v in p.elig[s] if st.fits(s, v)]
            w = min(cands, key=lambda v: float(p.cost[v])) if cands else -1
        if w >= 0:
            st.place(s, w)
        else:
            make_room(st, s)


def make_room(st: State, s: int, only: set[int] | None = None) -> bool:
    """Place ``s`` by moving one other stream off a worker ``s`` could use (an ejection);
    ``only`` restricts both workers to that set."""
    p = st.p
    allowed = [w for w in p.elig[s] if only is None or w in only]
    for w in sorted(allowed, key=lambda v: (not st.members[v], float(p.cost[v]))):
        need = st.load[w] + p.demand[s] - p.capf[w]
        for t in sorted(st.members[w], key=lambda t: -p.demand[t]):  # free the most room
            if p.pinned[t] or p.demand[t] + EPS < need:
                continue
            dest = [
                v for v in p.elig[t] if v != w and st.fits(t, v) and (only is None or v in only)
            ]
            if not dest:
                continue
            v = min(dest, key=lambda v: (not st.members[v], float(p.cost[v])))
            st.remove(t)
            st.place(t, v)
            st.place(s, w)
            return True
    return False


def swap_room(st: State, s: int, only: set[int]) -> bool:
    """Place ``s`` on a worker w of ``only`` after exchanging one of w's streams for a
    smaller one from another worker of ``only`` (a 2-exchange), when that frees enough."""
    p = st.p
    for w in (w for w in p.elig[s] if w in only):
        need = st.load[w] + p.demand[s] - p.capf[w]
        for t in st.members[w]:
            if p.pinned[t]:
                continue
            for v in p.elig[t]:
                if v == w or v not in only:
                    continue
                room_v = p.capf[v] - st.load[v] + EPS
                for u in st.members[v]:
                    gain = p.demand[t] - p.demand[u]
                    if gain + EPS >= need and gain <= room_v and not p.pinned[u] and w in p.elig[u]:
                        st.remove(t)
                        st.remove(u)
                        st.place(t, v)
                        st.place(u, w)
                        st.place(s, w)
                        return True
    return False


def _return_home(st: State) -> None:
    """Streams off their current worker go back when it is used and has room (saves a move)."""
    p = st.p
    for s, w in enumerate(st.assign):
        cur = int(p.current[s])
        if (
            cur >= 0
            and w >= 0
            and w != cur
            and st.members[cur]
            and cur in p.elig[s]
            and st.fits(s, cur)
        ):
            st.remove(s)
            st.place(s, cur)


def local_search(st: State, deadline: float) -> State:
    """Close one used worker (optionally opening a cheaper one) or two (opening one), until no
    move improves or the deadline passes."""
    p = st.p
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        _place_unplaced(st)
        _return_home(st)
        used = sorted((w for w, m in enumerate(st.members) if m), key=lambda w: -p.cost[w])
        closed = [w for w, m in enumerate(st.members) if not m]
        moves: list[tuple[tuple[int, ...], int]] = [((w,), -1) for w in used]
        moves += [((w,), a) for w in used for a in closed if p.cost[a] < p.cost[w]]
        moves += [
            ((w1, w2), a)
            for w1, w2 in itertools.combinations(used, 2)
            for a in closed
            if p.cost[a] < p.cost[w1] + p.cost[w2]
        ]
        for close, opened in moves:
            if time.perf_counter() >= deadline:
                break
            if any(not st.members[w] for w in close) or (opened >= 0 and st.members[opened]):
                continue
            if _try_close(st, close, opened) is not None:
                improved = True
    return st


def greedy_local_search(
    inst: Instance, deadline: float | None = None, seed: int = 0
) -> dict[str, str]:
    """Two greedy starts improved by local search, then randomised restarts until
    ``deadline`` (default: 100 ms from now) or PATIENCE restarts without a gain."""
    p = Problem.build(inst)
    end = deadline if deadline is not None else time.perf_counter() + 0.1
    rng = random.Random(seed)
    first = None
    if (p.current < 0).all():  # a fresh placement: the cost is the choice of workers
        first = subsets.subset_first(p, time.perf_counter() + 0.6 * (end - time.perf_counter()))
    best = local_search(greedy(p, 0), end)
    value = best.objective()
    if first is not None:
        first = local_search(first, end)
        if first.objective() < value - EPS:
            best, value = first, first.objective()
    tries = last_gain = 1
    while time.perf_counter() < end and tries < MAX_STARTS and tries - last_gain < PATIENCE:
        mode = tries % 2
        st = local_search(greedy(p, mode, rng if tries >= 2 else None), end)
        if st.objective() < value - EPS:
            best, value, last_gain = st, st.objective(), tries
        tries += 1
    return best.result()
