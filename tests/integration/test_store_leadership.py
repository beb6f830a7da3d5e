"""Leadership and the dispatcher's repo API on Postgres (advisory lock + lease row)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.store import repo
from services.store.engine import make_engine, upgrade
from services.store.leadership import Leadership

pytestmark = pytest.mark.integration


def test_advisory_lock_leadership(postgres_url: str) -> None:
    upgrade(postgres_url)
    a = Leadership(postgres_url, "dispatcher", "A", ttl_s=5)
    b = Leadership(postgres_url, "dispatcher", "B", ttl_s=5)
    other = Leadership(postgres_url, "other-service", "B", ttl_s=5)
    try:
        assert a.try_acquire() and a.try_acquire()  # idempotent while leading
        assert a.leader() == "A" and b.leader() == "A"
        assert not b.try_acquire()
        assert other.try_acquire()  # a different lease name is independent
        assert a.renew()
        assert a._conn is not None
        a._conn.invalidate()  # the leader's session dies (crash, network): its lock goes
        a._conn = None
        assert not a.renew()
        assert b.try_acquire() and b.leader() == "B"
        b.release()
        assert b.leader() is None
        assert a.try_acquire()
    finally:
        for lead in (a, b, other):
            lead.close()


def test_dispatcher_repo_api_on_postgres(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    at = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    try:
        with engine.begin() as c:
            repo.record_assignment(c, "W1", 1, ["a", "b"], "initial", 2.0, at)
            repo.record_assignment(c, "W1", 3, ["b"], "rebalance", 1.0, at)
            repo.record_assignment(c, "W2", 3, ["a"], "rebalance", 1.0, at)
            repo.record_assignment(c, "W2", 3, ["a"], "rebalance", 1.0, at)
        with engine.connect() as c:
            assert repo.max_epoch(c) == 3
            assert repo.latest_assignments(c) == {"W1": (3, ("b",)), "W2": (3, ("a",))}
            assert [h[:2] for h in repo.assignment_history(c)] == [("W1", 1), ("W1", 3), ("W2", 3)]
    finally:
        engine.dispose()
