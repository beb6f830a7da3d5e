"""The store's hole sweep (services/store/sweep.py): seqs no verdict or gap accounts for
become ``undelivered`` gaps once a later frame of the same publisher epoch is old enough."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from store_support import T0, cam, migrated_sqlite, verdict

from broker.messages import Gap
from services.store import gaps, repo
from services.store import schema as s
from services.store.engine import make_engine
from services.store.rows import plan
from services.store.sweep import HoleSweep, holes_in

pytestmark = pytest.mark.unit
CAM = cam()


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_sqlite(tmp_path))


def _store(engine: Engine, seqs: list[int], *, pe: int = 0, at: datetime = T0) -> None:
    rows = []
    for q in seqs:
        v = verdict(CAM, q, at=at + timedelta(milliseconds=10 * q))
        v = v.model_copy(update={"key": f"{CAM.key}#{pe}:{q}"})
        p = plan(v)
        assert p is not None
        rows.extend(p.rows["frames"])
    with engine.begin() as c:
        repo.insert_frames(c, rows)


def _gap(engine: Engine, a: int, b: int, reason: str = "missing") -> None:
    g = Gap(
        key=f"{CAM.key}#0:gap:{a}-{b}",
        stream=CAM.key,
        reason=reason,  # type: ignore[arg-type]
        from_seq=a,
        to_seq=b,
        count=b - a + 1,
        worker="W1",
        epoch=0,
        ts=T0,
    )
    p = plan(g)
    assert p is not None
    with engine.begin() as c:
        gaps.insert_gaps(c, p.rows["gaps"])


def _gaps(engine: Engine) -> list[tuple[str, int, int, str]]:
    g = s.T_GAPS
    with engine.connect() as c:
        q = select(g.c.gap_key, g.c.from_seq, g.c.to_seq, g.c.reason).order_by(g.c.from_seq)
        return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]


def test_holes_in_sorted_seqs() -> None:
    assert holes_in([1, 2, 5, 9], None) == [(3, 4), (6, 8)]
    assert holes_in([5, 6], 2) == [(3, 4)]
    assert holes_in([5, 6], 6) == []
    assert holes_in([], 3) == []


def test_a_hole_no_gap_covers_becomes_an_undelivered_gap(engine: Engine) -> None:
    _store(engine, [0, 1, 2, 3, 4, 40, 41])
    _gap(engine, 10, 12)  # the worker saw these missing: not the store's to record
    sweep = HoleSweep(engine, "store-t", grace_s=30)
    rep = sweep.run(now=T0 + timedelta(minutes=5))
    assert _gaps(engine) == [
        (f"{CAM.key}#0:undelivered:5-9", 5, 9, "undelivered"),
        (f"{CAM.key}#0:gap:10-12", 10, 12, "missing"),
        (f"{CAM.key}#0:undelivered:13-39", 13, 39, "undelivered"),
    ]
    assert (rep.frames, rep.holes, rep.seqs) == (7, 2, 32)
    # idempotent: a second sweep (or a second store) adds nothing
    again = HoleSweep(engine, "store-u", grace_s=30).run(now=T0 + timedelta(minutes=6))
    assert again.holes == 0 and len(_gaps(engine)) == 3


def test_frames_inside_the_grace_wait_for_the_next_pass(engine: Engine) -> None:
    _store(engine, [0, 1, 7])  # decided at T0 + 0..70 ms
    sweep = HoleSweep(engine, "store-t", grace_s=60)
    assert sweep.run(now=T0 + timedelta(seconds=30)).frames == 0
    assert _gaps(engine) == []
    rep = sweep.run(now=T0 + timedelta(seconds=61))
    assert (rep.frames, rep.seqs) == (3, 5)


def test_a_hole_across_two_passes_is_seen(engine: Engine) -> None:
    sweep = HoleSweep(engine, "store-t", grace_s=10)
    _store(engine, [0, 1, 2])
    assert sweep.run(now=T0 + timedelta(seconds=20)).holes == 0
    _store(engine, [6, 7], at=T0 + timedelta(seconds=30))
    rep = sweep.run(now=T0 + timedelta(seconds=60))
    assert (rep.holes, rep.seqs) == (1, 3)
    assert _gaps(engine)[0][1:3] == (3, 5)


def test_a_late_verdict_and_publisher_epochs(engine: Engine) -> None:
    # seq 3 is stored late but before the pass (decided earlier): no hole at 3
    _store(engine, [0, 1, 2, 4, 5])
    _store(engine, [3], at=T0 - timedelta(seconds=5))
    # a new publisher epoch restarts at 0: not a hole of epoch 0
    _store(engine, [0, 1], pe=7, at=T0 + timedelta(seconds=1))
    assert HoleSweep(engine, "store-t", grace_s=10).run(now=T0 + timedelta(minutes=1)).holes == 0
    assert _gaps(engine) == []


def test_site_filter(engine: Engine) -> None:
    _store(engine, [0, 5])
    other = HoleSweep(engine, "store-x", grace_s=10, site="elsewhere")
    assert other.run(now=T0 + timedelta(minutes=1)).frames == 0
    mine = HoleSweep(engine, "store-s", grace_s=10, site=CAM.site)
    assert mine.run(now=T0 + timedelta(minutes=1)).seqs == 4
