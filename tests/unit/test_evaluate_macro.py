"""Held-out figures per part type (camera) and their macro average (edge/model/evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model import evaluate as ev

pytestmark = pytest.mark.unit


def test_per_part_and_macro_figures() -> None:
    labels = ["good", "good", "scratch", "missing"] * 2
    parts = ["a"] * 4 + ["b"] * 4
    # part a: perfect; part b: the scratch scores below one good part
    novelty = np.array([1.0, 2.0, 5.0, 6.0, 1.0, 4.0, 3.0, 6.0])
    res = ev.quality_scores(np.zeros(8), novelty, labels, parts, (0.5, 3.5), None)
    a, b = res["per_part"]["a"], res["per_part"]["b"]
    assert a["image_auroc"] == 1.0 and a["family_auroc"] == {"missing": 1.0, "scratch": 1.0}
    assert b["family_auroc"]["scratch"] == 0.5 and b["good_fpr"] == 0.5
    assert res["macro"]["image_auroc"] == pytest.approx((1.0 + b["image_auroc"]) / 2)
    assert res["macro"]["family_auroc"]["scratch"] == 0.75
    assert res["macro"]["min_family_auroc"] == 0.75
    assert res["good_fpr"] == 0.25 and res["recall"] == 0.75


def test_thresholds_give_the_novelty_score_the_whole_budget_without_the_head() -> None:
    good = np.linspace(0.0, 1.0, 1001)
    with_head = ev.choose_thresholds(good, good, 0.02)
    alone = ev.choose_thresholds(good, good, 0.02, use_head=False)
    assert with_head[1] > alone[1]
    assert alone[1] == pytest.approx(0.98, abs=2e-3) and alone[0] == 0.5
