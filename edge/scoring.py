"""Verdicts from the defect head and the novelty score against per-camera thresholds (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from broker.messages import Severity, VerdictKind

GOOD = "good"
UNKNOWN = "unknown"  # predicted class of an anomaly: no known defect type explains it


@dataclass(frozen=True)
class Thresholds:
    """Operating point of one camera: defect probability and novelty score thresholds."""

    defect: float
    novelty: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.defect) and math.isfinite(self.novelty)):
            raise ValueError("thresholds must be finite")
        if not 0.0 < self.defect < 1.0:
            raise ValueError(f"defect threshold {self.defect} must be in (0, 1)")
        if self.novelty <= 0.0:
            raise ValueError(f"novelty threshold {self.novelty} must be positive")


@dataclass(frozen=True)
class Decision:
    verdict: VerdictKind
    defect_score: float
    novelty_score: float
    predicted_class: str
    severity: Severity | None  # None for "ok"


def predicted_class(
    class_scores: np.ndarray, class_names: Sequence[str], verdict: VerdictKind
) -> str:
    """``good`` for ok, the best non-good class for a defect, ``unknown`` for an anomaly."""
    if verdict == "ok":
        return GOOD
    if verdict == "anomaly":
        return UNKNOWN
    scores = np.asarray(class_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(class_names) or not len(scores):
        return UNKNOWN
    order = np.argsort(-scores, kind="stable")
    for i in order:
        if class_names[int(i)] != GOOD:
            return class_names[int(i)]
    return UNKNOWN


def severity(
    verdict: VerdictKind, defect_score: float, novelty_score: float, th: Thresholds
) -> Severity | None:
    """Defects by head probability, anomalies by how far past the novelty threshold."""
    if verdict == "defect":
        if defect_score >= 0.99:
            return "critical"
        if defect_score >= 0.9:
            return "major"
        return "minor"
    if verdict == "anomaly":
        ratio = novelty_score / th.novelty
        if ratio >= 2.0:
            return "major"
        if ratio >= 1.25:
            return "minor"
        return "warning"
    return None


def decide(
    defect_score: float,
    novelty_score: float,
    class_scores: np.ndarray,
    class_names: Sequence[str],
    th: Thresholds,
) -> Decision:
    """One frame: ``defect`` when the head says so, else ``anomaly`` when novel, else ``ok``.

    Non-finite scores never pass as ``ok``: a NaN defect score counts as a defect and a NaN
    novelty as an anomaly (the model or bank is broken; an operator must look).
    """
    d = float(defect_score)
    n = float(novelty_score)
    verdict: VerdictKind
    if not math.isfinite(d) or d >= th.defect:
        verdict = "defect"
    elif not math.isfinite(n) or n >= th.novelty:
        verdict = "anomaly"
    else:
        verdict = "ok"
    d = d if math.isfinite(d) else 1.0
    n = n if math.isfinite(n) else th.novelty * 1e6
    return Decision(
        verdict,
        d,
        n,
        predicted_class(class_scores, class_names, verdict),
        severity(verdict, d, n, th),
    )


def decide_batch(
    defect_scores: np.ndarray,
    novelty_scores: np.ndarray,
    class_scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[Thresholds],
) -> list[Decision]:
    """:func:`decide` for each row of a batch; ``thresholds`` is one per row (its camera)."""
    d = np.asarray(defect_scores).reshape(-1)
    n = np.asarray(novelty_scores).reshape(-1)
    if not len(d) == len(n) == len(thresholds) == len(class_scores):
        raise ValueError("batch outputs and thresholds differ in length")
    return [
        decide(float(d[i]), float(n[i]), class_scores[i], class_names, thresholds[i])
        for i in range(len(d))
    ]
