"""``writer(engine)``: a read-then-write transaction beside another SQLite writer waits for it
instead of failing with "database is locked" (the operator's Acknowledge click that failed
when the store committed between the feed's read and its write)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from services.store.engine import make_engine, writer

pytestmark = pytest.mark.unit


def _engines(tmp_path: Path) -> tuple[Engine, Engine]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    feed = make_engine(url, busy_timeout_ms=5000)
    store = make_engine(url, busy_timeout_ms=5000, immediate=True)
    with store.begin() as c:
        c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        c.execute(text("INSERT INTO t (id, v) VALUES (1, 'active')"))
    return feed, store


def test_a_deferred_read_then_write_fails_when_another_writer_commits_between(
    tmp_path: Path,
) -> None:
    feed, store = _engines(tmp_path)
    with pytest.raises(OperationalError, match="locked"), feed.begin() as c:
        assert c.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == "active"
        with store.begin() as s:  # the store commits a batch meanwhile
            s.execute(text("INSERT INTO t (v) VALUES ('frame')"))
        c.execute(text("UPDATE t SET v = 'acknowledged' WHERE id = 1"))


def test_the_writer_engine_waits_for_the_other_writer_instead(tmp_path: Path) -> None:
    feed, store = _engines(tmp_path)
    done = threading.Event()

    def store_batch() -> None:
        with store.begin() as s:  # waits on the busy timeout for the feed's transaction
            s.execute(text("INSERT INTO t (v) VALUES ('frame')"))
        done.set()

    with writer(feed).begin() as c:
        assert c.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == "active"
        th = threading.Thread(target=store_batch)
        th.start()
        assert not done.wait(0.3)  # the store queues behind the feed's write lock
        c.execute(text("UPDATE t SET v = 'acknowledged' WHERE id = 1"))
    th.join(10)
    assert done.is_set()
    with feed.connect() as c:
        assert c.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == "acknowledged"
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


def test_writer_shares_the_pool_and_leaves_reads_deferred(tmp_path: Path) -> None:
    feed, store = _engines(tmp_path)
    assert writer(feed).pool is feed.pool
    with feed.connect() as c:  # a read holds no write lock: the store commits beside it
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
        with store.begin() as s:
            s.execute(text("INSERT INTO t (v) VALUES ('frame')"))
