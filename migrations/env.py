"""Alembic environment: one migration history for SQLite (batch mode) and Postgres."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import pool

from services.store import schema_teach  # noqa: F401  (registers the teaching tables)
from services.store.engine import make_engine
from services.store.schema import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("db_url") or os.environ.get("LINEWATCH_DB_URL")
    if not url:
        url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set LINEWATCH_DB_URL or pass one")
    return str(url)


def _options(dialect: str) -> dict[str, object]:
    return {
        "target_metadata": target_metadata,
        "render_as_batch": dialect == "sqlite",
        "compare_type": True,
        "compare_server_default": False,
    }


def run_offline() -> None:
    url = _url()
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(url=url, literal_binds=True, **_options(dialect))  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **_options(connection.dialect.name))  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **_options(conn.dialect.name))  # type: ignore[arg-type]
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
