"""What operators taught one camera, as pure functions over novelty maps (no I/O, no locks).

A camera's novelty score is the largest value of its novelty map (the variation model's
anomaly map pooled to cells, or the per-patch distances to the nominal bank). A
``not_a_defect`` on a frame raises the camera's *allowance* map to that frame's map in every
cell: the frame's departure is normal here, so the frame and frames like it score
``max(map - allowance)`` from then on, while a departure anywhere else scores as before.
The allowance of a cell never exceeds ``cap`` (a multiple of the camera's novelty
threshold), so one mark cannot make a whole region blind.

The novelty threshold is then re-derived from the camera's recent good frames: those judged
``ok`` as scored, and the taught ones each scored against the allowance of the *other* taught
frames (how the next frame like it will score); their ``quantile`` times ``margin``, never
below the configured threshold and never above ``max_raise`` times it.

``confirmed`` defects are kept as maps too; the recall guard re-scores them under a proposed
state, and a change that loses more than ``Guard.max_recall_drop`` of them is held for a
second operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from broker.teach_messages import MAX_CONFIRMED, MAX_MAP_SIDE, TeachTarget

Arr = np.ndarray


@dataclass(frozen=True)
class Guard:
    """Bounds of teaching (docs/model.md, "Teaching")."""

    cap: float = 4.0  # allowance <= cap x the camera's configured novelty threshold
    quantile: float = 0.99  # of recent good frames' scores
    margin: float = 1.05
    max_raise: float = 1.5  # taught threshold <= max_raise x the configured one
    max_recall_drop: float = 0.05  # recall on confirmed defects a change may lose unheld


@dataclass(frozen=True)
class Taught:
    """One camera's taught state; version 0 is the untaught camera."""

    version: int = 0
    novelty: float | None = None  # taught novelty threshold; None: the configured one
    allowance: Arr | None = None  # [h, w] float32 >= 0
    confirmed: Arr | None = None  # [K, h, w] float16: maps of confirmed defects
    confirmed_keys: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int] | None:
        for a in (self.allowance, self.confirmed):
            if a is not None:
                return (int(a.shape[-2]), int(a.shape[-1]))
        return None

    def score(self, nmap: Arr) -> float:
        """The frame's novelty under this state: ``max(map - allowance)``."""
        m = np.asarray(nmap, np.float32)
        if self.allowance is None or self.allowance.shape != m.shape:
            return float(m.max())
        return float((m - self.allowance).max())

    def threshold(self, configured: float) -> float:
        return configured if self.novelty is None else self.novelty

    def recall(self, configured: float) -> float | None:
        """Share of the confirmed defects still scored at or above the threshold."""
        if self.confirmed is None or not len(self.confirmed):
            return None
        th = self.threshold(configured)
        hits = [self.score(m.astype(np.float32)) >= th for m in self.confirmed]
        return float(np.mean(hits))

    # ---- the wire form (exact: a rollback restores these bytes) ---------------------------
    def allowance_bytes(self) -> bytes:
        return b"" if self.allowance is None else self.allowance.astype("<f4").tobytes()

    def confirmed_bytes(self) -> bytes:
        return b"" if self.confirmed is None else self.confirmed.astype("<f2").tobytes()

    def target(self) -> TeachTarget:
        return TeachTarget(
            version=self.version,
            map_shape=self.shape or (1, 1),
            novelty_threshold=self.novelty,
            allowance=self.allowance_bytes(),
            confirmed=self.confirmed_bytes(),
            confirmed_keys=self.confirmed_keys,
        )

    @classmethod
    def of(cls, t: TeachTarget) -> Taught:
        """The state a (validated) ``TeachTarget`` describes."""
        h, w = t.map_shape
        allowance = np.frombuffer(t.allowance, "<f4").reshape(h, w).copy() if t.allowance else None
        confirmed = (
            np.frombuffer(t.confirmed, "<f2").reshape(-1, h, w).copy() if t.confirmed else None
        )
        return cls(t.version, t.novelty_threshold, allowance, confirmed, t.confirmed_keys)


