"""One batch of planned rows into SQL: the table order inside a transaction, the prepared
batch (rows per table after fencing, alerts to ingest) and which database errors are worth
a retry. The writer (``writer.py``) collects, fences and commits; tests write with it too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from broker.messages import Alert
from services.store import alerts, gaps, repo
from services.store import schema as s
from services.store.repo import Row

# Write order inside one transaction (assignments first: they fence the results after them).
_ORDER = (
    "assignments",
    "assignment_streams",
    "workers",
    "worker_status_events",
    "defect_families",
    "family_events",
    "evidence",
    "frames",
    "frame_families",
    "sensor_readings",
    "sensor_anomalies",
    "gaps",
    "alert_source_events",
    "threshold_changes",
    "feedback_results",
    "teach_changes",
    "history_frames",
    "dispatch_decisions",
    "dead_letters",
)


@dataclass
class Prepared:
    """A batch after fencing: rows per table, the alerts to ingest, and stale rejections."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    stale: int = 0


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a lock timeout or a deadlock: retry the same batch later."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def _frames(conn: Connection, rows: list[Row]) -> None:
    """Verdict rows; gap rows recorded earlier for their seqs are narrowed (a verdict wins)."""
    repo.insert_frames(conn, rows)
    gaps.narrow_under_frames(conn, rows)


def write_prepared(conn: Connection, prep: Prepared) -> None:
    """Write a prepared batch on ``conn`` (inside the caller's transaction)."""
    writers: dict[str, Callable[[Connection, list[Row]], None]] = {
        "frames": _frames,
        "frame_families": repo.record_frame_families,
        "evidence": repo.insert_evidence,
        "workers": repo.upsert_workers,
        "defect_families": repo.upsert_families,
        "assignments": lambda c, r: repo.insert_ignore(c, s.T_ASSIGNMENTS, r),
        "assignment_streams": lambda c, r: repo.insert_ignore(c, s.T_ASSIGNMENT_STREAMS, r),
        "gaps": gaps.insert_gaps,  # after "frames": a seq stored as a frame is not a gap too
    }
    for table in _ORDER:
        rows = prep.rows.get(table)
        if not rows:
            continue
        fn = writers.get(table)
        if fn is not None:
            fn(conn, rows)
        else:
            repo.insert_ignore(conn, repo.APPEND_TABLES[table], rows)
    if prep.alerts:  # after alert_source_events: dedup/cooldown/suppression into alert rows
        alerts.ingest(conn, prep.alerts)
