"""Soak tier: long opt-in runs (`make soak`, marker ``soak``; `make test` leaves them out).
They reuse the integration tier's kits (tests/integration/_feedkit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


def pytest_configure(config: object) -> None:
    config.addinivalue_line("markers", "soak: long acceptance run (opt-in, make soak)")  # type: ignore[attr-defined]
