"""`linewatch dispatch plan`: input/output JSON, errors, and the four-server / ten-task example."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.dispatcher.cli import main
from services.dispatcher.examples import FOUR_BY_TEN, FOUR_BY_TEN_OPTIMUM

pytestmark = pytest.mark.unit


def _run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, doc: Any, *extra: str
) -> tuple[int, dict[str, Any] | None, str]:
    path = tmp_path / "instance.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    rc = main(["plan", "--input", str(path), "--json", *extra])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def _fits(doc: dict[str, Any], workers: tuple[dict[str, Any], ...], target: float) -> bool:
    """Depth-first search: can every stream be packed on ``workers`` (labels, capacity)?"""
    streams = sorted(doc["streams"], key=lambda s: -s["fps"])
    room = [target * w["capacity_fps"] for w in workers]

    def ok(s: dict[str, Any], w: dict[str, Any]) -> bool:
        return all(w.get("labels", {}).get(k) == v for k, v in s.get("requires", {}).items())

    def place(i: int) -> bool:
        if i == len(streams):
            return True
        for k, w in enumerate(workers):
            if ok(streams[i], w) and room[k] + 1e-9 >= streams[i]["fps"]:
                room[k] -= streams[i]["fps"]
                if place(i + 1):
                    return True
                room[k] += streams[i]["fps"]
        return False

    return place(0)


def _brute_force_cost(doc: dict[str, Any], target: float = 0.8) -> float:
    best = float("inf")
    ws = doc["workers"]
    for r in range(1, len(ws) + 1):
        for subset in itertools.combinations(ws, r):
            cost = sum(w["cost_per_hour"] for w in subset)
            if cost < best and _fits(doc, subset, target):
                best = cost
    return best


def test_four_servers_ten_tasks_solved_to_optimum(capsys: Any, tmp_path: Path) -> None:
    rc, out, _ = _run(capsys, tmp_path, FOUR_BY_TEN)
    assert rc == 0 and out is not None
    assert set(out) == {"assignment", "cost", "solve_ms", "optimal", "unplaced"}
    assert out["optimal"] is True and out["unplaced"] == []
    assert out["cost"] == pytest.approx(FOUR_BY_TEN_OPTIMUM)
    assert _brute_force_cost(FOUR_BY_TEN) == pytest.approx(FOUR_BY_TEN_OPTIMUM)
    assert isinstance(out["solve_ms"], float) and out["solve_ms"] >= 0
    assert set(out["assignment"]) == {s["id"] for s in FOUR_BY_TEN["streams"]}
    workers = {w["id"]: w for w in FOUR_BY_TEN["workers"]}
    load: dict[str, float] = {}
    for s in FOUR_BY_TEN["streams"]:
        w = workers[out["assignment"][s["id"]]]
        assert all(w["labels"].get(k) == v for k, v in s.get("requires", {}).items())
        load[w["id"]] = load.get(w["id"], 0.0) + s["fps"] / w["capacity_fps"]
    assert all(v <= 0.8 + 1e-9 for v in load.values())
    assert sum(workers[w]["cost_per_hour"] for w in load) == pytest.approx(out["cost"])


def test_budgeted_plan_and_current_with_penalty(capsys: Any, tmp_path: Path) -> None:
    doc = {
        "workers": [
            {"id": "a", "capacity_fps": 100, "cost_per_hour": 1.0},
            {"id": "b", "capacity_fps": 100, "cost_per_hour": 1.5},
        ],
        "streams": [{"id": "x", "fps": 30}, {"id": "y", "fps": 30}],
        "current": {"x": "b", "y": "b"},
        "target_utilisation": 0.7,
        "migration_penalty": 0.4,
    }
    rc, out, _ = _run(capsys, tmp_path, doc, "--budget-ms", "200")
    assert rc == 0 and out is not None
    assert out["assignment"] == {"x": "b", "y": "b"} and out["cost"] == pytest.approx(1.5)
    rc, out, _ = _run(capsys, tmp_path, doc, "--migration-penalty", "0.1")
    assert out is not None and out["assignment"] == {"x": "a", "y": "a"}
    assert out["cost"] == pytest.approx(1.0 + 0.2)


def test_infeasible_streams_are_listed_unplaced(capsys: Any, tmp_path: Path) -> None:
    doc = {
        "workers": [{"id": "a", "capacity_fps": 10, "cost_per_hour": 1.0, "labels": {"gpu": True}}],
        "streams": [
            {"id": "big", "fps": 50},
            {"id": "small", "fps": 5, "requires": {"gpu": "true"}},
        ],
    }
    rc, out, _ = _run(capsys, tmp_path, doc)
    assert rc == 0 and out is not None
    assert out["unplaced"] == ["big"] and out["assignment"] == {"small": "a"}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "bad input"),
        ('{"workers": [], "streams": [{"id": "a", "fps": NaN}]}', "NaN"),
        (
            {"workers": [{"id": "a", "capacity_fps": -1, "cost_per_hour": 1}], "streams": []},
            "capacity_fps",
        ),
        ({"workers": [], "streams": [{"id": "a"}]}, "fps"),
        ({"workers": [], "streams": [{"id": "a", "fps": 1}, {"id": "a", "fps": 2}]}, "duplicate"),
        ({"workers": {}, "streams": []}, "workers"),
        ({"workers": [], "streams": [], "target_utilisation": 1.5}, "target_utilisation"),
    ],
)
def test_bad_input_is_a_clear_error(capsys: Any, tmp_path: Path, doc: Any, needle: str) -> None:
    rc, _, err = _run(capsys, tmp_path, doc)
    assert rc == 2 and needle in err


def test_missing_file(capsys: Any, tmp_path: Path) -> None:
    assert main(["plan", "--input", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_text_output_and_console_script(tmp_path: Path) -> None:
    path = tmp_path / "example.json"
    path.write_text(json.dumps(FOUR_BY_TEN))
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "dispatch", "plan", "--input", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cost 4.8000  (optimal")
