"""bench/_common.py: host facts, bars, spread and the pass/fail/inconclusive verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench._common import (
    bar,
    emit,
    host_info,
    make_report,
    parse_cpuinfo,
    spread,
)

pytestmark = pytest.mark.unit

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 avx_vnni ht
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""
HOST = {"cpu": "x", "flags": [], "cores": 2, "load_before": 0.0}


def test_parse_cpuinfo_keeps_model_and_relevant_flags() -> None:
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == [
        "sse4_2",
        "fma",
        "avx",
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
    ]
    assert parse_cpuinfo("") == ("unknown", [])


def test_host_info_on_this_machine(tmp_path: Path) -> None:
    info = host_info()
    assert set(info) == {"cpu", "flags", "cores", "load_before"}
    assert isinstance(info["cores"], int) and info["cores"] >= 1
    assert info["load_before"] >= 0
    assert host_info(tmp_path / "missing")["cpu"] == "unknown"


def test_bar_checks_both_directions() -> None:
    assert bar("fps", 10.0, ">=", 9.0)["ok"] is True
    assert bar("fps", 8.0, ">=", 9.0)["ok"] is False
    assert bar("p95_ms", 30, "<=", 30)["ok"] is True
    assert bar("p95_ms", 31, "<=", 30) == {
        "name": "p95_ms",
        "value": 31.0,
        "op": "<=",
        "bar": 30.0,
        "ok": False,
    }
    with pytest.raises(ValueError):
        bar("x", 1, ">", 0)


def test_spread() -> None:
    assert spread([]) == 0.0
    assert spread([5.0]) == 0.0
    assert spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)


def test_verdict_pass_fail_and_inconclusive() -> None:
    good, bad = bar("a", 2, ">=", 1), bar("b", 0, ">=", 1)
    assert make_report({}, [good], host=HOST)["verdict"] == "pass"
    assert make_report({}, [good, bad], host=HOST)["verdict"] == "fail"
    assert make_report({}, [good], spread=0.16, host=HOST)["verdict"] == "inconclusive"
    assert make_report({}, [good], spread=0.15, host=HOST)["verdict"] == "pass"
    busy = make_report({}, [bad], load_before=0.51, host=HOST)
    assert busy["verdict"] == "inconclusive"
    assert busy["host"]["load_before"] == 0.51
    assert make_report({}, [good], load_before=0.5, host=HOST)["verdict"] == "pass"


def test_report_shape_and_emit(capsys: pytest.CaptureFixture[str]) -> None:
    rep = make_report({"fps": 12.5, "nan": float("nan")}, [bar("fps", 12.5, ">=", 10)], spread=0.01)
    assert set(rep) == {"host", "results", "bars", "verdict"}
    assert set(rep["host"]) == {"cpu", "flags", "cores", "load_before"}
    assert rep["results"]["spread"] == 0.01
    emit(rep)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    parsed = json.loads(out)
    assert parsed["results"]["nan"] is None
    assert parsed["bars"][0]["ok"] is True
