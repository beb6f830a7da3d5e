"""Schema, migrations gate and repository functions on SQLite (hermetic)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from store_support import T0, cam, decision, family, migrated_sqlite, status, verdict

from services.store import repo
from services.store import schema as s
from services.store.engine import (
    SchemaBehind,
    downgrade,
    head_revision,
    make_engine,
    require_head,
)
from services.store.fence import EpochFence
from services.store.leadership import Leadership
from services.store.rows import plan

pytestmark = pytest.mark.unit


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_sqlite(tmp_path))


def _count(engine: Engine, table: s.Table) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_sqlite_pragmas(engine: Engine) -> None:
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    normal = make_engine(str(engine.url), synchronous="normal")
    with normal.connect() as c:
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    with pytest.raises(ValueError):
        make_engine(str(engine.url), synchronous="sometimes")


def test_require_head_refuses_a_database_that_is_behind(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    assert require_head(make_engine(url)) == head_revision()
    downgrade(url, "base")
    with pytest.raises(SchemaBehind, match="linewatch db upgrade"):
        require_head(make_engine(url))
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaBehind, match=r"no LineWatch schema.*linewatch db upgrade"):
        require_head(empty)


def test_views_exist_and_answer(engine: Engine) -> None:
    p = plan(verdict(cam(), 1, kind="defect"))
    assert p is not None
    with engine.begin() as c:
        repo.insert_frames(c, p.rows["frames"])
    with engine.connect() as c:
        row = c.execute(text("SELECT * FROM v_defect_rate_hourly")).mappings().one()
        for view in ("v_open_alerts", "v_family_trend", "v_worker_health"):
            c.execute(text(f"SELECT * FROM {view}")).all()
    assert (row["frames"], row["defects"], row["defect_rate"]) == (1, 1, 1.0)
    assert row["hour"] == "2026-03-02 06:00:00"


def test_insert_ignore_is_idempotent(engine: Engine) -> None:
    rows = [r for i in range(5) for r in plan(verdict(cam(), i)).rows["frames"]]  # type: ignore[union-attr]
    for _ in range(3):
        with engine.begin() as c:
            repo.insert_frames(c, rows + rows)
    assert _count(engine, s.T_FRAMES) == 5


def test_timestamps_are_utc_aware(engine: Engine) -> None:
    p = plan(verdict(cam(), 1))
    with engine.begin() as c:
        repo.insert_frames(c, p.rows["frames"])  # type: ignore[union-attr]
        got: datetime = c.execute(select(s.T_FRAMES.c.decided_at)).scalar_one()
    assert got == T0 + timedelta(milliseconds=25) and got.utcoffset() == timedelta(0)


def test_family_before_and_after_the_verdict(engine: Engine) -> None:
    early, late = verdict(cam(), 1, kind="anomaly"), verdict(cam(), 2, kind="anomaly")
    with engine.begin() as c:
        repo.set_frame_family(c, early.key, "F1", stream=early.stream)  # verdict not there yet
        repo.insert_frames(c, plan(early).rows["frames"])  # type: ignore[union-attr]
        repo.insert_frames(c, plan(late).rows["frames"])  # type: ignore[union-attr]
        repo.set_frame_family(c, late.key, "F2")
        repo.set_frame_family(c, late.key, "F0", ts=T0 - timedelta(hours=1))  # older: ignored
        fams: dict[str, str | None] = dict(
            c.execute(select(s.T_FRAMES.c.frame_key, s.T_FRAMES.c.family)).all()
        )
    assert fams == {early.key: "F1", late.key: "F2"}


def test_worker_status_ignores_stale_deaths(engine: Engine) -> None:
    rows = lambda m: plan(m).rows["workers"]  # type: ignore[union-attr]  # noqa: E731
    with engine.begin() as c:
        repo.upsert_workers(c, rows(status("W1", "online", 3)))
        repo.upsert_workers(c, rows(status("W1", "offline", 2, at=T0 + timedelta(minutes=1))))
        repo.upsert_workers(c, rows(status("W1", "heartbeat", 3, at=T0 + timedelta(seconds=5))))
        w = c.execute(select(s.T_WORKERS)).one()
    assert (w.state, w.counter, w.last_seen) == ("heartbeat", 3, T0 + timedelta(seconds=5))


def test_family_updates_keep_the_newest(engine: Engine) -> None:
    rows = lambda m: plan(m).rows["defect_families"]  # type: ignore[union-attr]  # noqa: E731
    with engine.begin() as c:
        repo.upsert_families(c, rows(family("F1", size=5, at=T0 + timedelta(hours=2))))
        repo.upsert_families(c, rows(family("F1", size=3, at=T0 + timedelta(hours=1))))
        size: int = c.execute(select(s.T_FAMILIES.c.size)).scalar_one()
    assert size == 5


def test_dispatcher_api(engine: Engine) -> None:
    with engine.begin() as c:
        assert repo.max_epoch(c) == 0 and repo.latest_assignments(c) == {}
        repo.record_assignment(c, "W1", 1, ["a", "b"], "initial", 2.0, T0)
        repo.record_assignment(c, "W2", 1, ["c"], "initial", 1.0, T0)
        repo.record_assignment(c, "W1", 2, ["a"], "rebalance", 1.5, T0)
        repo.record_assignment(c, "W1", 2, ["a"], "rebalance", 1.5, T0)  # idempotent
        repo.record_decision(c, decision("d1"))
        repo.record_decision(c, decision("d1"))
        assert repo.max_epoch(c) == 2
        assert repo.latest_assignments(c) == {"W1": (2, ("a",)), "W2": (1, ("c",))}
    assert _count(engine, s.T_DECISIONS) == 1
    assert _count(engine, s.T_ASSIGNMENT_STREAMS) == 4


def test_epoch_fence_rules() -> None:
    f = EpochFence()
    assert f.accepts("x", 0)  # nothing known: static assignment
    f.apply("W1", 3, ["x", "y"])
    f.apply("W1", 6, ["x", "y"])  # same owner, new epoch: in-flight epoch-3 results still ok
    assert f.accepts("x", 3) and not f.accepts("x", 2)
    f.apply("W2", 7, ["x"])
    assert not f.accepts("x", 6) and f.accepts("x", 7) and f.accepts("y", 3)
    f.apply("W1", 5, ["x"])  # an older assignment arriving late changes nothing
    assert f.fence("x") == 7


def test_leadership_on_sqlite(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    a = Leadership(url, "dispatcher", "A", ttl_s=0.3)
    b = Leadership(url, "dispatcher", "B", ttl_s=0.3)
    try:
        assert a.try_acquire() and a.leader() == "A"
        assert not b.try_acquire()
        assert a.renew() and a.try_acquire()
        with make_engine(url).begin() as c:  # A stops renewing: its lease runs out
            c.execute(s.T_LEASES.update().values(expires_at=T0))
        assert a.leader() is None
        assert b.try_acquire() and b.leader() == "B"
        assert not a.renew()
        b.release()
        assert b.leader() is None and a.try_acquire()
    finally:
        a.close()
        b.close()
