"""Alert lifecycle: pure dedup/cooldown/suppression decisions plus the SQL that applies them."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from broker.messages import Alert, utcnow
from services.store import schema as s

log = logging.getLogger(__name__)

Row = dict[str, Any]
SEVERITIES = ("critical", "major", "minor", "warning")  # most to least urgent
STATUSES = ("active", "acknowledged", "resolved")
OUTCOMES = ("raised", "deduped", "cooldown", "suppressed")
EVENTS_LOCK = 7_270_001  # Postgres advisory lock: alert_events ids commit in id order


class AlertNotFound(LookupError):
    """No alert with that id."""


class LifecycleError(ValueError):
    """An action the alert's current status does not allow (e.g. ack a resolved alert)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Policy:
    """Dedup window and cooldown after a resolve, in seconds (read by the store writer)."""

    dedup_window_s: float = 600.0
    cooldown_s: float = 300.0

    @classmethod
    def from_env(cls) -> Policy:
        """``LINEWATCH_ALERT_DEDUP_WINDOW_S`` and ``LINEWATCH_ALERT_COOLDOWN_S``."""

        def num(name: str, default: float) -> float:
            raw = os.environ.get(f"LINEWATCH_ALERT_{name}")
            value = float(raw) if raw else default
            if not 0 <= value < 1e9:
                raise ValueError(f"LINEWATCH_ALERT_{name} must be a number of seconds >= 0")
            return value

        return cls(
            num("DEDUP_WINDOW_S", cls.dedup_window_s),
            num("COOLDOWN_S", cls.cooldown_s),
        )


@functools.cache
def default_policy() -> Policy:
    """The policy from the environment, read once; invalid values fall back to the defaults
    with an error in the log (the store writer must not stop over an alert setting)."""
    try:
        return Policy.from_env()
    except ValueError as exc:
        log.error("invalid alert policy (%s); using the defaults %s", exc, Policy())
        return Policy()


@dataclass(frozen=True)
class Latest:
    """The newest alert with one dedup key, as the decision needs it."""

    id: int
    status: str
    last_seen: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Window:
    """A suppression (maintenance) window; None fields match anything."""

    line: str
    starts_at: datetime
    ends_at: datetime
    site: str | None = None
    station: str | None = None
    kind: str | None = None


# ---- pure decisions ----------------------------------------------------------------------


def dedup_key(kind: str, site: str, line: str, station: str, family: str | None) -> str:
    """Events with the same key fold into one alert while it is open and recent."""
    return f"{kind}|{site}/{line}/{station}|{family or '-'}"


def worse(a: str, b: str) -> str:
    """The more urgent of two severities."""
    return a if SEVERITIES.index(a) <= SEVERITIES.index(b) else b


def suppressed_by(
    windows: Iterable[Window], site: str, line: str, station: str, kind: str, ts: datetime
) -> Window | None:
    """The first window covering this event (its place and its time), else None."""
    for w in windows:
        if (
            w.line == line
            and w.site in (None, site)
            and w.station in (None, station)
            and w.kind in (None, kind)
            and w.starts_at <= ts < w.ends_at
        ):
            return w
    return None


def decide(ts: datetime, latest: Latest | None, suppressed: bool, policy: Policy) -> str:
    """What one incoming event does: raise a new alert, fold into one, or raise nothing."""
    if suppressed:
        return "suppressed"
    if latest is None:
        return "raised"
    if latest.status != "resolved":
        age = (ts - latest.last_seen).total_seconds()
        return "deduped" if age <= policy.dedup_window_s else "raised"
    if (
        latest.resolved_at is not None
        and (ts - latest.resolved_at).total_seconds() < policy.cooldown_s
    ):
        return "cooldown"
    return "raised"


def next_status(status: str, action: str) -> str:
    """The status after ``action``; LifecycleError when the current status forbids it."""
    if action == "acknowledge":
        if status != "active":
            raise LifecycleError(
                "bad_transition", f"only an active alert can be acknowledged (this one is {status})"
            )
        return "acknowledged"
    if action == "resolve":
        if status == "resolved":
            raise LifecycleError("bad_transition", "the alert is already resolved")
        return "resolved"
    if action == "assign" and status == "resolved":
        raise LifecycleError("bad_transition", "a resolved alert cannot be assigned")
    if action in ("assign", "comment"):
        return status
    raise LifecycleError("bad_action", f"unknown action {action!r}")


def escalation_due(
    severity: str,
    status: str,
    acknowledged_at: datetime | None,
    escalated_at: datetime | None,
    first_seen: datetime,
    now: datetime,
    after_s: float,
) -> bool:
    """A critical alert still unacknowledged ``after_s`` after it was raised, not yet escalated."""
    return (
        severity == "critical"
        and status == "active"
        and acknowledged_at is None
        and escalated_at is None
        and (now - first_seen).total_seconds() >= after_s
    )


