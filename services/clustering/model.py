"""Data types of the clustering core: settings, families, changes, prototypes, the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.clustering import reduce

Event = Literal["created", "grew", "renamed", "merged", "split", "refit"]
CURATION_OPS = ("rename", "merge", "split")


class VectorRejected(ValueError):
    """A vector the core refuses; ``reason`` is ``wrong_dimension`` or ``bad_value``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CurationError(ValueError):
    """An operator curation request that cannot be applied (unknown family, too few members)."""


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of the core (docs/clustering.md explains each and how it was chosen)."""

    dim: int | None = None  # expected vector length; None: taken from the first vector
    n_components: int = 32  # PCA dimensions
    standardize: bool = False  # per-dimension scaling before PCA (off: centring only)
    threshold_factor: float = 2.0  # new family beyond q50 + factor × (q95 - q50) of distances
    min_margin: float = 0.10  # ... and at least (1 + margin) × the median member distance
    method: str = "ward"  # batch clusterer used at refits (reduce.METHODS)
    max_k: int = 12  # most clusters a refit looks for in the window
    window: int = 1000  # recent vectors kept for refits and splits
    warmup: int = 8  # first fit after this many vectors; then every seen//4, up to refit_every
    refit_every: int = 2000  # vectors between scheduled refits once warmed up
    min_members: int = 3  # smallest refit cluster that may found a family
    suspect_window: int = 40  # recent assignments watched for novelty pressure ...
    suspect_trigger: int = 6  # ... an early refit when this many lay beyond the soft threshold
    centroid_memory: int = 200  # running-mean horizon of a prototype (lets centroids drift)
    max_prototypes: int = 512
    dedup_keys: int = 4096  # recent frame keys remembered, so a redelivery is not counted twice
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in reduce.METHODS:
            raise ValueError(f"method must be one of {reduce.METHODS}, not {self.method!r}")
        if self.warmup < 2 or self.refit_every < self.warmup or self.window < self.warmup:
            raise ValueError("need 2 <= warmup <= refit_every and warmup <= window")


@dataclass
class Family:
    id: str
    name: str
    size: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    status: Literal["active", "merged"] = "active"
    merged_into: str | None = None
    pinned: bool = False  # touched by an operator: refits never merge it away


@dataclass(frozen=True)
class Change:
    """One recorded change of a family (``actor`` None for the core's own decisions)."""

    family: str
    event: Event
    ts: float
    actor: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Assigned:
    """The core's decision for one vector, plus the family changes it caused."""

    family: str
    distance: float
    is_new: bool
    changes: tuple[Change, ...] = ()
    duplicate: bool = False


@dataclass
class Window:
    """Ring buffer of recent vectors (float16, as they travel) and their prototype ids."""

    vectors: np.ndarray
    protos: np.ndarray
    count: int = 0
    head: int = 0

    @classmethod
    def empty(cls, size: int, dim: int) -> Window:
        return cls(np.zeros((size, dim), np.float16), np.full(size, -1, np.int64))

    def add(self, x: np.ndarray, proto: int) -> None:
        self.vectors[self.head] = x
        self.protos[self.head] = proto
        self.head = (self.head + 1) % len(self.protos)
        self.count = min(self.count + 1, len(self.protos))

    def rows(self) -> np.ndarray:
        """Indices of the filled rows, oldest first."""
        n, size = self.count, len(self.protos)
        return (np.arange(n) + (self.head - n)) % size


@dataclass
class Protos:
    """Prototypes (sub-centroids); a family owns one or more. Ids grow and are never reused."""

    ids: np.ndarray  # (m,) int64, increasing
    raw: np.ndarray  # (m, D) float32 centroids in input space
    counts: np.ndarray  # (m,) int64
    family: list[str] = field(default_factory=list)
    next_id: int = 0

    @classmethod
    def empty(cls, dim: int) -> Protos:
        return cls(np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.int64))

    def add(self, centroid: np.ndarray, count: int, family: str) -> int:
        pid = self.next_id
        self.next_id += 1
        self.ids = np.append(self.ids, pid)
        self.raw = np.vstack([self.raw, centroid[None, :].astype(np.float32)])
        self.counts = np.append(self.counts, count)
        self.family.append(family)
        return pid

    def row(self, pid: int) -> int:
        return int(np.searchsorted(self.ids, pid))

    def keep(self, mask: np.ndarray) -> None:
        self.ids, self.raw, self.counts = self.ids[mask], self.raw[mask], self.counts[mask]
        self.family = [f for f, k in zip(self.family, mask, strict=True) if k]
