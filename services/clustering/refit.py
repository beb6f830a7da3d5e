"""Periodic refit of the clustering core: new reduction and threshold, Hungarian-matched ids."""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.clustering.core import Change, ClusterCore
from services.clustering.reduce import (
    cluster_window,
    fit_reducer,
    match,
    member_distances,
    threshold_of,
)


def refit(core: ClusterCore, ts: float) -> list[Change]:
    """Recluster the window; old prototypes keep their ids through a Hungarian matching.

    A batch cluster matched to a prototype (centroid distance within the threshold) moves that
    prototype's centroid; an unmatched cluster becomes a new family; a family that lost every
    recent member to others is folded into the one that took most of them.
    """
    cfg, win, p = core.config, core.window, core.protos
    rows = win.rows()
    x = win.vectors[rows].astype(np.float32)
    reducer = fit_reducer(x, cfg.n_components, standardize=cfg.standardize, seed=cfg.seed)
    z = reducer.apply(x)
    before = _families(core, win.protos[rows])
    labels = cluster_window(
        z,
        cfg.method,
        seed=cfg.seed,
        max_k=cfg.max_k,
        min_members=cfg.min_members,
        current=np.unique(np.array(before, dtype=object).astype(str), return_inverse=True)[1],
    )
    scaled = x - reducer.mean
    if not reducer.unit_scale:
        scaled /= reducer.scale
    one = len(np.unique(labels)) == 1  # no structure yet: stay alert to a second family
    factor = min(cfg.threshold_factor, 1.0) if one else cfg.threshold_factor
    dists = member_distances(scaled, labels, cfg.min_members)  # once for all three thresholds
    lam = threshold_of(dists, factor)
    soft = threshold_of(dists, 1.0)
    mid = threshold_of(dists, 0.0)
    lam = max(lam, (1.0 + cfg.min_margin) * mid)  # concentrated distances: keep a margin
    if lam <= 0.0:
        return []  # too few or identical vectors: nothing to learn yet
    core.set_model(reducer, lam, soft, mid)
    uniq, counts = np.unique(labels, return_counts=True)
    big = [int(u) for u, c in zip(uniq, counts, strict=True) if c >= cfg.min_members]
    if not big:
        return []
    c_raw = np.stack([x[labels == u].mean(0) for u in big])
    c_z = reducer.apply(c_raw)
    pairs = match(core._pz, c_z, gate=np.inf)
    matched = {c: r for r, c in pairs if _full_distance(core, p.raw[r], c_raw[c]) <= lam}
    changes: list[Change] = []
    for c, lab in enumerate(big):
        members = labels == lab
        n = int(members.sum())
        if c in matched:
            r = matched[c]
            p.raw[r] = c_raw[c]
            p.counts[r] = max(int(p.counts[r]), n)
            pid = int(p.ids[r])
        else:
            pid = _unmatched(core, c_raw[c], n, ts, changes)
        win.protos[rows[members]] = pid
    core._sync_pz()
    after = _families(core, win.protos[rows])
    changes += _resize(core, before, after, ts)
    changes += _fold_emptied(core, before, after, ts)
    _prune(core)
    return changes


def _families(core: ClusterCore, pids: np.ndarray) -> list[str]:
    """The family of each prototype id (``Protos.row`` for a whole array at once)."""
    p = core.protos
    rows = np.searchsorted(p.ids, pids)
    return np.array(p.family, dtype=object)[rows].tolist() if len(rows) else []


def _full_distance(core: ClusterCore, a: np.ndarray, b: np.ndarray) -> float:
    assert core.reducer is not None
    diff = (a - b) / core.reducer.scale
    return float(np.sqrt(diff @ diff))


def _unmatched(
    core: ClusterCore, raw: np.ndarray, members: int, ts: float, changes: list[Change]
) -> int:
    """A batch cluster no old prototype matched is a new family (a fragment of an old one is
    folded back by a later refit that no longer separates it)."""
    fam = core._new_family(ts)
    changes.append(Change(fam.id, "created", ts, detail="found by refit"))
    return core.protos.add(raw, members, fam.id)


def _resize(core: ClusterCore, before: list[str], after: list[str], ts: float) -> list[Change]:
    """Move window members between family sizes; one ``refit`` change per family touched."""
    delta: Counter[str] = Counter()
    for old, new in zip(before, after, strict=True):
        if old != new:
            delta[old] -= 1
            delta[new] += 1
    out: list[Change] = []
    for fid, d in sorted(delta.items()):
        if d == 0:
            continue
        fam = core.families[fid]
        fam.size = max(fam.size + d, 0)
        fam.last_seen = max(fam.last_seen, ts)
        if not any(c.family == fid for c in out):
            out.append(Change(fid, "refit", ts, detail=f"{d:+d} members by refit"))
    return out


def _fold_emptied(
    core: ClusterCore, before: list[str], after: list[str], ts: float
) -> list[Change]:
    """A family that had recent members and lost them all to other families at this refit
    was a fragment: fold it into the family that took most of them (unless pinned)."""
    had, kept = Counter(before), Counter(after)
    out: list[Change] = []
    for fid in sorted(had):
        fam = core.families[fid]
        if kept[fid] or fam.pinned or fam.status != "active":
            continue
        took = Counter(a for b, a in zip(before, after, strict=True) if b == fid)
        into = took.most_common(1)[0][0]
        if core.families[into].status != "active":
            continue
        out.append(core.fold(fid, into, ts, None))
    return out


def _prune(core: ClusterCore) -> None:
    """Drop prototypes with no recent member when their family keeps another that has some."""
    p, win = core.protos, core.window
    used = set(int(q) for q in win.protos[win.rows()])
    live = np.array([int(pid) in used for pid in p.ids], dtype=bool)
    fams_live = {f for f, ok in zip(p.family, live, strict=True) if ok}
    keep = live | np.array([f not in fams_live for f in p.family], dtype=bool)
    if len(p.ids) - int(keep.sum()) > 0 or len(p.ids) > core.config.max_prototypes:
        p.keep(keep)
        core._sync_pz()
