"""Offline evaluation: stream labelled vectors through the core; ARI, purity, speed."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from services.clustering.alerts import AlertConfig, AlertTracker
from services.clustering.core import ClusterCore, CoreConfig


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray  # (n, D) float32, in stream order
    y: np.ndarray  # (n,) true family labels
    note: str = ""


def purity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of vectors whose family's majority true label is their own."""
    total = 0
    for fam in set(y_pred.tolist()):
        total += Counter(y_true[y_pred == fam].tolist()).most_common(1)[0][1]
    return total / max(len(y_true), 1)


def iris(seed: int = 0, shuffle: bool = True) -> Dataset:
    """The Iris data shipped with scikit-learn, in a seeded random order (or file order)."""
    from sklearn.datasets import load_iris

    data = load_iris()
    order = np.random.default_rng(seed).permutation(150) if shuffle else np.arange(150)
    x, y = data.data.astype(np.float32)[order], data.target[order]
    return Dataset("iris", x, y, "shuffled" if shuffle else "file order")


def gaussian_families(
    n: int = 600, dim: int = 2048, families: int = 5, late: int = 1, seed: int = 0
) -> Dataset:
    """Synthetic anomaly embeddings: non-negative ResNet-like vectors around a shared nominal
    mean; each family moves a random subset of features; ``late`` families start mid-stream.

    Families overlap: a family shifts ~15 % of the dimensions by about one within-family
    standard deviation each, and shares a low-rank nuisance (lighting, pose) with the others.
    """
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.25, dim).astype(np.float32)
    nuisance = rng.normal(0, 1, (8, dim)).astype(np.float32) * 0.08
    shifts = np.zeros((families, dim), np.float32)
    for f in range(families):
        idx = rng.choice(dim, dim * 15 // 100, replace=False)
        shifts[f, idx] = rng.normal(0, 0.45, idx.size)
    start = np.zeros(families, dtype=int)
    start[families - late :] = n // 3
    y = np.empty(n, dtype=np.int64)
    for i in range(n):
        allowed = np.flatnonzero(start <= i)
        y[i] = rng.choice(allowed)
    noise = rng.normal(0, 0.3, (n, dim)).astype(np.float32)
    loads = rng.normal(0, 1, (n, 8)).astype(np.float32)
    x = np.maximum(base + shifts[y] + noise * base + loads @ nuisance, 0.0)
    x = x.astype(np.float16).astype(np.float32)
    return Dataset("gaussian", x, y, f"{families} families in {dim}-d, {late} from i={n // 3}")


def load_npz(path: Path) -> Dataset:
    """An ``.npz`` holding ``X`` (n, D) vectors and ``y`` (n,) labels, streamed in file order."""
    with np.load(path, allow_pickle=False) as data:
        if "X" not in data or "y" not in data:
            raise ValueError(f"{path}: needs arrays X and y (has {sorted(data.files)})")
        x, y = np.asarray(data["X"], np.float32), np.asarray(data["y"])
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"{path}: X must be (n, D) and y (n,); got {x.shape} and {y.shape}")
    return Dataset(path.stem, x, y, str(path))


def evaluate(
    ds: Dataset, config: CoreConfig | None = None, alerts: AlertConfig | None = None
) -> dict[str, Any]:
    """Stream ``ds`` through a fresh core and alert tracker; return the figures."""
    core = ClusterCore(config or CoreConfig())
    tracker = AlertTracker(alerts or AlertConfig())
    online: list[str] = []
    alerted: dict[str, int] = {}  # family id -> stream index of its new-family alert
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i, vec in enumerate(ds.x):
        ts = float(i)  # one vector per second of stream time
        got = core.assign(vec, ts)
        online.append(got.family)
        for ev in tracker.observe(got.family, ts):
            if ev.kind == "new_family":
                alerted.setdefault(ev.family, i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    published = np.array(online, dtype=object)
    pred = np.array([core.resolve(f) for f in online], dtype=object)
    final = np.array(core.predict(ds.x), dtype=object)
    y = np.asarray(ds.y)
    return {
        "dataset": ds.name,
        "note": ds.note,
        "n": len(y),
        "dim": int(ds.x.shape[1]),
        "true_families": len(set(y.tolist())),
        "families": len(core.active()),
        "ari": round(float(adjusted_rand_score(y, pred)), 4),
        "purity": round(purity(y, pred), 4),
        "ari_published": round(float(adjusted_rand_score(y, published)), 4),
        "ari_final": round(float(adjusted_rand_score(y, final)), 4),
        "purity_final": round(purity(y, final), 4),
        "refits": core.refits,
        "ids_issued": core.next_family - 1,
        "new_family_alerts": len(alerted),
        "vectors_per_s": round(len(y) / wall, 1) if wall > 0 else None,
        "cpu_us_per_vector": round(cpu / len(y) * 1e6, 1),
        "late_families": _late(y, pred, alerted),
        "config": {
            "method": core.config.method,
            "n_components": core.config.n_components,
            "threshold_factor": core.config.threshold_factor,
            "standardize": core.config.standardize,
        },
    }


def _late(y: np.ndarray, pred: np.ndarray, alerted: dict[str, int]) -> list[dict[str, Any]]:
    """For each true family first seen after the first tenth of the stream: how many of its
    members arrived before an id mostly its own raised a new-family alert."""
    out = []
    for label in sorted(set(y.tolist()), key=str):
        idx = np.flatnonzero(y == label)
        if idx[0] < len(y) // 10:
            continue
        own = {
            f
            for f in set(pred[idx].tolist())
            if Counter(y[pred == f].tolist()).most_common(1)[0][0] == label
        }
        hits = [alerted[f] for f in own if f in alerted]
        when = min(hits) if hits else None
        members = int((idx <= when).sum()) if when is not None else None
        out.append(
            {
                "label": str(label),
                "first_index": int(idx[0]),
                "ids": sorted(own),
                "alert_after_members": members,
            }
        )
    return out
