"""Migrations: head -> base -> head on SQLite and Postgres; models match the migrated schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.store import schema_teach  # noqa: F401  (registers the teaching tables)
from services.store.engine import (
    SchemaBehind,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    require_head,
    upgrade,
)
from services.store.schema import metadata
from services.store.views import VIEWS_V1

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mig.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        assert require_head(engine) == head_revision()
        names = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= names
        assert set(VIEWS_V1) <= set(inspect(engine).get_view_names())
        downgrade(db_url, "base")
        engine.dispose()
        left = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert left == set() and not set(VIEWS_V1) & set(inspect(engine).get_view_names())
        assert current_revision(engine) is None
        with pytest.raises(SchemaBehind, match="linewatch db upgrade"):
            require_head(engine)
        upgrade(db_url)
        engine.dispose()
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            for view in VIEWS_V1:
                conn.execute(text(f"SELECT * FROM {view}")).all()
    finally:
        engine.dispose()
    assert _diff(db_url) == []
