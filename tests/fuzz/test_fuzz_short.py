"""A short coverage-guided fuzzing run (20 s) of every decoder and the image path, inside
`make test`; `make fuzz` runs the long one (tests/fuzz/run_fuzz.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz
HERE = Path(__file__).resolve().parent


def test_short_fuzz_run_finds_no_crash_hang_or_leak(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        msg = "atheris is not installed (pip install -e '.[dev]'; Linux x86_64 wheels)"
        if os.environ.get("LINEWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    res = subprocess.run(
        [sys.executable, str(HERE / "run_fuzz.py"), "20"],
        env={**os.environ, "LINEWATCH_FUZZ_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    assert lines, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(lines[-1])
    print(json.dumps(report))
    assert report["verdict"] == "pass", (report, res.stderr[-3000:])
    assert report["runs"] > 1000 and report["slowest_input_s"] <= 1.0
