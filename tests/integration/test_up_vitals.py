"""The figures of `linewatch up`'s status block read from a migrated Postgres and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.store.engine import upgrade
from services.store.vitals import Vitals, VitalsReader

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lw.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_vitals_of_a_fresh_history(db_url: str) -> None:
    reader = VitalsReader(db_url)
    try:
        assert reader.read() is None and reader.error  # no schema yet: a note, no crash
        upgrade(db_url)
        assert reader.read() == Vitals(0.0, 0, 0, 0, 0, 0, ())
        assert reader.error is None
    finally:
        reader.close()
