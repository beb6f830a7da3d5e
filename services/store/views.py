"""SQL views for humans, versioned: a migration creates exactly the version it names."""

from __future__ import annotations

from collections.abc import Callable

# Each view: name -> {dialect: SELECT}. A new definition goes into a NEW version dict with a
# new migration; a version already used by a migration is never edited.

_HOUR = {
    "postgresql": "date_trunc('hour', f.decided_at)",
    "sqlite": "strftime('%Y-%m-%d %H:00:00', f.decided_at)",
}
_DAY = {
    "postgresql": "date_trunc('day', f.decided_at)",
    "sqlite": "strftime('%Y-%m-%d 00:00:00', f.decided_at)",
}
_AGE_S = {
    "postgresql": "EXTRACT(EPOCH FROM (now() - {col}))",
    "sqlite": "(julianday('now') - julianday({col})) * 86400.0",
}
_HOUR_AGO = {
    "postgresql": "now() - interval '1 hour'",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour')",
}


def _defect_rate_hourly(d: str) -> str:
    return f"""
SELECT f.site, f.line, f.station, {_HOUR[d]} AS hour,
       COUNT(*) AS frames,
       SUM(CASE WHEN f.verdict = 'defect' THEN 1 ELSE 0 END) AS defects,
       SUM(CASE WHEN f.verdict = 'anomaly' THEN 1 ELSE 0 END) AS anomalies,
       1.0 * SUM(CASE WHEN f.verdict <> 'ok' THEN 1 ELSE 0 END) / COUNT(*) AS defect_rate,
       AVG(f.latency_ms) AS avg_latency_ms
FROM frames f
GROUP BY f.site, f.line, f.station, {_HOUR[d]}"""


def _open_alerts(d: str) -> str:
    return f"""
SELECT a.id, a.kind, a.severity, a.status, a.count, a.first_seen, a.last_seen,
       a.site, a.line, a.station, a.stream, a.family, a.message, a.assignee,
       a.acknowledged_by, a.acknowledged_at, a.escalated_at, a.evidence_key,
       {_AGE_S[d].format(col="a.first_seen")} AS age_s
FROM alerts a
WHERE a.status <> 'resolved'"""


def _family_trend(d: str) -> str:
    return f"""
SELECT f.family, fam.name, fam.status, {_DAY[d]} AS day, COUNT(*) AS frames,
       COUNT(DISTINCT f.stream) AS cameras
FROM frames f
LEFT JOIN defect_families fam ON fam.family = f.family
WHERE f.family IS NOT NULL
GROUP BY f.family, fam.name, fam.status, {_DAY[d]}"""


def _worker_health(d: str) -> str:
    return f"""
SELECT w.worker, w.role, w.state, w.counter, w.host, w.last_seen,
       {_AGE_S[d].format(col="w.last_seen")} AS seconds_since_seen,
       w.capacity_fps, w.load, w.queue_depth, w.p95_ms, w.model_version, w.cost_per_hour,
       w.epoch,
       (SELECT COUNT(*) FROM frames f
         WHERE f.worker = w.worker AND f.decided_at >= {_HOUR_AGO[d]}) AS frames_last_hour,
       (SELECT COUNT(*) FROM gaps g
         WHERE g.worker = w.worker AND g.ts >= {_HOUR_AGO[d]}) AS gaps_last_hour
FROM workers w"""


VIEWS_V1: dict[str, Callable[[str], str]] = {
    "v_defect_rate_hourly": _defect_rate_hourly,
    "v_open_alerts": _open_alerts,
    "v_family_trend": _family_trend,
    "v_worker_health": _worker_health,
}

VERSIONS: dict[int, dict[str, Callable[[str], str]]] = {1: VIEWS_V1}


def create_statements(version: int, dialect: str) -> list[str]:
    """``CREATE VIEW`` statements of one view version for ``dialect``."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"views exist for postgresql and sqlite, not {dialect!r}")
    return [f"CREATE VIEW {name} AS{body(dialect)}" for name, body in VERSIONS[version].items()]


def drop_statements(version: int) -> list[str]:
    return [f"DROP VIEW IF EXISTS {name}" for name in reversed(list(VERSIONS[version]))]
