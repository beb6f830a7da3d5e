"""Pure clustering core: online family assignment, periodic refits with stable ids, curation."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from services.clustering.model import (
    CURATION_OPS,
    Assigned,
    Change,
    CoreConfig,
    CurationError,
    Event,
    Family,
    Protos,
    VectorRejected,
    Window,
)
from services.clustering.reduce import Reducer

F16_MAX = float(np.finfo(np.float16).max)
NEAREST = 3  # prototypes (nearest in the reduced space) whose full distance is compared

__all__ = [
    "Assigned",
    "Change",
    "ClusterCore",
    "CoreConfig",
    "CurationError",
    "Event",
    "Family",
    "Protos",
    "VectorRejected",
    "Window",
]


class ClusterCore:
    """Online assignment of vectors to defect families; see docs/clustering.md."""

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.families: dict[str, Family] = {}
        self.next_family = 1
        self.seen = 0
        self.lam = math.inf  # new-family distance threshold (input space, scaled)
        self.soft_lam = math.inf  # ~q95 of member distances: beyond it a vector is "suspect"
        self.mid_lam = math.inf  # median member distance (reported, persisted)
        self.suspects: deque[bool] = deque(maxlen=self.config.suspect_window)
        self.last_refit = 0
        self.reducer: Reducer | None = None
        self.next_refit = self.config.warmup
        self.refits = 0
        self.recent: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._dim = self.config.dim
        self._protos: Protos | None = None
        self._pz = np.zeros((0, 0), np.float32)  # prototypes in reduced space
        self._z = np.zeros(0, np.float32)  # the last vector nearest() reduced
        self._window: Window | None = None
        if self._dim is not None:
            self._init_buffers(self._dim)

    def _init_buffers(self, dim: int) -> None:
        self._dim = dim
        self._protos = Protos.empty(dim)
        self._window = Window.empty(self.config.window, dim)

    # ---- queries ----------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def protos(self) -> Protos:
        assert self._protos is not None, "no vector seen yet"
        return self._protos

    @property
    def window(self) -> Window:
        assert self._window is not None, "no vector seen yet"
        return self._window

    def active(self) -> list[Family]:
        return [f for f in self.families.values() if f.status == "active"]

    def family(self, fid: str) -> Family:
        try:
            return self.families[fid]
        except KeyError:
            raise CurationError(f"unknown family {fid!r}") from None

    def resolve(self, fid: str) -> str:
        """The surviving family of ``fid`` (follows merges)."""
        seen = set()
        while (fam := self.families.get(fid)) is not None and fam.merged_into and fid not in seen:
            seen.add(fid)
            fid = fam.merged_into
        return fid

    def validate(self, x: Any) -> np.ndarray:
        """The vector as float32 (D,), or VectorRejected(wrong_dimension | bad_value)."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 1 or (self._dim is not None and arr.shape[0] != self._dim):
            raise VectorRejected(
                "wrong_dimension", f"shape {arr.shape}, expected ({self._dim or 'D'},)"
            )
        if arr.shape[0] == 0:
            raise VectorRejected("wrong_dimension", "empty vector")
        peak = float(np.abs(arr).max())  # one pass: NaN propagates, inf is beyond the range
        if not peak <= F16_MAX:
            if not np.isfinite(arr).all():
                raise VectorRejected("bad_value", "vector holds NaN or inf")
            raise VectorRejected("bad_value", "vector exceeds the float16 range")
        return arr

    def nearest(self, x: np.ndarray) -> tuple[int, float]:
        """Row of the nearest prototype and its distance.

        Once fitted, the ``NEAREST`` nearest prototypes are found in the reduced (denoised)
        space and the distance is measured to each in the whole scaled input space (the
        smallest wins): a new kind of defect often differs in directions the last PCA never
        saw, which the reduced space would hide, and a small prototype can look near in the
        reduced space while it is far in the input space.
        """
        if self.reducer is None:
            d = np.sqrt(((self.protos.raw - x) ** 2).sum(1))
            j = int(d.argmin())
            return j, float(d[j])
        red = self.reducer
        z = self._z = red.apply(x)
        dz = self._pz - z
        dz = (dz * dz).sum(1)
        near = np.argsort(dz)[:NEAREST] if len(dz) > NEAREST else np.arange(len(dz))
        diff = self.protos.raw[near]  # a copy (fancy indexing): safe to work in place
        np.subtract(x, diff, out=diff)
        if not red.unit_scale:
            diff /= red.scale
        full = (diff * diff).sum(1)
        k = int(full.argmin())
        return int(near[k]), float(np.sqrt(full[k]))

    def predict(self, x: np.ndarray) -> list[str]:
        """Family of each row of ``x`` under the current model (no state change)."""
        return [self.protos.family[self.nearest(v)[0]] for v in np.asarray(x, np.float32)]

    # ---- online assignment ------------------------------------------------------------

    def assign(self, x: Any, ts: float, key: str | None = None) -> Assigned:
        """Give ``x`` a family; open a new one when it is farther than the threshold."""
        if key is not None and key in self.recent:
            fid, dist = self.recent[key]
            return Assigned(fid, dist, False, duplicate=True)
        vec = self.validate(x)
        # the window keeps float16: store the vector as it travelled when it came as float16
        as_sent = x if isinstance(x, np.ndarray) and x.dtype == np.float16 else vec
        if self._dim is None:
            self._init_buffers(int(vec.shape[0]))
        changes: list[Change] = []
        if len(self.protos.ids) == 0:
            row, dist, is_new = self._open(vec, ts, changes), 0.0, True
        else:
            row, dist = self.nearest(vec)
            is_new = dist > self.lam
            if is_new:
                row, dist = self._open(vec, ts, changes), 0.0
            else:
                self._absorb(row, vec)
        fid = self.protos.family[row]
        fam = self.families[fid]
        fam.size += 1
        fam.last_seen = max(fam.last_seen, ts)
        self.window.add(as_sent, int(self.protos.ids[row]))
        self.seen += 1
        self.suspects.append(dist > self.soft_lam)
        if self.seen >= self.next_refit or self._pressure():
            changes += self.refit(ts)
        if key is not None:
            self._remember(key, fid, dist)
        return Assigned(fid, dist, is_new, tuple(changes))

    def _remember(self, key: str, fid: str, dist: float) -> None:
        self.recent[key] = (fid, dist)
        while len(self.recent) > self.config.dedup_keys:
            self.recent.popitem(last=False)

    def _new_family(self, ts: float) -> Family:
        fid = f"F{self.next_family:04d}"
        self.next_family += 1
        fam = Family(fid, fid, first_seen=ts, last_seen=ts)
        self.families[fid] = fam
        return fam

    def _open(self, vec: np.ndarray, ts: float, changes: list[Change]) -> int:
        fam = self._new_family(ts)
        self.protos.add(vec, 1, fam.id)
        self._sync_pz()
        changes.append(Change(fam.id, "created", ts, detail="far from every family"))
        return len(self.protos.ids) - 1

    def _absorb(self, row: int, vec: np.ndarray) -> None:
        p = self.protos
        p.counts[row] += 1
        rate = 1.0 / min(int(p.counts[row]), self.config.centroid_memory)
        p.raw[row] += rate * (vec - p.raw[row])
        if self.reducer is not None:  # the reduction is affine: move the reduced centroid alike
            self._pz[row] += rate * (self._z - self._pz[row])

    def _sync_pz(self) -> None:
        if self.reducer is not None:
            self._pz = self.reducer.apply(self.protos.raw)

    # ---- refit (implemented in services.clustering.refit) -----------------------------

    def _pressure(self) -> bool:
        """Many recent vectors far out: a new family may be forming; refit early."""
        cfg = self.config
        return (
            sum(self.suspects) >= cfg.suspect_trigger
            and self.seen - self.last_refit >= cfg.suspect_window // 2
        )

    def refit(self, ts: float) -> list[Change]:
        """Refit reduction, threshold and prototypes on the window; ids kept by matching."""
        from services.clustering.refit import refit

        changes = refit(self, ts)
        self.refits += 1
        self.last_refit = self.seen
        self.suspects.clear()
        cfg = self.config
        self.next_refit = self.seen + min(max(self.seen // 4, cfg.warmup), cfg.refit_every)
        return changes

    def set_model(
        self, reducer: Reducer, lam: float, soft_lam: float, mid_lam: float = math.inf
    ) -> None:
        self.reducer, self.lam, self.soft_lam, self.mid_lam = reducer, lam, soft_lam, mid_lam
        self._sync_pz()

    # ---- curation -----------------------------------------------------------------------

    def curate(self, op: str, actor: str, ts: float, **args: Any) -> list[Change]:
        """Apply an operator's ``rename`` / ``merge`` / ``split``; return the recorded changes."""
        if op not in CURATION_OPS:
            raise CurationError(f"unknown operation {op!r}; choose one of {CURATION_OPS}")
        if not actor:
            raise CurationError("every curation needs an actor")
        try:
            method = getattr(self, op)
            changes: list[Change] = method(actor=actor, ts=ts, **args)
        except TypeError as exc:
            raise CurationError(f"{op}: {exc}") from None
        return changes

    def rename(self, family: str, name: str, *, actor: str, ts: float) -> list[Change]:
        fam = self._active(family)
        name = name.strip()
        if not 1 <= len(name) <= 200 or not name.isprintable():
            raise CurationError("a family name is 1-200 printable characters")
        old, fam.name, fam.pinned = fam.name, name, True
        return [Change(family, "renamed", ts, actor, f"{old!r} -> {name!r}")]

    def merge(self, sources: list[str], into: str, *, actor: str, ts: float) -> list[Change]:
        """Fold ``sources`` into ``into``: their prototypes and members now count for it."""
        target = self._active(into)
        srcs = [self._active(s) for s in dict.fromkeys(sources) if s != into]
        if not srcs:
            raise CurationError("merge needs at least one source family other than the target")
        changes = [self.fold(src.id, into, ts, actor) for src in srcs]
        target.pinned = True
        names = ", ".join(s.id for s in srcs)
        changes.append(Change(into, "merged", ts, actor, f"absorbed {names}"))
        return changes

    def fold(self, source: str, into: str, ts: float, actor: str | None) -> Change:
        """Move ``source``'s prototypes and size to ``into``; mark it merged (id retired)."""
        src, target = self.families[source], self.families[into]
        p = self.protos
        p.family = [into if f == source else f for f in p.family]
        target.size += src.size
        target.first_seen = min(target.first_seen, src.first_seen)
        target.last_seen = max(target.last_seen, src.last_seen)
        src.status, src.merged_into, src.size = "merged", into, 0
        return Change(source, "merged", ts, actor, f"merged into {into}")

    def split(self, family: str, *, actor: str, ts: float, parts: int = 2) -> list[Change]:
        """Split ``family`` by K-Means of its recent members; the largest part keeps the id."""
        fam = self._active(family)
        win, p = self.window, self.protos
        rows = win.rows()
        fams = np.array([p.family[p.row(int(q))] for q in win.protos[rows]], dtype=object)
        rows = rows[fams == family]
        if not 2 <= parts <= 10 or len(rows) < parts * self.config.min_members:
            raise CurationError(
                f"{family} has {len(rows)} recent members; splitting it in "
                f"{parts} needs {parts * self.config.min_members}"
            )
        x = win.vectors[rows].astype(np.float32)
        z = self.reducer.apply(x) if self.reducer is not None else x
        labels = KMeans(parts, n_init=5, random_state=self.config.seed).fit_predict(z)
        order = np.argsort(-np.bincount(labels, minlength=parts))
        p.keep(np.array([f != family for f in p.family], dtype=bool))
        changes, total = [], 0
        for rank, lab in enumerate(order):
            members = labels == lab
            target = fam if rank == 0 else self._new_family(ts)
            pid = p.add(x[members].mean(0), int(members.sum()), target.id)
            win.protos[rows[members]] = pid
            if rank:
                target.size = int(members.sum())
                total += target.size
                target.first_seen = fam.first_seen
                changes.append(Change(target.id, "split", ts, actor, f"split from {family}"))
        fam.size = max(fam.size - total, 0)
        for c in changes:
            self.families[c.family].pinned = True
        fam.pinned = True
        self._sync_pz()
        made = ", ".join(c.family for c in changes)
        return [Change(family, "split", ts, actor, f"split into {family}, {made}"), *changes]

    def _active(self, fid: str) -> Family:
        fam = self.family(fid)
        if fam.status != "active":
            raise CurationError(f"{fid} was merged into {fam.merged_into}")
        return fam

    def snapshot(self, fid: str) -> Family:
        return replace(self.family(fid))
