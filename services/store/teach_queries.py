"""The feed's reads and writes of operators' teaching (tables in schema_teach.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from services.store import schema as s
from services.store import schema_teach as st

Row = dict[str, Any]


class FrameNotFound(LookupError):
    """No stored frame (or alert with a frame) answers the reference."""


def frame_of(conn: Connection, *, frame_id: int | None = None, alert_id: int | None = None) -> Row:
    """``{frame_id, frame_key, stream, family, alert_id}`` of a frame, or an alert's latest."""
    f = s.T_FRAMES
    key: str | None = None
    if alert_id is not None:
        a, src = s.T_ALERTS, s.T_ALERT_SOURCE
        q = select(src.c.frame_key).join(a, a.c.last_event_id == src.c.event_id)
        key = conn.execute(q.where(a.c.id == alert_id)).scalar()
        if key is None:
            q2 = select(s.T_EVIDENCE.c.frame_key).join(
                a, a.c.evidence_key == s.T_EVIDENCE.c.evidence_key
            )
            key = conn.execute(q2.where(a.c.id == alert_id)).scalar()
        if key is None:
            raise FrameNotFound(f"alert {alert_id} has no frame")
        cond = f.c.frame_key == key
    else:
        cond = f.c.id == frame_id
    row = conn.execute(select(f.c.id, f.c.frame_key, f.c.stream, f.c.family).where(cond)).first()
    if row is None:
        raise FrameNotFound(f"no stored frame {frame_id if alert_id is None else key}")
    return {
        "frame_id": row.id,
        "frame_key": row.frame_key,
        "stream": row.stream,
        "family": row.family,
        "alert_id": alert_id,
    }


def add_feedback(conn: Connection, row: Row) -> int:
    """Record one operator's mark; returns its id."""
    res = conn.execute(insert(st.T_FEEDBACK).values(**row).returning(st.T_FEEDBACK.c.id))
    return int(res.scalar_one())


def approve(conn: Connection, feedback_id: int, actor: str, at: datetime) -> None:
    conn.execute(
        update(st.T_FEEDBACK)
        .where(st.T_FEEDBACK.c.id == feedback_id)
        .values(approved_by=actor, approved_at=at)
    )


def _latest_results() -> Any:
    r = st.T_FEEDBACK_RESULTS
    last = (
        select(r.c.feedback_id, func.max(r.c.id).label("rid")).group_by(r.c.feedback_id).subquery()
    )
    return select(r).join(last, r.c.id == last.c.rid).subquery()


def feedback(conn: Connection, feedback_id: int) -> Row | None:
    got = list_feedback(conn, ids=[feedback_id])
    return got[0] if got else None


def list_feedback(
    conn: Connection, *, stream: str | None = None, ids: list[int] | None = None, limit: int = 100
) -> list[Row]:
    """Feedback, newest first, each with the worker's latest answer (status ``requested``
    until one arrives)."""
    fb, res = st.T_FEEDBACK, _latest_results()
    q = (
        select(
            fb,
            res.c.status,
            res.c.reason,
            res.c.version,
            res.c.recall_before,
            res.c.recall_after,
            res.c.image.is_not(None).label("has_image"),
        )
        .outerjoin(res, res.c.feedback_id == fb.c.id)
        .order_by(fb.c.id.desc())
        .limit(limit)
    )
    if stream is not None:
        q = q.where(fb.c.stream == stream)
    if ids is not None:
        q = q.where(fb.c.id.in_(ids))
    out = []
    for r in conn.execute(q).mappings():
        row = dict(r)
        row["status"] = row["status"] or "requested"
        row["has_image"] = bool(row["has_image"])
        row["reason"] = row["reason"] or ""
        out.append(row)
    return out


def feedback_image(conn: Connection, feedback_id: int) -> bytes | None:
    r = st.T_FEEDBACK_RESULTS
    q = (
        select(r.c.image)
        .where(r.c.feedback_id == feedback_id, r.c.image.is_not(None))
        .order_by(r.c.id.desc())
        .limit(1)
    )
    data = conn.execute(q).scalar()
    return bytes(data) if data is not None else None


RATE_FRAMES = 200  # frames on each side of a change its false-alarm rates are measured on


def teach_history(conn: Connection, stream: str, limit: int = 100) -> list[Row]:
    """A camera's taught-state changes, newest first (the maps themselves left out), each
    with the camera's false-alarm rate on the ``RATE_FRAMES`` frames before it and after it
    (up to the next change): flagged frames nobody confirmed as a defect."""
    t = st.T_TEACH_CHANGES
    cols = [
        t.c.version,
        t.c.previous_version,
        t.c.action,
        t.c.feedback_id,
        t.c.actor,
        t.c.model_version,
        t.c.novelty_threshold,
        t.c.previous_novelty_threshold,
        t.c.recall_before,
        t.c.recall_after,
        t.c.worker,
        t.c.ts,
    ]
    q = select(*cols).where(t.c.stream == stream).order_by(t.c.version.desc()).limit(limit)
    out = [dict(r) for r in conn.execute(q).mappings()]
    following: datetime | None = None
    for row in out:  # newest first: the next change is the one handled before
        before = _false_alarms(conn, stream, None, row["ts"])
        after = _false_alarms(conn, stream, row["ts"], following)
        row["false_alarm_before"], row["frames_before"] = before
        row["false_alarm_after"], row["frames_after"] = after
        following = row["ts"]
    return out


def _false_alarms(
    conn: Connection, stream: str, start: datetime | None, end: datetime | None
) -> tuple[float | None, int]:
    """(rate, frames) over the frames decided in ``[start, end)``: the last ``RATE_FRAMES``
    when only ``end`` bounds them, else the first ``RATE_FRAMES``."""
    f, fb = s.T_FRAMES, st.T_FEEDBACK
    confirmed = select(fb.c.frame_key).where(fb.c.stream == stream, fb.c.label == "confirmed")
    q = select(f.c.verdict, f.c.frame_key.in_(confirmed).label("confirmed")).where(
        f.c.stream == stream
    )
    if start is not None:
        q = q.where(f.c.decided_at >= start)
    if end is not None:
        q = q.where(f.c.decided_at < end)
    newest_first = start is None
    q = q.order_by(f.c.decided_at.desc() if newest_first else f.c.decided_at).limit(RATE_FRAMES)
    rows = conn.execute(q).all()
    alarms = sum(1 for verdict, conf in rows if verdict != "ok" and not conf)
    return (alarms / len(rows) if rows else None, len(rows))


def teach_change(conn: Connection, stream: str, version: int | None = None) -> Row | None:
    """One change of a camera's taught state with both states (the latest when no version)."""
    t = st.T_TEACH_CHANGES
    q = select(t).where(t.c.stream == stream)
    q = q.where(t.c.version == version) if version is not None else q
    row = conn.execute(q.order_by(t.c.version.desc(), t.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row is not None else None
