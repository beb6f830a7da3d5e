"""A verdict always wins over a gap (services/store/gaps.py), whichever arrives first.

Found by the chaos soak (tests/soak/test_chaos.py): a worker partitioned from the broker shed
two frames (its ``shed`` gaps reached the store while it still owned the camera); the broker
then redelivered both frames to the camera's next owner, which inspected them — two seqs
stored and gapped."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from store_support import T0, cam, migrated_sqlite, verdict

from broker.messages import Gap
from services.store import gaps
from services.store import schema as s
from services.store.batchwrite import Prepared, write_prepared
from services.store.engine import make_engine
from services.store.rows import plan

pytestmark = pytest.mark.unit
K = cam().key


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_sqlite(tmp_path))


def _write(engine: Engine, *msgs: Any) -> None:
    prep = Prepared()
    for m in msgs:
        p = plan(m)
        assert p is not None
        for t, rows in p.rows.items():
            prep.rows.setdefault(t, []).extend(rows)
    with engine.begin() as c:
        write_prepared(c, prep)


def _gap(key: str, lo: int, hi: int, reason: str, at: datetime = T0) -> Gap:
    return Gap(
        key=key, stream=K, reason=reason,  # type: ignore[arg-type]
        from_seq=lo, to_seq=hi, count=hi - lo + 1, worker="W1", epoch=6, ts=at,
    )  # fmt: skip


def _v(seq: int, pe: int = 0, at: datetime = T0) -> Any:
    v = verdict(cam(), seq, epoch=9, worker="W2", at=at)
    return v.model_copy(update={"key": f"{K}#{pe}:{seq}"})


def _gaps(engine: Engine) -> list[tuple[str, int, int, str]]:
    g = s.T_GAPS
    with engine.connect() as c:
        q = select(g.c.gap_key, g.c.from_seq, g.c.to_seq, g.c.reason).order_by(g.c.from_seq)
        return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]


def test_a_shed_frame_inspected_later_by_the_next_owner_is_not_a_gap(engine: Engine) -> None:
    _write(
        engine, _gap(f"{K}#0:403!shed", 403, 403, "shed"), _gap(f"{K}#0:404!shed", 404, 404, "shed")
    )
    assert len(_gaps(engine)) == 2
    _write(engine, _v(403, at=T0 + timedelta(seconds=48)))
    assert _gaps(engine) == [(f"{K}#0:404!shed", 404, 404, "shed")]
    _write(engine, _gap(f"{K}#0:403!shed", 403, 403, "shed"))  # the old owner re-sends it
    assert _gaps(engine) == [(f"{K}#0:404!shed", 404, 404, "shed")]


def test_a_range_gap_is_narrowed_around_each_late_verdict(engine: Engine) -> None:
    _write(engine, _gap(f"{K}#0:failover:3-8", 3, 8, "failover"))
    _write(engine, _v(5))
    _write(engine, _v(7), _v(8))
    key = f"{K}#0:failover:3-8"
    assert _gaps(engine) == [
        (f"{key}@3-4", 3, 4, "failover"),
        (f"{key}@6-8@6-6", 6, 6, "failover"),
    ]
    _write(engine, _gap(key, 3, 8, "failover"))  # redelivered: what is left of it is there
    assert len(_gaps(engine)) == 2


def test_late_verdicts_narrow_missing_and_undelivered_gaps_too(engine: Engine) -> None:
    _write(engine, _gap(f"{K}#0:gap:10-11", 10, 11, "missing"))
    p = plan(_gap(f"{K}#0:gap:20-20", 20, 20, "missing"))  # the store's own row (sweep.py)
    assert p is not None
    row = {**p.rows["gaps"][0], "gap_key": f"{K}#0:undelivered:20-20", "reason": "undelivered"}
    with engine.begin() as c:
        gaps.insert_gaps(c, [row])
    _write(engine, _v(11), _v(20))
    assert _gaps(engine) == [(f"{K}#0:gap:10-11@10-10", 10, 10, "missing")]


def test_only_the_same_publisher_epoch_and_recent_gaps_narrow(engine: Engine) -> None:
    _write(engine, _gap(f"{K}#0:gap:1-2", 1, 2, "missing"))
    _write(engine, _v(1, pe=4))  # another publisher epoch: seq 1 of a different counter
    assert _gaps(engine) == [(f"{K}#0:gap:1-2", 1, 2, "missing")]
    _write(engine, _v(2, at=T0 + gaps.LOOKBACK + timedelta(minutes=1)))  # over an hour late
    assert _gaps(engine) == [(f"{K}#0:gap:1-2", 1, 2, "missing")]


def test_a_shed_gap_after_its_verdict_is_not_recorded(engine: Engine) -> None:
    _write(engine, _v(30))
    _write(engine, _gap(f"{K}#0:30!shed", 30, 30, "shed"))
    assert _gaps(engine) == []
