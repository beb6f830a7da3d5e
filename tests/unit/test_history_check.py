"""The history checker of the fault tests, tested against itself: a real SQLite history is
clean, and deleting one stored frame or storing one twice makes it fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from history import GapRow, PublisherLog, assert_ok, check, check_log, engine_rows, sqlite_rows
from sqlalchemy import Engine, text
from store_support import cam, gap, migrated_sqlite, verdict

from services.store import gaps, repo
from services.store.engine import make_engine
from services.store.rows import plan

pytestmark = pytest.mark.unit

C = cam(site="hist")
S = C.key


def keys(*seqs: int) -> dict[str, int | None]:
    return {f"{S}#0:{q}": q for q in seqs}


@pytest.fixture()
def stored(tmp_path: Path) -> tuple[Engine, Path, PublisherLog]:
    """A real store history: seqs 0..19 published, 7..9 a failover gap, the rest stored."""
    url = migrated_sqlite(tmp_path)
    engine = make_engine(url)
    log = PublisherLog()
    with engine.begin() as c:
        for q in range(20):
            log.record(S, q)
            if 7 <= q <= 9:
                continue
            p = plan(verdict(C, q))
            assert p is not None
            repo.insert_frames(c, p.rows["frames"])
        g = plan(gap(C, 7, 9, reason="failover"))
        assert g is not None
        gaps.insert_gaps(c, g.rows["gaps"])
    return engine, Path(url.removeprefix("sqlite:///")), log


def test_a_real_history_is_clean_through_both_readers(
    stored: tuple[Engine, Path, PublisherLog],
) -> None:
    engine, db, log = stored
    for rows in (engine_rows(engine), sqlite_rows(db)):
        (h,) = check_log(log, rows)
        assert (h.published, h.stored, h.gapped, h.lost) == (20, 17, 3, 0)
        assert h.gaps == {"failover": 3} and h.ok(allowed_gaps={"failover"})
        assert not h.ok()  # a failover gap where the fault allows none is a failure
        assert_ok([h], {"failover"})


def test_deleting_one_stored_frame_fails(stored: tuple[Engine, Path, PublisherLog]) -> None:
    engine, _, log = stored
    with engine.begin() as c:
        c.execute(text("DELETE FROM frames WHERE frame_key = :k"), {"k": f"{S}#0:12"})
    (h,) = check_log(log, engine_rows(engine))
    assert (h.lost, h.lost_middle, h.lost_prefix, h.lost_postfix) == (1, 1, 0, 0)
    with pytest.raises(AssertionError, match="lost=1"):
        assert_ok([h], {"failover"})


def test_storing_one_frame_twice_fails(stored: tuple[Engine, Path, PublisherLog]) -> None:
    engine, _, log = stored
    real = engine_rows(engine)

    def doubled(stream: str) -> tuple[list[str], list[GapRow]]:
        frames, gaps = real(stream)  # the schema's unique key refuses a second row, so the
        return [*frames, frames[3]], gaps  # double is added where the checker reads

    (h,) = check_log(log, doubled)
    assert h.duplicated == 1 and h.lost == 0
    with pytest.raises(AssertionError, match="duplicated=1"):
        assert_ok([h], {"failover"})


def test_lost_split_prefix_middle_postfix() -> None:
    pub = keys(*range(10))
    h = check(S, pub, [f"{S}#0:{q}" for q in (2, 3, 5, 7)], [])
    assert (h.lost_prefix, h.lost_middle, h.lost_postfix) == (2, 2, 2)
    assert h.lost == 6 and not h.complete
    nothing = check(S, pub, [], [])
    assert (nothing.lost_prefix, nothing.lost_middle, nothing.lost_postfix) == (10, 0, 0)


def test_gaps_by_key_and_by_range_with_reasons() -> None:
    pub = keys(0, 1, 2, 3, 4)
    pub[f"{S}#r:abc"] = None  # an unsequenced frame, gapped by its key
    stored = [f"{S}#0:{q}" for q in (0, 1, 4)]
    gaps: list[GapRow] = [
        (f"{S}#0:2!shed", 2, 2, "shed"),
        (f"{S}#0:gap:3-3", 3, 3, "missing"),
        (f"{S}#r:abc!failover", None, None, "failover"),
    ]
    h = check(S, pub, stored, gaps)
    assert (h.stored, h.gapped, h.lost) == (3, 3, 0)
    assert h.gaps == {"shed": 1, "missing": 1, "failover": 1}
    assert h.problems({"shed", "missing"}) == ["gap reason 'failover' not allowed"]


def test_unexpected_and_stored_and_gapped() -> None:
    pub = keys(0, 1, 2)
    stored = [f"{S}#0:0", f"{S}#0:1", f"{S}#0:2", f"{S}#0:9"]
    h = check(S, pub, stored, [(f"{S}#0:failover:1-1", 1, 1, "failover")])
    assert (h.unexpected, h.stored_and_gapped, h.lost) == (1, 1, 0)
    assert h.problems({"failover"}) == ["unexpected=1", "stored_and_gapped=1"]
    late = check(S, pub, stored[:3], [(f"{S}#0:gap:2-2", 2, 2, "missing")])
    assert (late.late_after_gap, late.stored_and_gapped) == (1, 0)
    assert late.problems({"missing"}) == ["late_after_gap=1"]
    assert late.ok({"missing", "late_after_gap"})  # the contract's one exception (8.1)


def test_publisher_log_keeps_publish_order() -> None:
    log = PublisherLog()
    for q in (5, 3, 4):
        log.record(S, q)
    assert log.record(S, None, key=f"{S}#r:x") == f"{S}#r:x"
    assert list(log.published(S).values()) == [5, 3, 4, None] and log.count() == 4
    with pytest.raises(ValueError):
        log.record(S, None)
