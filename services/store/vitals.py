"""A cheap read of the stack's vital signs (for `linewatch up`'s status block), indexed queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from broker.messages import utcnow
from services.store import schema as s
from services.store.engine import make_engine


@dataclass(frozen=True)
class Vitals:
    """What an operator glances at: throughput, open alerts, families, workers, models."""

    frames_per_s: float
    frames_total: int
    alerts_open: int
    families: int
    workers_online: int
    workers_known: int
    models: tuple[str, ...]  # model versions the online edge workers announce


def read_vitals(conn: Connection, window_s: float = 10.0, now: datetime | None = None) -> Vitals:
    """Frames decided in the last ``window_s`` (as a rate), and the current counts."""
    now = now or utcnow()
    f, a, fam, w = s.T_FRAMES, s.T_ALERTS, s.T_FAMILIES, s.T_WORKERS
    recent = conn.execute(
        select(func.count()).where(f.c.decided_at >= now - timedelta(seconds=window_s))
    ).scalar_one()
    total = int(conn.execute(select(func.max(f.c.id))).scalar_one() or 0)
    open_alerts = conn.execute(
        select(func.count()).where(a.c.status.in_(("active", "acknowledged")))
    ).scalar_one()
    families = conn.execute(select(func.count()).where(fam.c.status == "active")).scalar_one()
    rows = conn.execute(select(w.c.state, w.c.model_version).where(w.c.role == "edge")).all()
    online = [r for r in rows if r.state != "offline"]
    models = tuple(sorted({r.model_version for r in online if r.model_version}))
    return Vitals(
        frames_per_s=recent / window_s,
        frames_total=int(total),
        alerts_open=int(open_alerts),
        families=int(families),
        workers_online=len(online),
        workers_known=len(rows),
        models=models,
    )


class VitalsReader:
    """Reads :class:`Vitals` from a DB URL; None (never an exception) while the DB is not
    ready (no schema yet, locked, unreachable). The engine is made on first use."""

    def __init__(self, url: str, window_s: float = 10.0) -> None:
        self._url, self._window = url, window_s
        self._engine: Engine | None = None
        self.error: str | None = None

    def read(self) -> Vitals | None:
        try:
            if self._engine is None:
                self._engine = make_engine(self._url)
            with self._engine.connect() as conn:
                vitals = read_vitals(conn, self._window)
            self.error = None
            return vitals
        except (SQLAlchemyError, OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            return None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
