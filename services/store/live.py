"""Read queries of the page's live views: camera tiles, flagged frames, rate and sensor series."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    case,
    cast,
    func,
    literal_column,
    select,
)

from broker.messages import utcnow
from services.store import schema as s
from services.store.queries import clean, list_families

Row = dict[str, Any]


def _bucket(conn: Connection, col: Any, bucket_s: int) -> ColumnElement[Any]:
    """The start (epoch seconds) of the ``bucket_s`` slot a timestamp falls in, on either
    engine (SQLite keeps naive UTC text, Postgres a timestamptz)."""
    b = int(bucket_s)
    if conn.dialect.name == "postgresql":
        epoch = func.floor(func.extract("epoch", col) / b) * b
    else:
        # integer division of integers: SQLite's own "/", not SQLAlchemy's true division
        epoch = cast(func.strftime("%s", col), Integer).op("/")(b) * b
    return cast(epoch, BigInteger)


def camera_tiles(conn: Connection, window_s: float, now: datetime | None = None) -> list[Row]:
    """One tile per camera that decided a frame in the last ``window_s``: frames/min, defect
    rate, the latest verdict and the latest flagged frame that has a picture."""
    now = now or utcnow()
    f = s.T_FRAMES
    bad = func.sum(case((f.c.verdict != "ok", 1), else_=0))
    q = (
        select(f.c.stream, func.count(), bad, func.min(f.c.decided_at))
        .where(f.c.decided_at >= now - timedelta(seconds=window_s))
        .group_by(f.c.stream)
    )
    tiles = []
    rows: Any = conn.execute(q).all()
    for stream, frames, n_bad, first in rows:
        # a camera that started within the window: its rate over the time it has run
        ran_s = min(window_s, max(60.0, (now - first).total_seconds() if first else window_s))
        last = _frame(conn, f.c.stream == stream, newest=f.c.decided_at)
        assert last is not None
        flagged = _frame(
            conn, f.c.stream == stream, f.c.evidence_key.is_not(None), newest=f.c.decided_at
        )
        tiles.append(
            {
                "stream": stream,
                "site": last["site"],
                "line": last["line"],
                "station": last["station"],
                "camera": last["camera"],
                "frames": int(frames),
                "frames_per_min": frames * 60.0 / ran_s,
                "defect_rate": int(n_bad or 0) / frames if frames else 0.0,
                "latest": last,
                "last_flagged": flagged,
            }
        )
    tiles.sort(key=lambda t: (t["site"], t["line"], t["station"], t["camera"]))
    out: list[Row] = clean(tiles)
    return out


_FRAME_COLS = (
    "id",
    "stream",
    "site",
    "line",
    "station",
    "camera",
    "seq",
    "decided_at",
    "verdict",
    "defect_score",
    "novelty_score",
    "predicted_class",
    "model_version",
    "part",
    "family",
)


def _frame(conn: Connection, *conds: Any, newest: Any = None) -> Row | None:
    f = s.T_FRAMES
    q = select(*(f.c[c] for c in _FRAME_COLS), f.c.evidence_key.is_not(None).label("has_image"))
    q = q.where(*conds)
    if newest is not None:
        q = q.order_by(newest.desc(), f.c.id.desc())
    row = conn.execute(q.limit(1)).mappings().first()
    return dict(row) if row else None


def flagged_frames(conn: Connection, limit: int = 24, site: str | None = None) -> list[Row]:
    """The newest frames judged defective or anomalous that have an evidence picture."""
    f = s.T_FRAMES
    conds = [f.c.evidence_key.is_not(None), f.c.verdict != "ok"]
    if site is not None:
        conds.append(f.c.site == site)
    q = (
        select(*(f.c[c] for c in _FRAME_COLS))
        .where(*conds)
        .order_by(f.c.decided_at.desc(), f.c.id.desc())
        .limit(limit)
    )
    rows: list[Row] = clean([dict(r) for r in conn.execute(q).mappings()])
    return rows


def station_rates(
    conn: Connection, window_s: float, bucket_s: int, now: datetime | None = None
) -> list[Row]:
    """Per station, frames and flagged frames per ``bucket_s`` slot over the last
    ``window_s`` (slots without frames are absent: the page draws them as gaps)."""
    now = now or utcnow()
    f = s.T_FRAMES
    slot = _bucket(conn, f.c.decided_at, bucket_s).label("slot")
    bad = func.sum(case((f.c.verdict != "ok", 1), else_=0)).label("bad")
    q = (
        select(f.c.site, f.c.line, f.c.station, slot, func.count().label("frames"), bad)
        .where(f.c.decided_at >= now - timedelta(seconds=window_s))
        .group_by(f.c.site, f.c.line, f.c.station, literal_column("slot"))
        .order_by(f.c.site, f.c.line, f.c.station, literal_column("slot"))
    )
    series: dict[tuple[str, str, str], list[Row]] = {}
    rows: Any = conn.execute(q).all()
    for site, line, station, t, frames, n_bad in rows:
        pts = series.setdefault((site, line, station), [])
        pts.append({"t": int(t), "frames": int(frames), "bad": int(n_bad or 0)})
    return [{"site": k[0], "line": k[1], "station": k[2], "points": v} for k, v in series.items()]


def sensor_series(
    conn: Connection,
    window_s: float,
    bucket_s: int,
    now: datetime | None = None,
    max_streams: int = 64,
) -> list[Row]:
    """Per sensor stream, the mean (and range) of its readings per ``bucket_s`` slot over the
    last ``window_s``, its latest value and how many anomalies it raised in the window."""
    now = now or utcnow()
    since = now - timedelta(seconds=window_s)
    r, an = s.T_READINGS, s.T_ANOMALIES
    slot = _bucket(conn, r.c.ts, bucket_s).label("slot")
    q = (
        select(r.c.stream, slot, func.avg(r.c.value), func.min(r.c.value), func.max(r.c.value))
        .where(r.c.ts >= since)
        .group_by(r.c.stream, literal_column("slot"))
        .order_by(r.c.stream, literal_column("slot"))
    )
    series: dict[str, list[list[float]]] = {}
    rows: Any = conn.execute(q).all()
    for stream, t, mean, lo, hi in rows:
        if stream in series or len(series) < max_streams:
            series.setdefault(stream, []).append([int(t), float(mean), float(lo), float(hi)])
    counts: dict[str, int] = dict(
        conn.execute(
            select(an.c.stream, func.count()).where(an.c.ts >= since).group_by(an.c.stream)
        ).all()
    )
    out = []
    for stream, pts in series.items():
        last = conn.execute(
            select(r.c.value, r.c.unit, r.c.ts)
            .where(r.c.stream == stream)
            .order_by(r.c.ts.desc())
            .limit(1)
        ).first()
        out.append(
            {
                "stream": stream,
                "points": pts,
                "last": None if last is None else last.value,
                "unit": None if last is None else last.unit,
                "anomalies": int(counts.get(stream, 0)),
            }
        )
    cleaned: list[Row] = clean(out)
    return cleaned


def family_gallery(conn: Connection, samples: int = 6) -> list[Row]:
    """Active families, largest first, each with ``samples`` exemplar frames (newest first)
    and the cameras it was seen on."""
    f = s.T_FRAMES
    fams = list_families(conn, samples=samples)
    for fam in fams:
        q = select(f.c.stream).where(f.c.family == fam["family"]).distinct().limit(20)
        fam["cameras"] = sorted(conn.execute(q).scalars())
    return fams
