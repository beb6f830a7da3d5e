"""Operator actions on alerts (ack, assign, comment, resolve), escalation, suppressions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, or_, select, update

from broker.messages import utcnow
from services.store import schema as s
from services.store.alerts import (
    AlertNotFound,
    LifecycleError,
    Row,
    Window,
    add_event,
    escalation_due,
    lock_events,
    next_status,
)

# ---- SQL: operator actions --------------------------------------------------------------


def _load(conn: Connection, alert_id: int) -> Row:
    t = s.T_ALERTS
    q = select(t).where(t.c.id == alert_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        raise AlertNotFound(f"no alert {alert_id}")
    return dict(row)


def act(
    conn: Connection,
    alert_id: int,
    action: str,
    actor: str,
    *,
    note: str | None = None,
    assignee: str | None = None,
    now: datetime | None = None,
) -> Row:
    """Apply one operator action (acknowledge/assign/comment/resolve); return the alert."""
    if not actor:
        raise LifecycleError("no_actor", "every action records its actor")
    now = now or utcnow()
    lock_events(conn)
    cur = _load(conn, alert_id)
    status = next_status(cur["status"], action)
    values: Row = {"status": status, "updated_at": now}
    if action == "acknowledge":
        values.update(acknowledged_by=actor[:128], acknowledged_at=now)
    elif action == "resolve":
        values.update(resolved_by=actor[:128], resolved_at=now)
    elif action == "assign":
        values["assignee"] = (assignee or None) and assignee[:128]
    conn.execute(update(s.T_ALERTS).where(s.T_ALERTS.c.id == alert_id).values(**values))
    past = {
        "acknowledge": "acknowledged",
        "resolve": "resolved",
        "assign": "assigned",
        "comment": "commented",
    }[action]
    add_event(conn, alert_id, past, actor, now, note=note, assignee=values.get("assignee"))
    cur.update(values)
    return cur


def bulk_acknowledge(
    conn: Connection, alert_ids: Sequence[int], actor: str, *, note: str | None = None
) -> tuple[list[int], dict[int, str]]:
    """Acknowledge many: (acknowledged ids, {id: why skipped})."""
    done: list[int] = []
    skipped: dict[int, str] = {}
    for alert_id in dict.fromkeys(alert_ids):
        try:
            act(conn, alert_id, "acknowledge", actor, note=note)
            done.append(alert_id)
        except AlertNotFound:
            skipped[alert_id] = "not_found"
        except LifecycleError as exc:
            skipped[alert_id] = exc.reason
    return done, skipped


def escalate_due(conn: Connection, after_s: float, now: datetime | None = None) -> list[int]:
    """Mark critical alerts unacknowledged for ``after_s`` as escalated (once each)."""
    now = now or utcnow()
    t = s.T_ALERTS
    lock_events(conn)
    cutoff = now - timedelta(seconds=after_s)
    rows = conn.execute(
        select(
            t.c.id, t.c.severity, t.c.status, t.c.acknowledged_at, t.c.escalated_at, t.c.first_seen
        )
        .where(
            t.c.severity == "critical",
            t.c.status == "active",
            t.c.escalated_at.is_(None),
            t.c.first_seen <= cutoff,
        )
        .order_by(t.c.id)
    ).all()
    out = []
    for r in rows:
        if not escalation_due(
            r.severity, r.status, r.acknowledged_at, r.escalated_at, r.first_seen, now, after_s
        ):
            continue
        res = conn.execute(
            update(t)
            .where(t.c.id == r.id, t.c.escalated_at.is_(None))
            .values(escalated_at=now, updated_at=now)
        )
        if not res.rowcount:
            continue  # another feed process escalated it first
        add_event(
            conn,
            r.id,
            "escalated",
            "system",
            now,
            note=f"critical and unacknowledged for {after_s:.0f}s",
        )
        out.append(int(r.id))
    return out


# ---- SQL: suppression windows -------------------------------------------------------------


def add_suppression(
    conn: Connection, w: Window, *, reason: str, actor: str, now: datetime | None = None
) -> int:
    if w.ends_at <= w.starts_at:
        raise LifecycleError("bad_window", "ends_at must be after starts_at")
    res = conn.execute(
        insert(s.T_SUPPRESSIONS).values(
            site=w.site,
            line=w.line,
            station=w.station,
            kind=w.kind,
            starts_at=w.starts_at,
            ends_at=w.ends_at,
            reason=reason[:1000],
            created_by=actor[:128],
            created_at=now or utcnow(),
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def cancel_suppression(conn: Connection, sup_id: int, actor: str) -> bool:
    t = s.T_SUPPRESSIONS
    res = conn.execute(
        update(t)
        .where(t.c.id == sup_id, t.c.cancelled_at.is_(None))
        .values(cancelled_at=utcnow(), cancelled_by=actor[:128])
    )
    return bool(res.rowcount)


def list_suppressions(
    conn: Connection, *, current_only: bool = True, now: datetime | None = None
) -> list[Row]:
    t = s.T_SUPPRESSIONS
    q = select(t).order_by(t.c.id.desc()).limit(500)
    if current_only:
        q = q.where(t.c.cancelled_at.is_(None), t.c.ends_at > (now or utcnow()))
    return [dict(r) for r in conn.execute(q).mappings()]


def open_counts(conn: Connection) -> dict[str, int]:
    """Open (not resolved) alerts per severity, for metrics."""
    t = s.T_ALERTS
    q = (
        select(t.c.severity, func.count())
        .where(or_(t.c.status == "active", t.c.status == "acknowledged"))
        .group_by(t.c.severity)
    )
    return {str(r[0]): int(r[1]) for r in conn.execute(q)}
