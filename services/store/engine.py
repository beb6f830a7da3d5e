"""Engine factory (SQLite WAL / Postgres via psycopg 3) and the schema-version gate."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Engine, make_url

log = logging.getLogger(__name__)
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def migrations_dir() -> Path:
    """The ``migrations`` package directory (works from a checkout and when installed)."""
    import migrations

    return Path(migrations.__file__).resolve().parent


class SchemaBehind(RuntimeError):
    """The database is not at the schema revision this build expects."""


def normalize_url(url: str) -> URL:
    """An SQLAlchemy URL; plain ``postgresql://`` / ``postgres://`` get the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


WRITE = "linewatch_write"  # execution option: this transaction will write (see ``writer``)


def writer(engine: Engine) -> Engine:
    """``engine`` (same pool) for transactions that write: on SQLite they take the write lock
    at ``BEGIN IMMEDIATE``. A deferred transaction that reads and then writes fails at once
    with "database is locked" when another process (the store) commits between its read and
    its write: SQLite cannot upgrade a stale snapshot, and the busy timeout does not apply to
    that. An immediate one waits on the busy timeout instead. Postgres: unchanged."""
    return engine.execution_options(**{WRITE: True})


def make_engine(
    url: str,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 10_000,
    immediate: bool = False,
    **kwargs: Any,
) -> Engine:
    """Engine for ``url``. SQLite: WAL, busy timeout, ``synchronous`` pragma, foreign keys,
    and, for writers, ``BEGIN IMMEDIATE`` transactions (``immediate=True``) so concurrent
    writers queue on the busy timeout instead of failing on a lock upgrade (readers keep
    deferred transactions, so a long query never holds the write lock).
    Postgres: psycopg 3, pre-ping."""
    parsed = normalize_url(url)
    sync = synchronous.upper()
    if sync not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sync, busy_timeout_ms, immediate, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _sqlite_engine(url: URL, sync: str, busy_ms: int, immediate: bool, **kwargs: Any) -> Engine:
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        _private_file(Path(db))
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", busy_ms / 1000)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        try:
            if db and db != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = immediate or conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _private_file(path: Path) -> None:
    """Create the database file (and a missing directory) readable by this user only: it
    holds evidence images, the audit trail and token hashes. SQLite gives its -wal and -shm
    files the database file's mode. An existing file keeps its mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def is_sqlite(engine_or_conn: Any) -> bool:
    return bool(engine_or_conn.dialect.name == "sqlite")


# ---- migrations (Alembic, configured programmatically so an installed package works) -------


def alembic_config(url: str) -> Any:
    """An Alembic Config whose scripts are this package's ``migrations/``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # configparser interpolates '%': a percent-encoded password (p%40ss) must be doubled
    rendered = normalize_url(url).render_as_string(False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", rendered)
    cfg.attributes["db_url"] = url
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return str(heads[0])


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def require_head(engine: Engine) -> str:
    """Return the revision, or raise SchemaBehind naming the command that fixes it."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return head
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        tables = inspect(engine).get_table_names()
        state = "has no LineWatch schema" if not tables else "is not managed by migrations"
        raise SchemaBehind(
            f"database {where} {state} (expected revision {head}); run `linewatch db upgrade` first"
        )
    if not _known(current):
        raise SchemaBehind(
            f"database {where} is at revision {current}, which this build does not know "
            f"(it needs {head}); the database is newer: upgrade LineWatch"
        )
    raise SchemaBehind(
        f"database {where} is at revision {current}, this build needs {head}; "
        "run `linewatch db upgrade` first"
    )


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return (
            ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision)
            is not None
        )
    except CommandError:
        return False
