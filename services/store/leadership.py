"""Leader election for singleton services (the dispatcher): advisory lock or lease row."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from broker.messages import utcnow
from services.store import schema as s
from services.store.engine import make_engine
from services.store.repo import _insert

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(f"linewatch-lease:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    """One holder at a time for lease ``name``.

    Postgres: ``pg_try_advisory_lock`` on a dedicated connection held while leading (the lock
    goes when that session dies, so a crashed leader is replaced at once) plus the ``leases``
    row for visibility. SQLite: the ``leases`` row with ``expires_at``, taken atomically when
    it has expired or is already ours; the leader must ``renew()`` well within ``ttl_s``.
    """

    def __init__(self, db_url: str, name: str, holder: str, ttl_s: float = 3.0) -> None:
        self.name, self.holder, self.ttl = name, holder, timedelta(seconds=ttl_s)
        # NullPool: closing the lock session really closes it, so the lock never lingers
        self.engine: Engine = make_engine(db_url, poolclass=NullPool, immediate=True)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._conn: Connection | None = None  # Postgres: the session holding the lock

    # ---- public API ---------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Become leader if nobody else is; True while we lead."""
        try:
            return self._acquire_pg() if self.postgres else self._acquire_row()
        except DBAPIError as exc:
            log.warning("lease %s: acquire failed (%s)", self.name, type(exc).__name__)
            self._drop_conn()
            return False

    def renew(self) -> bool:
        """Extend our lease; False when leadership is lost (stop acting as leader)."""
        try:
            if self.postgres:
                if self._conn is None:
                    return False
                self._conn.execute(text("SELECT 1"))
                self._write_row(self._conn)
                self._conn.commit()
                return True
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(s.T_LEASES)
                    .where(s.T_LEASES.c.name == self.name, s.T_LEASES.c.holder == self.holder)
                    .values(expires_at=utcnow() + self.ttl)
                )
                return bool(res.rowcount == 1)
        except DBAPIError as exc:
            log.warning(
                "lease %s: renew failed (%s); leadership lost", self.name, type(exc).__name__
            )
            self._drop_conn()
            return False

    def release(self) -> None:
        """Give up leadership (idempotent)."""
        try:
            if self.postgres and self._conn is not None:
                self._delete_row(self._conn)
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(self.name)}
                )
                self._conn.commit()
            elif not self.postgres:
                with self.engine.begin() as conn:
                    self._delete_row(conn)
        except DBAPIError as exc:
            log.warning("lease %s: release failed (%s)", self.name, type(exc).__name__)
        finally:
            self._drop_conn()

    def leader(self) -> str | None:
        """The current holder whose lease has not expired, else None."""
        t = s.T_LEASES
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.holder, t.c.expires_at).where(t.c.name == self.name)
            ).first()
        if row is None or row.expires_at < utcnow():
            return None
        return str(row.holder)

    def close(self) -> None:
        self.release()
        self.engine.dispose()

    # ---- internals ----------------------------------------------------------------------

    def _acquire_pg(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
            got: Any = self._conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(self.name)}
            ).scalar_one()
            self._conn.commit()
            if not got:
                self._drop_conn()
                return False
        self._write_row(self._conn)
        self._conn.commit()
        return True

    def _acquire_row(self) -> bool:
        t, now = s.T_LEASES, utcnow()
        with self.engine.begin() as conn:
            stmt = _insert(conn, t).values(
                name=self.name, holder=self.holder, expires_at=now + self.ttl, acquired_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "holder": stmt.excluded.holder,
                    "expires_at": stmt.excluded.expires_at,
                    "acquired_at": stmt.excluded.acquired_at,
                },
                where=(t.c.expires_at < now) | (t.c.holder == self.holder),
            )
            conn.execute(stmt)
            holder: Any = conn.execute(select(t.c.holder).where(t.c.name == self.name)).scalar_one()
        return bool(holder == self.holder)

    def _write_row(self, conn: Connection) -> None:
        t, now = s.T_LEASES, utcnow()
        stmt = _insert(conn, t).values(
            name=self.name, holder=self.holder, expires_at=now + self.ttl, acquired_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        )
        conn.execute(stmt)

    def _delete_row(self, conn: Connection) -> None:
        t = s.T_LEASES
        conn.execute(delete(t).where(t.c.name == self.name, t.c.holder == self.holder))

    def _drop_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None
