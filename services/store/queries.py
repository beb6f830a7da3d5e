"""Read queries and small writes of the operator feed (alerts, families, lines, workers, tokens)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, insert, select, update

from broker.messages import utcnow
from services.store import schema as s

Row = dict[str, Any]


@dataclass(frozen=True)
class AlertFilter:
    """Filters of ``GET /api/alerts`` (already validated by the caller)."""

    status: str | None = None
    severity: str | None = None
    site: str | None = None
    line: str | None = None
    station: str | None = None
    family: str | None = None
    kind: str | None = None
    since: datetime | None = None
    limit: int = 50
    offset: int = 0


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None, recursively (responses never carry NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


# ---- alerts --------------------------------------------------------------------------------


def list_alerts(conn: Connection, f: AlertFilter) -> tuple[list[Row], int]:
    """One page of alerts (newest activity first) and the total matching."""
    t = s.T_ALERTS
    conds = [
        getattr(t.c, name) == getattr(f, name)
        for name in ("status", "severity", "site", "line", "station", "family", "kind")
        if getattr(f, name) is not None
    ]
    if f.since is not None:
        conds.append(t.c.last_seen >= f.since)
    total = int(conn.execute(select(func.count()).select_from(t).where(*conds)).scalar_one())
    q = (
        select(t)
        .where(*conds)
        .order_by(t.c.last_seen.desc(), t.c.id.desc())
        .limit(f.limit)
        .offset(f.offset)
    )
    return [clean(dict(r)) for r in conn.execute(q).mappings()], total


def get_alert(conn: Connection, alert_id: int) -> Row | None:
    t = s.T_ALERTS
    row = conn.execute(select(t).where(t.c.id == alert_id)).mappings().first()
    return clean(dict(row)) if row else None


def alert_history(conn: Connection, alert_id: int) -> list[Row]:
    e = s.T_ALERT_EVENTS
    q = (
        select(e.c.id, e.c.action, e.c.actor, e.c.at, e.c.assignee, e.c.note)
        .where(e.c.alert_id == alert_id)
        .order_by(e.c.id)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def events_after(conn: Connection, after_id: int, limit: int = 200) -> list[Row]:
    """Lifecycle events with id > ``after_id`` in id order, each with its alert's state."""
    e, a = s.T_ALERT_EVENTS, s.T_ALERTS
    q = (
        select(
            e.c.id.label("event_id"),
            e.c.action,
            e.c.actor,
            e.c.at,
            e.c.note,
            e.c.assignee.label("event_assignee"),
            e.c.event_key.label("event_key"),
            a,
        )
        .join(a, a.c.id == e.c.alert_id)
        .where(e.c.id > after_id)
        .order_by(e.c.id)
        .limit(limit)
    )
    return [clean(dict(r)) for r in conn.execute(q).mappings()]


def last_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(s.T_ALERT_EVENTS.c.id), 0))).scalar_one())


# ---- evidence images -------------------------------------------------------------------------


def image_for_frame(conn: Connection, frame_id: int) -> tuple[bytes, str] | None:
    """The evidence thumbnail of one frame (by ``frames.id``)."""
    f, ev = s.T_FRAMES, s.T_EVIDENCE
    key = conn.execute(select(f.c.frame_key, f.c.evidence_key).where(f.c.id == frame_id)).first()
    if key is None:
        return None
    cond = (
        ev.c.evidence_key == key.evidence_key
        if key.evidence_key
        else (ev.c.frame_key == key.frame_key)
    )
    row = conn.execute(select(ev.c.data, ev.c.content_type).where(cond).limit(1)).first()
    return (bytes(row.data), row.content_type) if row else None


def image_for_alert(conn: Connection, alert_id: int) -> tuple[bytes, str] | None:
    a, ev = s.T_ALERTS, s.T_EVIDENCE
    q = (
        select(ev.c.data, ev.c.content_type)
        .join(a, a.c.evidence_key == ev.c.evidence_key)
        .where(a.c.id == alert_id)
    )
    row = conn.execute(q).first()
    return (bytes(row.data), row.content_type) if row else None


# ---- families ----------------------------------------------------------------------------------


def list_families(conn: Connection, *, include_merged: bool = False, samples: int = 4) -> list[Row]:
    """Defect families (largest first), each with up to ``samples`` evidence frame ids."""
    t = s.T_FAMILIES
    q = select(t).order_by(t.c.size.desc(), t.c.family).limit(500)
    if not include_merged:
        q = q.where(t.c.status == "active")
    fams = [clean(dict(r)) for r in conn.execute(q).mappings()]
    for fam in fams:
        fam["sample_frames"] = family_samples(conn, fam["family"], samples)
    return fams


def family_samples(conn: Connection, family: str, n: int) -> list[int]:
    f = s.T_FRAMES
    q = (
        select(f.c.id)
        .where(f.c.family == family, f.c.evidence_key.is_not(None))
        .order_by(f.c.decided_at.desc())
        .limit(n)
    )
    return list(map(int, conn.execute(q).scalars()))


def get_family(conn: Connection, family: str) -> Row | None:
    t = s.T_FAMILIES
    row = conn.execute(select(t).where(t.c.family == family)).mappings().first()
    return clean(dict(row)) if row else None


