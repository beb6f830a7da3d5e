"""Retention: per-table age limits and an evidence byte budget, deleted in short batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, delete, func, select

from broker.messages import utcnow
from services.store import schema as s
from services.store.retention_teach import trim_feedback_images, trim_history_frames
from services.store.settings import StoreSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """Rows of ``table`` whose ``column`` is older than ``days`` go (``extra`` narrows it)."""

    table: Table
    column: str
    days: float
    resolved_alerts_only: bool = False

    def condition(self, now: datetime) -> ColumnElement[bool]:
        cond = self.table.c[self.column] < now - timedelta(days=self.days)
        if self.resolved_alerts_only:  # active and acknowledged alerts are never deleted
            cond = cond & (self.table.c.status == "resolved")
        return cond


def policies(cfg: StoreSettings) -> list[Policy]:
    return [
        Policy(s.T_FRAMES, "decided_at", cfg.retention_frames_days),
        Policy(s.T_FRAME_FAMILIES, "ts", cfg.retention_frames_days),
        Policy(s.T_READINGS, "ts", cfg.retention_readings_days),
        Policy(s.T_ANOMALIES, "ts", cfg.retention_anomalies_days),
        Policy(s.T_GAPS, "ts", cfg.retention_gaps_days),
        Policy(s.T_DEAD_LETTERS, "ts", cfg.retention_dead_letters_days),
        Policy(s.T_ALERT_SOURCE, "ts", cfg.retention_alert_events_days),
        Policy(s.T_WORKER_EVENTS, "ts", cfg.retention_status_events_days),
        Policy(s.T_DECISIONS, "ts", cfg.retention_decisions_days),
        Policy(s.T_FAMILY_EVENTS, "ts", cfg.retention_decisions_days),
        Policy(
            s.T_ALERTS, "resolved_at", cfg.retention_resolved_alerts_days, resolved_alerts_only=True
        ),
    ]


@dataclass
class Report:
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    evidence_bytes_before: int = 0
    evidence_bytes_freed: int = 0
    evidence_budget_bytes: int = 0
    protected_evidence_bytes: int = 0
    feedback_images: dict[str, int] = field(default_factory=dict)
    history_frames: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "rows": dict(self.rows),
            "evidence_bytes_before": self.evidence_bytes_before,
            "evidence_bytes_freed": self.evidence_bytes_freed,
            "evidence_budget_bytes": self.evidence_budget_bytes,
            "protected_evidence_bytes": self.protected_evidence_bytes,
            "feedback_images": dict(self.feedback_images),
            "history_frames": dict(self.history_frames),
            "batches": self.batches,
            "longest_batch_s": round(self.longest_batch_s, 4),
        }


def _protected() -> ColumnElement[bool]:
    """Evidence shown by an alert that is not resolved is kept whatever the budget."""
    a, ev = s.T_ALERTS, s.T_EVIDENCE
    keys = select(a.c.evidence_key).where(a.c.status != "resolved", a.c.evidence_key.is_not(None))
    return ev.c.evidence_key.in_(keys)


class Retention:
    """Runs the policies; every delete batch is its own short transaction."""

    def __init__(self, engine: Engine, cfg: StoreSettings) -> None:
        self.engine = engine
        self.cfg = cfg
        self.batch = cfg.retention_batch_rows

    def run(self, *, dry_run: bool = False, now: datetime | None = None) -> Report:
        now = now or utcnow()
        rep = Report(
            dry_run=dry_run, evidence_budget_bytes=self.cfg.retention_evidence_budget_bytes
        )
        for pol in policies(self.cfg):
            cond = pol.condition(now)
            if pol.table is s.T_ALERTS:
                ids = select(pol.table.c.id).where(cond)
                rep.rows["alert_events"] = self._count(
                    s.T_ALERT_EVENTS, s.T_ALERT_EVENTS.c.alert_id.in_(ids)
                )
                if not dry_run:
                    self._delete(s.T_ALERT_EVENTS, s.T_ALERT_EVENTS.c.alert_id.in_(ids), rep)
            rep.rows[pol.table.name] = (
                self._count(pol.table, cond) if dry_run else self._delete(pol.table, cond, rep)
            )
        self._evidence(now, rep)
        rep.feedback_images = trim_feedback_images(
            self.engine, self.cfg.retention_feedback_image_budget_bytes, dry_run=dry_run
        )
        rep.history_frames = trim_history_frames(
            self.engine, self.cfg.retention_history_image_budget_bytes, dry_run=dry_run
        )
        log.info("retention %s: %s", "dry run" if dry_run else "done", rep.as_dict())
        return rep

    def _count(self, table: Table, cond: ColumnElement[bool]) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one()
            )

    def _delete(self, table: Table, cond: ColumnElement[bool], rep: Report) -> int:
        """Delete matching rows ``batch`` at a time, adapting the batch to stay short."""
        total = 0
        while True:
            ids = select(table.c.id).where(cond).order_by(table.c.id).limit(self.batch)
            n = self._timed_delete(table, table.c.id.in_(ids.scalar_subquery()), rep)
            total += n
            if n < self.batch:
                return total

    def _timed_delete(self, table: Table, cond: ColumnElement[bool], rep: Report) -> int:
        t0 = time.monotonic()
        with self.engine.begin() as conn:
            n = conn.execute(delete(table).where(cond)).rowcount or 0
        took = time.monotonic() - t0
        rep.batches += 1
        rep.longest_batch_s = max(rep.longest_batch_s, took)
        if took > self.cfg.retention_max_batch_s:
            self.batch = max(10, self.batch // 2)
        elif took < self.cfg.retention_max_batch_s / 4:
            self.batch = min(self.cfg.retention_batch_rows, self.batch * 2)
        return int(n)

    def _evidence(self, now: datetime, rep: Report) -> None:
        ev = s.T_EVIDENCE
        too_old = ev.c.created_at < now - timedelta(days=self.cfg.retention_evidence_days)
        with self.engine.connect() as conn:
            rep.evidence_bytes_before = int(
                conn.execute(select(func.coalesce(func.sum(ev.c.size_bytes), 0))).scalar_one()
            )
            rep.protected_evidence_bytes = int(
                conn.execute(
                    select(func.coalesce(func.sum(ev.c.size_bytes), 0)).where(_protected())
                ).scalar_one()
            )
            victims = list(self._victims(conn, too_old, rep.evidence_bytes_before))
        rep.rows["evidence"] = len(victims)
        rep.evidence_bytes_freed = sum(size for _, size in victims)
        if rep.dry_run:
            return
        ids = [i for i, _ in victims]
        for i in range(0, len(ids), self.batch):
            self._timed_delete(ev, ev.c.id.in_(ids[i : i + self.batch]), rep)

    def _victims(
        self, conn: Connection, too_old: ColumnElement[bool], total: int
    ) -> Iterator[tuple[int, int]]:
        """Expired evidence, then the oldest until the total fits the budget (never protected)."""
        ev = s.T_EVIDENCE
        excess = total - self.cfg.retention_evidence_budget_bytes
        q = (
            select(ev.c.id, ev.c.size_bytes, too_old.label("expired"))
            .where(~_protected())
            .order_by(ev.c.created_at, ev.c.id)
        )
        rows: Any = conn.execute(q)
        for ident, size, expired in rows:
            if expired or excess > 0:
                excess -= int(size)
                yield int(ident), int(size)
            else:
                return
