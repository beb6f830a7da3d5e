"""Repository functions: the only write path to SQL (idempotent inserts and guarded upserts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, LargeBinary, Table, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from broker.messages import DispatchDecision
from services.store import schema as s
from services.store import schema_teach as teach_schema

Row = dict[str, Any]
CHUNK = 1000  # rows per statement; keeps bind parameters under SQLite's limit

# The unique idempotency key of every append-only table.
KEYS: dict[str, str] = {
    "frames": "frame_key",
    "frame_families": "frame_key",
    "evidence": "evidence_key",
    "sensor_readings": "reading_key",
    "sensor_anomalies": "anomaly_key",
    "alert_source_events": "event_id",
    "family_events": "event_key",
    "worker_status_events": "event_key",
    "assignments": "assignment_key",
    "assignment_streams": "stream_key",
    "dispatch_decisions": "decision_id",
    "gaps": "gap_key",
    "dead_letters": "dl_key",
    "threshold_changes": "change_key",
    "alert_events": "event_key",
    "feedback_results": "result_key",
    "teach_changes": "change_key",
    "history_frames": "frame_key",
}


def _insert(conn: Connection, table: Table) -> Any:
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    return mod.insert(table)


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """``INSERT … ON CONFLICT (key) DO NOTHING``; rows sorted by key so concurrent writers
    take row locks in the same order (no deadlocks between duplicate deliveries).

    On Postgres, larger batches go through COPY into a temporary staging table and one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (same semantics, several times faster)."""
    if not rows:
        return
    key = KEYS[table.name]
    if len(rows) >= COPY_MIN_ROWS and conn.dialect.name == "postgresql" and _copyable(table):
        _copy_insert_ignore(conn, table, key, rows)
        return
    ordered = sorted(rows, key=lambda r: r[key])
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=[key])
    for i in range(0, len(ordered), CHUNK):
        conn.execute(stmt, ordered[i : i + CHUNK])


COPY_MIN_ROWS = 50


def _copyable(table: Table) -> bool:
    return not any(isinstance(c.type, JSON | LargeBinary) for c in table.columns)


def _copy_insert_ignore(conn: Connection, table: Table, key: str, rows: Sequence[Row]) -> None:
    cols = [c for c in table.columns if c.name in rows[0] and c.name != "id"]
    names = ", ".join(f'"{c.name}"' for c in cols)
    stage = f"_lw_stage_{table.name}"
    ddl = ", ".join(f'"{c.name}" {c.type.compile(conn.dialect)}' for c in cols)
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        # every time: a CREATE in a transaction that rolled back is gone with it
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({ddl}) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r.get(c.name) for c in cols])
        cur.execute(
            f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM {stage} '
            f'ORDER BY "{key}" ON CONFLICT ("{key}") DO NOTHING'
        )


def _latest_per_key(rows: Iterable[Row], key: str, order: str) -> list[Row]:
    best: dict[Any, Row] = {}
    for row in rows:
        old = best.get(row[key])
        rank = (row.get("counter", 0), row[order])
        if old is None or rank >= (old.get("counter", 0), old[order]):
            best[row[key]] = row
    return [best[k] for k in sorted(best)]


# ---- frames and their late-arriving annotations ------------------------------------------


def insert_frames(conn: Connection, rows: Sequence[Row]) -> None:
    """Insert verdict rows, then attach families/evidence that arrived before them."""
    insert_ignore(conn, s.T_FRAMES, rows)
    link_frames(conn, [r["frame_key"] for r in rows])


def link_frames(conn: Connection, frame_keys: Sequence[str]) -> None:
    if not frame_keys:
        return
    f, ff, ev = s.T_FRAMES, s.T_FRAME_FAMILIES, s.T_EVIDENCE
    keys = sorted(set(frame_keys))
    for i in range(0, len(keys), CHUNK):
        part = keys[i : i + CHUNK]
        fam = select(ff.c.family).where(ff.c.frame_key == f.c.frame_key).scalar_subquery()
        conn.execute(
            update(f)
            .where(f.c.frame_key.in_(part), exists().where(ff.c.frame_key == f.c.frame_key))
            .values(family=fam)
        )
        evk = select(func.min(ev.c.evidence_key)).where(ev.c.frame_key == f.c.frame_key)
        conn.execute(
            update(f)
            .where(
                f.c.frame_key.in_(part),
                f.c.evidence_key.is_(None),
                exists().where(ev.c.frame_key == f.c.frame_key),
            )
            .values(evidence_key=evk.scalar_subquery())
        )


def record_frame_families(conn: Connection, rows: Sequence[Row]) -> None:
    """Upsert frame -> family (the newest decision wins) and copy it onto ``frames``."""
    if not rows:
        return
    ff = s.T_FRAME_FAMILIES
    latest = _latest_per_key(rows, "frame_key", "ts")
    stmt = _insert(conn, ff)
    stmt = stmt.on_conflict_do_update(
        index_elements=["frame_key"],
        set_={c: stmt.excluded[c] for c in ("family", "distance", "is_new", "ts")},
        where=stmt.excluded.ts >= ff.c.ts,
    )
    conn.execute(stmt, latest)
    link_frames(conn, [r["frame_key"] for r in latest])


def set_frame_family(
    conn: Connection,
    frame_key: str,
    family: str,
    *,
    stream: str = "",
    distance: float = 0.0,
    ts: datetime | None = None,
) -> None:
    """Give one frame its family; works whether or not the verdict row exists yet."""
    from broker.messages import utcnow

    record_frame_families(
        conn,
        [
            {
                "frame_key": frame_key,
                "stream": stream,
                "family": family,
                "distance": distance,
                "is_new": False,
                "ts": ts or utcnow(),
            }
        ],
    )


def insert_evidence(conn: Connection, rows: Sequence[Row]) -> None:
    insert_ignore(conn, s.T_EVIDENCE, rows)
    link_frames(conn, [r["frame_key"] for r in rows if r.get("frame_key")])


# ---- latest-state tables ----------------------------------------------------------------


def upsert_workers(conn: Connection, rows: Sequence[Row]) -> None:
    """Latest status per worker: a higher incarnation counter, or the same one and newer."""
    if not rows:
        return
    w = s.T_WORKERS
    latest = _latest_per_key(rows, "worker", "last_seen")
    stmt = _insert(conn, w)
    cols = [c.name for c in w.columns if c.name != "worker"]
    stmt = stmt.on_conflict_do_update(
        index_elements=["worker"],
        set_={c: stmt.excluded[c] for c in cols},
        where=or_(
            stmt.excluded.counter > w.c.counter,
            and_(stmt.excluded.counter == w.c.counter, stmt.excluded.last_seen >= w.c.last_seen),
        ),
    )
    conn.execute(stmt, latest)


def upsert_families(conn: Connection, rows: Sequence[Row]) -> None:
    """Latest state per defect family (the newest update wins)."""
    if not rows:
        return
    t = s.T_FAMILIES
    latest = _latest_per_key(rows, "family", "updated_at")
    stmt = _insert(conn, t)
    cols = [c.name for c in t.columns if c.name not in ("family", "first_seen")]
    set_ = {c: stmt.excluded[c] for c in cols}
    set_["first_seen"] = (
        func.min(t.c.first_seen, stmt.excluded.first_seen)
        if (conn.dialect.name == "sqlite")
        else func.least(t.c.first_seen, stmt.excluded.first_seen)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["family"], set_=set_, where=stmt.excluded.updated_at >= t.c.updated_at
    )
    conn.execute(stmt, latest)


# ---- assignments and dispatch (the dispatcher's API) -------------------------------------


def assignment_rows(
    worker: str,
    epoch: int,
    streams: Sequence[str],
    reason: str,
    cost: float | None,
    decided_at: datetime,
    *,
    rates: Mapping[str, float] | None = None,
    dispatcher: str = "",
) -> tuple[Row, list[Row]]:
    """The ``assignments`` row and its ``assignment_streams`` rows (pure)."""
    rates = dict(rates or {})
    head = {
        "assignment_key": f"{worker}:{epoch}",
        "worker": worker,
        "epoch": epoch,
        "streams": list(streams),
        "rates": rates,
        "reason": reason[:128],
        "cost": cost,
        "dispatcher": dispatcher[:128],
        "decided_at": decided_at,
    }
    per_stream = [
        {
            "stream_key": f"{worker}:{epoch}:{st}",
            "stream": st,
            "worker": worker,
            "epoch": epoch,
            "rate": float(rates.get(st, 1.0)),
            "decided_at": decided_at,
        }
        for st in streams
    ]
    return head, per_stream


def record_assignment(
    conn: Connection,
    worker: str,
    epoch: int,
    streams: Sequence[str],
    reason: str,
    cost: float | None,
    decided_at: datetime,
    *,
    rates: Mapping[str, float] | None = None,
    dispatcher: str = "",
) -> None:
    """Record one per-worker assignment (idempotent on ``(worker, epoch)``)."""
    head, per_stream = assignment_rows(
        worker, epoch, streams, reason, cost, decided_at, rates=rates, dispatcher=dispatcher
    )
    insert_assignments(conn, [head], per_stream)


def insert_assignments(conn: Connection, heads: Sequence[Row], streams: Sequence[Row]) -> None:
    insert_ignore(conn, s.T_ASSIGNMENTS, heads)
    insert_ignore(conn, s.T_ASSIGNMENT_STREAMS, streams)


def latest_assignments(conn: Connection) -> dict[str, tuple[int, tuple[str, ...]]]:
    """worker -> (epoch, streams) of its newest assignment."""
    a = s.T_ASSIGNMENTS
    newest = select(a.c.worker, func.max(a.c.epoch).label("epoch")).group_by(a.c.worker).subquery()
    q = select(a.c.worker, a.c.epoch, a.c.streams).join(
        newest, and_(newest.c.worker == a.c.worker, newest.c.epoch == a.c.epoch)
    )
    rows: list[Any] = list(conn.execute(q))
    return {str(w): (int(e), tuple(st or ())) for w, e, st in rows}


def max_epoch(conn: Connection) -> int:
    """The highest epoch ever assigned (0 when none)."""
    return int(
        conn.execute(select(func.coalesce(func.max(s.T_ASSIGNMENTS.c.epoch), 0))).scalar_one()
    )


def assignment_history(conn: Connection) -> list[tuple[str, int, list[str]]]:
    """Every assignment as (worker, epoch, streams), oldest epoch first (for epoch fencing)."""
    a = s.T_ASSIGNMENTS
    q = select(a.c.worker, a.c.epoch, a.c.streams).order_by(a.c.epoch, a.c.id)
    rows: list[Any] = list(conn.execute(q))
    return [(str(w), int(e), list(st or [])) for w, e, st in rows]


def decision_row(d: DispatchDecision) -> Row:
    return {
        "decision_id": d.decision_id,
        "dispatcher": d.dispatcher[:128],
        "trigger": d.trigger[:128],
        "before": dict(d.before),
        "after": dict(d.after),
        "cost_before": d.cost_before,
        "cost_after": d.cost_after,
        "solve_ms": d.solve_ms,
        "optimal": d.optimal,
        "unplaced": list(d.unplaced),
        "epochs": dict(d.epochs),
        "ts": d.ts,
    }


def record_decision(conn: Connection, decision: DispatchDecision) -> None:
    insert_ignore(conn, s.T_DECISIONS, [decision_row(decision)])


# ---- the table each writer row kind goes to ------------------------------------------------

APPEND_TABLES: dict[str, Table] = {
    "sensor_readings": s.T_READINGS,
    "sensor_anomalies": s.T_ANOMALIES,
    "alert_source_events": s.T_ALERT_SOURCE,
    "family_events": s.T_FAMILY_EVENTS,
    "worker_status_events": s.T_WORKER_EVENTS,
    "dispatch_decisions": s.T_DECISIONS,
    "gaps": s.T_GAPS,
    "dead_letters": s.T_DEAD_LETTERS,
    "threshold_changes": s.T_THRESHOLDS,
    "feedback_results": teach_schema.T_FEEDBACK_RESULTS,
    "teach_changes": teach_schema.T_TEACH_CHANGES,
    "history_frames": teach_schema.T_HISTORY_FRAMES,
}