# ---- SQL: ingest (called by the store writer inside its batch transaction) ----------------


def lock_events(conn: Connection) -> None:
    """Serialise alert writers so ``alert_events`` ids become visible in id order (SSE resume
    by id is then exact). SQLite's BEGIN IMMEDIATE already serialises writers."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENTS_LOCK})


def active_windows(conn: Connection, line: str, ts: datetime) -> list[Window]:
    t = s.T_SUPPRESSIONS
    q = select(t.c.line, t.c.starts_at, t.c.ends_at, t.c.site, t.c.station, t.c.kind).where(
        t.c.line == line, t.c.cancelled_at.is_(None), t.c.starts_at <= ts, t.c.ends_at > ts
    )
    return [
        Window(
            line=r.line,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            site=r.site,
            station=r.station,
            kind=r.kind,
        )
        for r in conn.execute(q)
    ]


def _latest(conn: Connection, key: str) -> Latest | None:
    a = s.T_ALERTS
    row = conn.execute(
        select(a.c.id, a.c.status, a.c.last_seen, a.c.resolved_at)
        .where(a.c.dedup_key == key)
        .order_by(a.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return Latest(int(row.id), row.status, row.last_seen, row.resolved_at)


def add_event(
    conn: Connection,
    alert_id: int,
    action: str,
    actor: str,
    at: datetime,
    *,
    note: str | None = None,
    assignee: str | None = None,
    event_key: str | None = None,
) -> int:
    """Append one lifecycle step; its id is the SSE event id."""
    res = conn.execute(
        insert(s.T_ALERT_EVENTS).values(
            alert_id=alert_id,
            action=action,
            actor=actor[:128],
            at=at,
            note=note,
            assignee=assignee,
            event_key=event_key,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def ingest(
    conn: Connection, alerts: Sequence[Alert], policy: Policy | None = None
) -> dict[str, int]:
    """Turn stored ``Alert`` events into alert rows; idempotent (each event is decided once,
    its outcome kept on its ``alert_source_events`` row, which must already be inserted)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    if not alerts:
        return counts
    policy = policy or default_policy()
    lock_events(conn)
    src = s.T_ALERT_SOURCE
    done: set[str] = set()
    for a in sorted(alerts, key=lambda m: m.ts):
        if a.event_id in done:
            continue
        done.add(a.event_id)
        row = conn.execute(
            select(src.c.outcome, src.c.evidence_key).where(src.c.event_id == a.event_id)
        ).first()
        if row is None or row.outcome is not None:
            continue  # a redelivery: decided already
        outcome, alert_id = _apply(conn, a, row.evidence_key, policy)
        conn.execute(
            update(src)
            .where(src.c.event_id == a.event_id)
            .values(outcome=outcome, alert_id=alert_id)
        )
        counts[outcome] += 1
    return counts


def _apply(
    conn: Connection, a: Alert, evidence_key: str | None, policy: Policy
) -> tuple[str, int | None]:
    key = dedup_key(a.kind, a.site, a.line, a.station, a.family)
    latest = _latest(conn, key)
    window = suppressed_by(
        active_windows(conn, a.line, a.ts), a.site, a.line, a.station, a.kind, a.ts
    )
    outcome = decide(a.ts, latest, window is not None, policy)
    actor = a.worker or "system"
    t = s.T_ALERTS
    if outcome == "raised":
        res = conn.execute(
            insert(t).values(
                dedup_key=key,
                kind=a.kind,
                severity=a.severity,
                status="active",
                count=1,
                first_seen=a.ts,
                last_seen=a.ts,
                site=a.site,
                line=a.line,
                station=a.station,
                stream=a.stream,
                family=a.family,
                message=a.message[:2000],
                evidence_key=evidence_key,
                last_event_id=a.event_id,
                updated_at=utcnow(),
            )
        )
        alert_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        add_event(
            conn,
            alert_id,
            "raised",
            actor,
            a.ts,
            note=a.message[:500],
            event_key=f"src:{a.event_id}"[:600],
        )
        return outcome, alert_id
    if outcome == "deduped" and latest is not None:
        cur = conn.execute(
            select(t.c.severity, t.c.count.label("n"), t.c.last_seen, t.c.evidence_key).where(
                t.c.id == latest.id
            )
        ).one()
        conn.execute(
            update(t)
            .where(t.c.id == latest.id)
            .values(
                count=cur.n + 1,
                last_seen=max(cur.last_seen, a.ts),
                severity=worse(cur.severity, a.severity),
                message=a.message[:2000],
                evidence_key=evidence_key or cur.evidence_key,
                last_event_id=a.event_id,
                updated_at=utcnow(),
            )
        )
        add_event(
            conn,
            latest.id,
            "repeated",
            actor,
            a.ts,
            note=f"count {cur.n + 1}",
            event_key=f"src:{a.event_id}"[:600],
        )
        return outcome, latest.id
    return outcome, latest.id if latest is not None else None
