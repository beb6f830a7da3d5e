"""Verdict decisions from defect probability and novelty score (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.scoring import Thresholds, decide, decide_batch, predicted_class, severity

pytestmark = pytest.mark.unit

NAMES = ["good", "scratch", "dent", "crack"]
TH = Thresholds(defect=0.5, novelty=2.0)


def scores(*vals: float) -> np.ndarray:
    return np.array(vals, dtype=np.float32)


def test_ok_below_both_thresholds() -> None:
    d = decide(0.1, 1.0, scores(0.9, 0.05, 0.03, 0.02), NAMES, TH)
    assert (d.verdict, d.predicted_class, d.severity) == ("ok", "good", None)


def test_defect_from_head_names_best_defect_class() -> None:
    d = decide(0.95, 0.5, scores(0.6, 0.1, 0.25, 0.05), NAMES, TH)
    assert d.verdict == "defect"
    assert d.predicted_class == "dent"  # best class that is not "good"
    assert d.severity == "major"


def test_anomaly_from_novelty_when_head_is_quiet() -> None:
    d = decide(0.2, 2.0, scores(0.9, 0.05, 0.03, 0.02), NAMES, TH)
    assert (d.verdict, d.predicted_class) == ("anomaly", "unknown")
    assert d.severity == "warning"
    assert decide(0.2, 4.5, scores(1, 0, 0, 0), NAMES, TH).severity == "major"
    assert decide(0.2, 2.6, scores(1, 0, 0, 0), NAMES, TH).severity == "minor"


def test_defect_wins_over_anomaly() -> None:
    assert decide(0.7, 9.0, scores(0, 1, 0, 0), NAMES, TH).verdict == "defect"


def test_threshold_is_inclusive() -> None:
    assert decide(0.5, 0.0, scores(0, 1, 0, 0), NAMES, TH).verdict == "defect"


def test_non_finite_scores_never_pass_as_ok() -> None:
    d = decide(float("nan"), 0.0, scores(1, 0, 0, 0), NAMES, TH)
    assert d.verdict == "defect" and np.isfinite(d.defect_score)
    a = decide(0.1, float("inf"), scores(1, 0, 0, 0), NAMES, TH)
    assert a.verdict == "anomaly" and np.isfinite(a.novelty_score)


def test_severity_levels() -> None:
    assert severity("defect", 0.995, 0.0, TH) == "critical"
    assert severity("defect", 0.6, 0.0, TH) == "minor"
    assert severity("ok", 0.0, 0.0, TH) is None


def test_predicted_class_shape_mismatch_is_unknown() -> None:
    assert predicted_class(scores(0.1, 0.9), NAMES, "defect") == "unknown"


def test_batch_uses_each_rows_thresholds() -> None:
    strict = Thresholds(defect=0.1, novelty=0.5)
    out = decide_batch(
        scores(0.3, 0.3), scores(1.0, 1.0), np.eye(4, dtype=np.float32)[:2], NAMES, [TH, strict]
    )
    assert [d.verdict for d in out] == ["ok", "defect"]
    with pytest.raises(ValueError):
        decide_batch(scores(0.3), scores(1.0, 1.0), np.eye(4)[:2], NAMES, [TH])


@pytest.mark.parametrize(
    "defect,novelty", [(0.0, 1.0), (1.0, 1.0), (0.5, 0.0), (float("nan"), 1.0)]
)
def test_bad_thresholds_rejected(defect: float, novelty: float) -> None:
    with pytest.raises(ValueError):
        Thresholds(defect=defect, novelty=novelty)
