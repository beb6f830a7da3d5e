"""The read-only role script: SELECT works; INSERT, UPDATE, DELETE and DROP are refused."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "services" / "store" / "sql" / "readonly_role.sql"

REFUSED = r"read-only|permission denied|must be owner"
FORBIDDEN = [
    "INSERT INTO leases (name, holder, expires_at, acquired_at) VALUES ('x','y',now(),now())",
    "UPDATE frames SET verdict = 'ok'",
    "DELETE FROM dead_letters",
    "DROP TABLE frames",
    "DROP VIEW v_open_alerts",
    "TRUNCATE sensor_readings",
    "CREATE TABLE sneaky (id int)",
]


def _psql(url: str, *args: str) -> None:
    u = make_url(url)
    cmd = [
        shutil.which("psql") or "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        u.host or "",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        "-d",
        u.database or "",
        *args,
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def test_readonly_role_cannot_write(postgres_url: str, postgres_admin_url: str) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to apply the read-only role script")
    upgrade(postgres_url)
    role = f"lw_ro_{uuid.uuid4().hex[:8]}"
    _psql(postgres_url, "-v", f"ro_role={role}", "-v", "ro_password=s3cret", "-f", str(SCRIPT))
    _psql(postgres_url, "-v", f"ro_role={role}", "-f", str(SCRIPT))  # re-running is safe
    ro_url = make_url(postgres_url).set(username=role, password="s3cret")
    ro = make_engine(ro_url.render_as_string(hide_password=False))
    try:
        with ro.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM frames")).scalar_one() == 0
            conn.execute(sa.text("SELECT * FROM v_defect_rate_hourly")).all()
        for statement in FORBIDDEN:
            with ro.connect() as conn, pytest.raises(DBAPIError, match=REFUSED):
                conn.execute(sa.text(statement))  # refused by the read-only default ...
            with ro.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("SET default_transaction_read_only = off"))
                with pytest.raises(DBAPIError) as err:  # ... and by privileges without it
                    conn.execute(sa.text(statement))
            assert "permission denied" in str(err.value) or "must be owner" in str(err.value)
    finally:
        ro.dispose()
        admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
        db = make_url(postgres_url).database
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
