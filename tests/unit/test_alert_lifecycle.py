"""Alert lifecycle: pure dedup/cooldown/suppression/escalation decisions, and SQLite ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from broker.messages import Alert
from services.store import alert_ops as ops
from services.store import alerts as al
from services.store import schema as s
from services.store.engine import make_engine, upgrade

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
POLICY = al.Policy(dedup_window_s=600, cooldown_s=300)


def _at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def test_first_event_raises_and_repeats_in_window_dedup() -> None:
    assert al.decide(T0, None, False, POLICY) == "raised"
    open_ = al.Latest(1, "active", T0, None)
    assert al.decide(_at(599), open_, False, POLICY) == "deduped"
    assert al.decide(_at(-30), open_, False, POLICY) == "deduped"  # late, out of order
    assert al.decide(_at(601), open_, False, POLICY) == "raised"
    acked = al.Latest(1, "acknowledged", T0, None)
    assert al.decide(_at(10), acked, False, POLICY) == "deduped"


def test_cooldown_after_resolve_then_new_alert() -> None:
    resolved = al.Latest(1, "resolved", T0, _at(100))
    assert al.decide(_at(399), resolved, False, POLICY) == "cooldown"
    assert al.decide(_at(400), resolved, False, POLICY) == "raised"


def test_suppression_wins_and_matches_place_kind_time() -> None:
    w = al.Window(line="L1", starts_at=T0, ends_at=_at(3600), station="S1")
    assert al.suppressed_by([w], "site", "L1", "S1", "defect", _at(5)) is w
    assert al.suppressed_by([w], "site", "L1", "S2", "defect", _at(5)) is None
    assert al.suppressed_by([w], "site", "L2", "S1", "defect", _at(5)) is None
    assert al.suppressed_by([w], "site", "L1", "S1", "defect", _at(3600)) is None  # end excl.
    only_sensor = al.Window(line="L1", starts_at=T0, ends_at=_at(60), kind="sensor")
    assert al.suppressed_by([only_sensor], "x", "L1", "S9", "defect", _at(1)) is None
    assert al.decide(T0, None, True, POLICY) == "suppressed"


def test_transitions_and_severity() -> None:
    assert al.next_status("active", "acknowledge") == "acknowledged"
    assert al.next_status("acknowledged", "resolve") == "resolved"
    assert al.next_status("active", "resolve") == "resolved"
    assert al.next_status("resolved", "comment") == "resolved"
    for status, action in (
        ("acknowledged", "acknowledge"),
        ("resolved", "acknowledge"),
        ("resolved", "resolve"),
        ("resolved", "assign"),
        ("active", "x"),
    ):
        with pytest.raises(al.LifecycleError):
            al.next_status(status, action)
    assert al.worse("minor", "critical") == "critical"
    assert al.worse("major", "warning") == "major"


def test_escalation_rule() -> None:
    due = al.escalation_due
    assert due("critical", "active", None, None, T0, _at(120), 120)
    assert not due("critical", "active", None, None, T0, _at(119), 120)
    assert not due("major", "active", None, None, T0, _at(999), 120)
    assert not due("critical", "acknowledged", _at(5), None, T0, _at(999), 120)
    assert not due("critical", "active", None, _at(130), T0, _at(999), 120)


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEWATCH_ALERT_DEDUP_WINDOW_S", "30")
    assert al.Policy.from_env().dedup_window_s == 30
    monkeypatch.setenv("LINEWATCH_ALERT_COOLDOWN_S", "-1")
    with pytest.raises(ValueError, match="COOLDOWN"):
        al.Policy.from_env()
    al.default_policy.cache_clear()
    try:  # the writer never stops over a bad alert setting: defaults, and an error logged
        assert al.default_policy() == al.Policy()
    finally:
        al.default_policy.cache_clear()


def _alert(n: int, sec: float, **kw: object) -> Alert:
    base = dict(
        event_id=f"e{n}",
        kind="defect",
        severity="minor",
        site="p1",
        line="L1",
        station="S1",
        message=f"m{n}",
        worker="W1",
        ts=_at(sec),
    )
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def _store(conn: Connection, batch: list[Alert]) -> None:
    from services.store.repo import insert_ignore

    insert_ignore(
        conn,
        s.T_ALERT_SOURCE,
        [
            {
                "event_id": a.event_id,
                "kind": a.kind,
                "severity": a.severity,
                "site": a.site,
                "line": a.line,
                "station": a.station,
                "message": a.message,
                "ts": a.ts,
            }
            for a in batch
        ],
    )
    al.ingest(conn, batch, POLICY)


def test_ingest_on_sqlite_dedups_suppresses_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        ops.add_suppression(
            conn,
            al.Window(line="L1", station="S2", starts_at=T0, ends_at=_at(3600)),
            reason="maint",
            actor="bob",
        )
        _store(
            conn,
            [
                _alert(1, 0),
                _alert(2, 10, severity="critical"),
                _alert(2, 10),
                _alert(3, 20, station="S2"),
            ],
        )
    with engine.begin() as conn:
        _store(conn, [_alert(1, 0), _alert(2, 10)])  # redelivery: no effect
        rows = conn.execute(select(s.T_ALERTS)).mappings().all()
        assert [(r["count"], r["severity"], r["station"]) for r in rows] == [(2, "critical", "S1")]
        outcomes: dict[str, str] = dict(
            conn.execute(select(s.T_ALERT_SOURCE.c.event_id, s.T_ALERT_SOURCE.c.outcome)).all()
        )
        assert outcomes == {"e1": "raised", "e2": "deduped", "e3": "suppressed"}
        alert_id = rows[0]["id"]
        ops.act(conn, alert_id, "acknowledge", "alice", now=_at(30))
        with pytest.raises(al.LifecycleError):
            ops.act(conn, alert_id, "acknowledge", "alice")
        ops.act(conn, alert_id, "comment", "alice", note="looking")
        ops.act(conn, alert_id, "resolve", "carol", now=_at(40))
        _store(conn, [_alert(4, 100)])  # within cooldown of the resolve
        _store(conn, [_alert(5, 400)])  # after it: a new alert
        actions = [
            r.action
            for r in conn.execute(select(s.T_ALERT_EVENTS.c.action).order_by(s.T_ALERT_EVENTS.c.id))
        ]
        assert actions == ["raised", "repeated", "acknowledged", "commented", "resolved", "raised"]
        first = conn.execute(select(s.T_ALERTS).where(s.T_ALERTS.c.id == alert_id)).mappings().one()
        assert (first["acknowledged_by"], first["resolved_by"]) == ("alice", "carol")
        with pytest.raises(al.AlertNotFound):
            ops.act(conn, 999, "resolve", "x")
    engine.dispose()


def test_escalation_in_sql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        _store(conn, [_alert(1, 0, severity="critical"), _alert(2, 0, kind="anomaly")])
        assert ops.escalate_due(conn, 120, now=_at(60)) == []
        assert ops.escalate_due(conn, 120, now=_at(121)) == [1]
        assert ops.escalate_due(conn, 120, now=_at(500)) == []  # once only
    engine.dispose()