def record_curation(
    conn: Connection,
    family: str,
    op: str,
    actor: str,
    request_id: str,
    *,
    name: str | None = None,
    into: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record an operator's rename/merge/split in SQL (the clustering service applies it)."""
    now = now or utcnow()
    t = s.T_FAMILIES
    cur = conn.execute(select(t).where(t.c.family == family)).mappings().one()
    values: Row = {"updated_at": now}
    event = {"rename": "renamed", "merge": "merged", "split": "split_requested"}[op]
    if op == "rename" and name:
        values["name"] = name[:128]
    elif op == "merge" and into:
        values.update(status="merged", merged_into=into)
    conn.execute(update(t).where(t.c.family == family).values(**values))
    conn.execute(
        insert(s.T_FAMILY_EVENTS).values(
            event_key=f"curation:{request_id}:{family}"[:600],
            family=family,
            event=event,
            name=values.get("name", cur["name"]),
            size=cur["size"],
            merged_into=into,
            actor=actor[:128],
            ts=now,
        )
    )


# ---- lines and workers ----------------------------------------------------------------------


def line_stats(conn: Connection, window_s: float, now: datetime | None = None) -> list[Row]:
    """Per station over the last ``window_s``: frames/min, defect rate, last verdict."""
    now = now or utcnow()
    f = s.T_FRAMES
    since = now - timedelta(seconds=window_s)
    bad = func.sum(case((f.c.verdict != "ok", 1), else_=0))
    q = (
        select(
            f.c.site,
            f.c.line,
            f.c.station,
            func.count().label("frames"),
            bad.label("bad"),
            func.max(f.c.id).label("last_id"),
        )
        .where(f.c.decided_at >= since)
        .group_by(f.c.site, f.c.line, f.c.station)
    )
    out = []
    for r in conn.execute(q):
        last = conn.execute(select(f.c.verdict, f.c.decided_at).where(f.c.id == r.last_id)).one()
        out.append(
            {
                "site": r.site,
                "line": r.line,
                "station": r.station,
                "frames": int(r.frames),
                "frames_per_min": r.frames * 60.0 / window_s,
                "defect_rate": int(r.bad or 0) / r.frames if r.frames else 0.0,
                "last_verdict": last.verdict,
                "last_at": last.decided_at,
            }
        )
    out.sort(key=lambda x: (x["site"], x["line"], x["station"]))
    cleaned: list[Row] = clean(out)
    return cleaned


def list_workers(conn: Connection) -> list[Row]:
    """Every process's latest status (live ones first) with its newest assignment."""
    w, a = s.T_WORKERS, s.T_ASSIGNMENTS
    live_first = case((w.c.state == "offline", 1), else_=0)
    q = select(w).order_by(live_first, w.c.worker)
    workers = [dict(r) for r in conn.execute(q).mappings()]
    newest = select(a.c.worker, func.max(a.c.epoch).label("epoch")).group_by(a.c.worker).subquery()
    q = select(a.c.worker, a.c.epoch, a.c.streams, a.c.rates, a.c.decided_at).join(
        newest, (newest.c.worker == a.c.worker) & (newest.c.epoch == a.c.epoch)
    )
    assigned = {
        r.worker: {
            "epoch": int(r.epoch),
            "streams": list(r.streams or []),
            "rates": dict(r.rates or {}),
            "decided_at": r.decided_at,
        }
        for r in conn.execute(q)
    }
    now = utcnow()
    for row in workers:
        row["assignment"] = assigned.get(row["worker"])
        row["age_s"] = round((now - row["last_seen"]).total_seconds(), 1)  # since last status
    cleaned: list[Row] = clean(workers)
    return cleaned


# ---- API tokens ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: Connection, token: str, role: str, name: str) -> int:
    """Store only the sha256 of ``token``."""
    res = conn.execute(
        insert(s.T_TOKENS).values(
            token_hash=token_hash(token), role=role, name=name[:128], created_at=utcnow()
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def lookup_token(conn: Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of a valid, unrevoked token, else None."""
    t = s.T_TOKENS
    row = conn.execute(
        select(t.c.name, t.c.role).where(
            t.c.token_hash == token_hash(token), t.c.revoked_at.is_(None)
        )
    ).first()
    return (row.name, row.role) if row else None


def live_tokens(conn: Connection, tokens: list[str]) -> set[str]:
    """Those of ``tokens`` that exist and are not revoked (one query for all)."""
    by_hash = {token_hash(t): t for t in tokens}
    if not by_hash:
        return set()
    t = s.T_TOKENS
    q = select(t.c.token_hash).where(t.c.token_hash.in_(list(by_hash)), t.c.revoked_at.is_(None))
    found: list[str] = list(conn.execute(q).scalars())
    return {by_hash[h] for h in found}


def revoke_token(conn: Connection, name: str) -> int:
    t = s.T_TOKENS
    res = conn.execute(
        update(t).where(t.c.name == name, t.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return int(res.rowcount)


def list_tokens(conn: Connection) -> list[Row]:
    t = s.T_TOKENS
    q = select(t.c.id, t.c.name, t.c.role, t.c.created_at, t.c.revoked_at).order_by(t.c.id)
    return [dict(r) for r in conn.execute(q).mappings()]


def threshold_history(conn: Connection, stream: str, limit: int = 100) -> list[Row]:
    t = s.T_THRESHOLDS
    q = (
        select(
            t.c.defect_threshold,
            t.c.novelty_threshold,
            t.c.previous_defect_threshold,
            t.c.previous_novelty_threshold,
            t.c.actor,
            t.c.reason,
            t.c.worker,
            t.c.ts,
        )
        .where(t.c.stream == stream)
        .order_by(t.c.ts.desc())
        .limit(limit)
    )
    return [clean(dict(r)) for r in conn.execute(q).mappings()]