class TeachError(ValueError):
    """A feedback that cannot be applied (``reason`` is a machine code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def pool(amap: Arr, cells: int) -> Arr:
    """Max-pool a [H, W] map to at most ``cells`` x ``cells`` (the map itself when smaller)."""
    a = np.asarray(amap, np.float32)
    if a.ndim != 2:
        raise ValueError(f"a novelty map is 2-D, got shape {a.shape}")
    cells = max(1, min(cells, MAX_MAP_SIDE))
    for axis in (0, 1):
        n = a.shape[axis]
        if n > cells:
            edges = (np.arange(cells) * n) // cells
            a = np.maximum.reduceat(a, edges, axis=axis)
    return np.ascontiguousarray(a)


def _check_shape(state: Taught, nmap: Arr) -> None:
    shape = state.shape
    if shape is not None and tuple(nmap.shape) != shape:
        raise TeachError("shape_mismatch", f"map {nmap.shape} vs the camera's {shape}")


def absorb(state: Taught, nmap: Arr, configured: float, guard: Guard) -> Taught:
    """``state`` with ``nmap`` taught as normal (threshold not yet re-derived)."""
    m = np.asarray(nmap, np.float32)
    _check_shape(state, m)
    if not np.isfinite(m).all():
        raise TeachError("bad_value", "the frame's novelty map is not finite")
    base = state.allowance if state.allowance is not None else np.zeros_like(m)
    allowance = np.maximum(base, np.clip(m, 0.0, guard.cap * configured)).astype(np.float32)
    return replace(state, version=state.version + 1, allowance=allowance)


def held_out_scores(taught_maps: Sequence[Arr], cap: float) -> list[float]:
    """Each taught frame's score against the allowance the *other* taught frames make: how a
    new frame like it would score (leave-one-out; its own mark would hide it)."""
    if not taught_maps:
        return []
    raw = np.stack([np.asarray(m, np.float32) for m in taught_maps])
    if len(raw) == 1:
        return [float(raw[0].max())]
    maps = np.clip(raw, 0.0, cap)
    order = np.argsort(maps, axis=0)
    top = np.take_along_axis(maps, order[-1:], 0)[0]
    second = np.take_along_axis(maps, order[-2:-1], 0)[0]
    return [float((raw[i] - np.where(order[-1] == i, second, top)).max()) for i in range(len(raw))]


def derive_threshold(
    state: Taught,
    good_scores: Sequence[float],
    taught_maps: Sequence[Arr],
    configured: float,
    guard: Guard,
) -> float | None:
    """The threshold recent good frames need (None: the configured one).

    ``good_scores`` (frames judged ok) count as they were scored; ``taught_maps`` with their
    held-out score (:func:`held_out_scores`). Their ``quantile`` times ``margin``, within
    ``[configured, max_raise x configured]``.
    """
    scores = [float(s) for s in good_scores if np.isfinite(s)]
    scores += held_out_scores(taught_maps, guard.cap * configured)
    if not scores:
        return None
    wanted = float(np.quantile(np.asarray(scores), guard.quantile)) * guard.margin
    th = min(max(wanted, configured), guard.max_raise * configured)
    return None if th == configured else th


def confirm(state: Taught, key: str, nmap: Arr) -> Taught:
    """``state`` keeping one more confirmed defect (the oldest goes beyond MAX_CONFIRMED)."""
    m = np.asarray(nmap, np.float32)
    _check_shape(state, m)
    if key in state.confirmed_keys:
        return state
    maps = [m.astype(np.float16)]
    if state.confirmed is not None:
        maps = list(state.confirmed) + maps
    keys = (*state.confirmed_keys, key)
    maps, keys = maps[-MAX_CONFIRMED:], keys[-MAX_CONFIRMED:]
    return replace(state, version=state.version + 1, confirmed=np.stack(maps), confirmed_keys=keys)
