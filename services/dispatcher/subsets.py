"""Workers first: cheapest subset meeting Hall's capacity covers, then packing its streams."""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from services.dispatcher import heuristic as h  # a module reference: heuristic imports us


def unions(base: set[frozenset[int]], limit: int = 64) -> list[frozenset[int]]:
    """Every union of the given sets (closed under union), at most ``limit`` of them."""
    out, frontier = set(base), set(base)
    while frontier and len(out) < limit:
        new = {a | b for a in frontier for b in base} - out
        out |= new
        frontier = new
    return sorted(out, key=lambda e: (len(e), sorted(e)))[:limit]


def _pack(p: h.Problem, subset: set[int]) -> h.State | None:
    """Pack every stream on ``subset``: most constrained first, then largest first (best fit,
    current worker preferred, ejections and 2-exchanges when stuck); None if both fail."""
    by_choice = sorted(
        range(len(p.streams)),
        key=lambda s: (sum(1 for w in p.elig[s] if w in subset), -p.demand[s]),
    )
    by_size = sorted(range(len(p.streams)), key=lambda s: -p.demand[s])
    for order in (by_choice, by_size):
        st = _pack_order(p, subset, order)
        if st is not None:
            return st
    return None


def _pack_order(p: h.Problem, subset: set[int], order: list[int]) -> h.State | None:
    st = h.State(p)
    for s in order:
        cands = [w for w in p.elig[s] if w in subset and st.fits(s, w)]
        if not cands:
            if not (h.make_room(st, s, subset) or h.swap_room(st, s, subset)):
                return None
            continue
        cur = int(p.current[s])
        w = cur if cur in cands else min(cands, key=lambda w: p.capf[w] - st.load[w])
        st.place(s, w)
    return st


def subset_first(p: h.Problem, deadline: float, max_rounds: int = 12) -> h.State | None:
    """Choose the workers first: the cheapest subset meeting every Hall cover (capacity per
    union of eligible sets) is a tiny knapsack MILP over y; pack it best-fit; if it does not
    pack, cut that subset off and ask again (a few rounds, until ``deadline``)."""
    if any(p.pinned) or not p.streams or any(not e for e in p.elig):
        return None
    n = len(p.workers)
    sets = unions({frozenset(e) for e in p.elig})
    cover = np.array([[p.capf[w] if w in e else 0.0 for w in range(n)] for e in sets])
    need = np.array(
        [sum(float(p.demand[s]) for s, es in enumerate(p.elig) if set(es) <= e) for e in sets]
    )
    rows, lo = [cover], [need - 1e-9]
    for _ in range(max_rounds):
        left = deadline - time.perf_counter()
        if left <= 0.003:
            return None
        res = milp(
            p.cost,
            constraints=[LinearConstraint(np.vstack(rows), np.concatenate(lo), np.inf)],
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            options={"disp": False, "time_limit": left},
        )
        if res.x is None or res.status != 0:
            return None
        chosen = {w for w in range(n) if res.x[w] > 0.5}
        st = _pack(p, chosen)
        if st is not None:
            return st
        cut = np.array([-1.0 if w in chosen else 1.0 for w in range(n)])
        rows.append(cut[None, :])  # Σ_{w∉S} y_w − Σ_{w∈S} y_w ≥ 1 − |S|: not exactly S
        lo.append(np.array([1.0 - len(chosen)]))
    return None
