"""docs/operations.md's threat model names tests that exist (and every attack test is named)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
ATTACK_FILES = {
    "unit/test_decode_bombs.py",
    "unit/test_dispatch_discovery_flood.py",
    "unit/test_private_files_and_logs.py",
    "unit/test_secure_profile_settings.py",
    "integration/test_secure_roles.py",
    "integration/test_feed_attacks.py",
    "integration/test_decode_bombs_mqtt.py",
    "integration/test_discovery_flood_mqtt.py",
}


def _section() -> str:
    text = (REPO / "docs" / "operations.md").read_text()
    start = text.index("## Threat model")
    return text[start : text.index("### Measured under attack", start)]


def _tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_every_test_the_threat_model_names_exists() -> None:
    rows = [line for line in _section().splitlines() if line.startswith("| ") and "::" in line]
    assert len(rows) >= 15
    named: set[str] = set()
    for row in rows:
        refs = re.findall(r"`([a-z_/]+\.py)::(test_[a-z0-9_]+)`", row.rsplit("|", 2)[-2])
        assert refs, row
        for file, test in refs:
            assert test in _tests(REPO / "tests" / file), f"{file}::{test}"
            named.add(file)
    assert named >= ATTACK_FILES
