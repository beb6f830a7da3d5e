"""bench/clustering.py: the frame rate is the edge worker's measured one, or a labelled
assumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import clustering as bench

pytestmark = pytest.mark.unit


def _pipeline(tmp_path: Path, results: dict[str, float]) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"results": results}))
    return path


def test_frame_rate_is_the_workers_measured_rate(tmp_path: Path) -> None:
    path = _pipeline(
        tmp_path,
        {"raw_images_per_s": 400.0, "inproc_frames_per_s": 120.0, "mqtt_frames_per_s": 90.0},
    )
    rate = bench.frame_rate(path)
    assert rate["frame_rate_fps"] == 120.0  # the worker's, never the raw model rate
    assert rate["frame_rate_measured"] is True
    assert "inproc_frames_per_s" in rate["frame_rate_source"]
    assert rate["pipeline_rates_fps"]["raw_images_per_s"] == 400.0


def test_frame_rate_assumption_is_labelled(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "pipeline.json"
    only_raw = _pipeline(tmp_path, {"raw_images_per_s": 400.0})
    for path in (missing, only_raw):
        rate = bench.frame_rate(path)
        assert rate["frame_rate_fps"] == bench.DEFAULT_FPS
        assert rate["frame_rate_measured"] is False
        assert rate["frame_rate_source"].startswith("ASSUMED")
