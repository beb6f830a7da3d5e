"""Per-camera thresholds changed at runtime; every change becomes a ThresholdChange."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.messages import ThresholdControl
from broker.topics import StreamRef
from edge.scoring import Thresholds
from edge.thresholds import ThresholdBook, ThresholdError

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("s", "l", "st", "c1")
OTHER = StreamRef.camera("s", "l", "st", "c2")


def ctl(**kw: object) -> ThresholdControl:
    base: dict[str, object] = {"stream": CAM.key, "actor": "op1", "request_id": "r1"}
    base.update(kw)
    return ThresholdControl.model_validate(base)


def test_defaults_until_changed_and_only_for_that_camera() -> None:
    book = ThresholdBook(Thresholds(0.5, 2.0), "W1")
    change = book.apply(CAM, ctl(defect_threshold=0.8, reason="too many alarms"))
    assert book.get(CAM.key) == Thresholds(0.8, 2.0)
    assert book.get(OTHER.key) == Thresholds(0.5, 2.0)
    assert (change.previous_defect_threshold, change.defect_threshold) == (0.5, 0.8)
    assert change.novelty_threshold == 2.0
    assert change.worker == "W1" and change.actor == "op1" and change.key.endswith("r1")


def test_short_stream_form_accepted() -> None:
    book = ThresholdBook(Thresholds(0.5, 2.0), "W1")
    book.apply(CAM, ctl(stream="s/l/st/c1", novelty_threshold=3.0))
    assert book.get(CAM.key).novelty == 3.0


@pytest.mark.parametrize(
    "kw,reason",
    [
        ({"defect_threshold": 1.5}, "bad_value"),
        ({"novelty_threshold": -1.0}, "bad_value"),
        ({}, "bad_schema"),
        ({"stream": OTHER.key, "defect_threshold": 0.4}, "topic_mismatch"),
    ],
)
def test_bad_requests_rejected_and_nothing_changes(kw: dict, reason: str) -> None:
    book = ThresholdBook(Thresholds(0.5, 2.0), "W1")
    with pytest.raises(ThresholdError) as err:
        book.apply(CAM, ctl(**kw))
    assert err.value.reason == reason
    assert book.get(CAM.key) == Thresholds(0.5, 2.0)


def test_thresholds_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "W1.thresholds.json"
    book = ThresholdBook(Thresholds(0.5, 2.0), "W1", path)
    book.apply(CAM, ctl(defect_threshold=0.7, novelty_threshold=2.5))
    again = ThresholdBook(Thresholds(0.5, 2.0), "W1", path)
    assert again.get(CAM.key) == Thresholds(0.7, 2.5)
    assert again.get(OTHER.key) == Thresholds(0.5, 2.0)


def test_corrupt_thresholds_file_falls_back_to_defaults(tmp_path: Path) -> None:
    path = tmp_path / "W1.thresholds.json"
    path.write_text('{"s/l/st/camera/c1": {"defect": "x"}}')
    assert ThresholdBook(Thresholds(0.5, 2.0), "W1", path).get(CAM.key) == Thresholds(0.5, 2.0)
