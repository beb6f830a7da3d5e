"""Failover gap accounting: take-over seeds, graceful-stop gaps, hand-over, store narrowing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from sqlalchemy import Engine, select
from store_support import T0, cam, migrated_sqlite, verdict
from test_edge_worker_loopback import C1, C2, Bus, make

from broker.codecs import encode
from broker.loopback import LoopbackHub
from broker.messages import Assignment, Gap
from broker.topics import Route, assignment_topic, frame_topic
from broker.transport import Inbound
from edge.assignment import AssignmentState
from edge.gaps import GapTracker, Missing, SeqStatus
from services.dispatcher.sqlstore import SqlAssignments
from services.store import gaps, repo
from services.store import schema as s
from services.store.batchwrite import Prepared, write_prepared
from services.store.engine import make_engine
from services.store.resume import accounted_top
from services.store.rows import plan

pytestmark = pytest.mark.unit

S = "s/l/st/camera/c1"


# ---- GapTracker: take-over seeds and flush ---------------------------------------------------


def test_takeover_opens_a_failover_range_up_to_the_first_seq() -> None:
    t = GapTracker(timeout_s=2.0)
    t.takeover(S, 9)
    assert t.observe(S, 0, 15, 0.0) is SeqStatus.FIRST
    assert t.open_count() == 5  # 10..14 awaited
    assert t.observe(S, 0, 12, 0.5) is SeqStatus.LATE  # received after all: no gap for it
    assert t.observe(S, 0, 16, 0.6) is SeqStatus.IN_ORDER
    assert t.expire(1.9) == []
    assert t.expire(2.0) == [
        Missing(S, 0, 10, 11, "failover"),
        Missing(S, 0, 13, 14, "failover"),
    ]
    assert t.observe(S, 0, 11, 3.0) is SeqStatus.LATE_AFTER_GAP


def test_takeover_without_a_hole_records_nothing_and_is_used_once() -> None:
    t = GapTracker(timeout_s=1.0)
    t.takeover(S, 9)
    t.observe(S, 0, 10, 0.0)  # exactly the next seq: nothing was missed
    assert t.expire(5.0) == []
    t.observe(S, 1, 40, 5.0)  # a new publisher epoch later: an ordinary first seq, no seed
    assert t.expire(10.0) == []


def test_forget_drops_the_seed_and_missing_ranges_keep_their_reason() -> None:
    t = GapTracker(timeout_s=1.0)
    t.takeover(S, 3)
    t.forget(S)
    t.observe(S, 0, 10, 0.0)
    t.observe(S, 0, 13, 0.1)
    assert t.expire(2.0) == [Missing(S, 0, 11, 12)]
    assert Missing(S, 0, 11, 12).reason == "missing"


def test_flush_reports_every_open_range_at_once() -> None:
    t = GapTracker(timeout_s=60.0)
    t.takeover(S, 0)
    t.observe(S, 0, 3, 0.0)  # failover 1..2
    t.observe(S, 0, 6, 0.0)  # missing 4..5
    assert t.expire(1.0) == []
    assert t.flush() == [Missing(S, 0, 1, 2, "failover"), Missing(S, 0, 4, 5)]
    assert t.open_count() == 0 and t.flush() == []


# ---- AssignmentState: resume points of added streams only ---------------------------------------


def _assignment(epoch: int, streams: tuple[str, ...], resume: dict[str, int]) -> Assignment:
    return Assignment(
        worker="W1",
        epoch=epoch,
        streams=streams,
        resume=resume,
        dispatcher="D1",
        ts=datetime.now(UTC),
    )


def test_diff_carries_resume_of_added_streams_by_full_key() -> None:
    st = AssignmentState([C1])
    short = "s1/L1/st1/c2"  # the short camera form of C2
    diff = st.apply(_assignment(3, (C1.key, C2.key), {C1.key: 5, short: 7, "bad key": 1}))
    assert diff.added == {C2} and diff.resume == {C2.key: 7}
    assert st.apply(_assignment(4, (C2.key,), {C2.key: 9})).resume == {}  # not added now


def test_old_assignment_json_without_resume_still_decodes() -> None:
    a = _assignment(1, (C1.key,), {})
    raw = encode(a).replace(b',"resume":{}', b"")
    assert b"resume" not in raw
    assert Assignment.model_validate_json(raw).resume == {}


# ---- the worker over the loopback bus ---------------------------------------------------------


@pytest.fixture()
def hub() -> LoopbackHub:
    return LoopbackHub()


@pytest.fixture()
def bus(hub: LoopbackHub) -> Iterator[Bus]:
    b = Bus(hub)
    yield b
    b.tr.stop()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import edge_tinymodel as tiny

    return tiny.build(tmp_path_factory.mktemp("tiny") / "model")


def _subscribed(w: Any, stream: Any) -> bool:
    """The worker's transport routes the stream's frames (the assignment is applied)."""
    return frame_topic(stream) in w.transport._subs


def test_live_grant_with_resume_records_a_failover_gap(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, _ = make(hub, tmp_path, model_dir, ())
    try:
        grant = _assignment(5, (C1.key,), {C1.key: 3})
        bus.tr.publish(assignment_topic("W1"), encode(grant), retain=True)  # live delivery
        wait_for(lambda: _subscribed(w, C1), 5, what="subscribed to c1")
        assert w.state.epoch == 5
        for seq in (7, 5, 8):  # 4..6 were with the old owner; 5 still arrives
            bus.frame(C1, "good", seq=seq)
        bus.wait(Route.VERDICT, 3, 10)
        gaps: list[Gap] = sorted(bus.wait(Route.GAP, 2, 5), key=lambda g: g.from_seq or 0)
        assert [(g.reason, g.from_seq, g.to_seq, g.count, g.epoch) for g in gaps] == [
            ("failover", 4, 4, 1, 5),
            ("failover", 6, 6, 1, 5),
        ]
        assert gaps[0].key == f"{C1.key}#0:failover:4-4"
    finally:
        w.stop()


def test_retained_copy_at_restart_opens_no_failover_gap(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    old = _assignment(5, (C1.key,), {C1.key: 3})
    bus.tr.publish(assignment_topic("W1"), encode(old), retain=True)  # before the worker exists
    w, _ = make(hub, tmp_path, model_dir, ())
    try:
        wait_for(lambda: _subscribed(w, C1), 5, what="the retained assignment followed")
        bus.frame(C1, "good", seq=40)
        bus.frame(C2, "good", seq=1)  # not ours: never subscribed
        bus.wait(Route.VERDICT, 1, 10)
    finally:
        w.stop()
    assert bus.of(Route.GAP) == []


def test_frames_of_a_stream_no_longer_held_are_acked_without_a_record(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, _ = make(hub, tmp_path, model_dir, (C1.key,))
    try:
        import edge_tinymodel as tiny

        acked = threading.Event()
        w.on_frame(  # delivered just before the unsubscribe took effect
            Inbound(
                topic=frame_topic(C2),
                payload=tiny.frame("good", seed=1),
                properties={"seq": "1"},
                receipt="r-1",
                ack=acked.set,
            )
        )
        assert acked.wait(5)
        bus.frame(C1, "good", seq=1)
        bus.wait(Route.VERDICT, 1, 10)
        assert bus.of(Route.GAP) == [] and bus.of(Route.DEAD_LETTER) == []
    finally:
        w.stop()


def test_graceful_stop_reports_open_ranges_before_death(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, _ = make(hub, tmp_path, model_dir, (C1.key,), reorder_timeout_s=60.0)
    bus.frame(C1, "good", seq=1)
    bus.frame(C1, "good", seq=5)  # 2..4 awaited for a minute
    bus.wait(Route.VERDICT, 2, 10)
    assert bus.of(Route.GAP) == []
    w.stop()
    [gap] = bus.wait(Route.GAP, 1)  # the bus delivers to the test's subscriber asynchronously
    assert (gap.reason, gap.from_seq, gap.to_seq, gap.count) == ("missing", 2, 4, 3)
    wait_for(
        lambda: any(r is Route.STATUS and m.state == "offline" for r, m in list(bus.out)),
        10,
        what="death status",
    )
    order: list[tuple[Route, Any]] = list(bus.out)
    gap_at = next(i for i, (r, _) in enumerate(order) if r is Route.GAP)
    death_at = max(
        i for i, (r, m) in enumerate(order) if r is Route.STATUS and m.state == "offline"
    )
    assert gap_at < death_at


# ---- the store: never a stored frame and a gap for one seq ------------------------------------


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return make_engine(migrated_sqlite(tmp_path))


def _gap_row(key: str, lo: int, hi: int, reason: str = "failover") -> dict[str, Any]:
    c = cam()
    g = Gap(
        key=key,
        stream=c.key,
        reason=reason,  # type: ignore[arg-type]
        from_seq=lo,
        to_seq=hi,
        count=hi - lo + 1,
        worker="W2",
        epoch=3,
        ts=T0,
    )
    p = plan(g)
    assert p is not None
    return p.rows["gaps"][0]


def _frames(engine: Engine, seqs: range) -> None:
    rows = [r for q in seqs for r in plan(verdict(cam(), q)).rows["frames"]]  # type: ignore[union-attr]
    with engine.begin() as c:
        repo.insert_frames(c, rows)


def _gaps(engine: Engine) -> list[tuple[str, int, int, int]]:
    g = s.T_GAPS
    with engine.connect() as c:
        q = select(g.c.gap_key, g.c.from_seq, g.c.to_seq, g.c.count).order_by(g.c.from_seq)
        return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]


def test_gap_pieces() -> None:
    assert gaps.gap_pieces(5, 9, []) == [(5, 9)]
    assert gaps.gap_pieces(5, 9, [5, 7, 12]) == [(6, 6), (8, 9)]
    assert gaps.gap_pieces(5, 9, range(5, 10)) == []


def test_failover_gap_is_narrowed_to_seqs_not_stored(engine: Engine) -> None:
    k = cam().key
    _frames(engine, range(0, 6))  # the old owner's verdicts, stored after the decision
    with engine.begin() as c:
        gaps.insert_gaps(c, [_gap_row(f"{k}#0:failover:3-8", 3, 8)])
        gaps.insert_gaps(c, [_gap_row(f"{k}#0:failover:3-8", 3, 8)])  # redelivered
        gaps.insert_gaps(c, [_gap_row(f"{k}#0:5!failover", 5, 5)])  # a stored frame
        gaps.insert_gaps(c, [_gap_row(f"{k}#0:gap:20-21", 20, 21, "missing")])  # no overlap
        gaps.insert_gaps(c, [_gap_row(f"{k}#1:failover:3-4", 3, 4)])  # another pub epoch
    assert _gaps(engine) == [
        (f"{k}#1:failover:3-4", 3, 4, 2),
        (f"{k}#0:failover:3-8@6-8", 6, 8, 3),
        (f"{k}#0:gap:20-21", 20, 21, 2),
    ]


def test_frames_and_gaps_of_one_batch_are_narrowed_too(engine: Engine) -> None:
    k = cam().key
    prep = Prepared()
    for m in [verdict(cam(), 10), verdict(cam(), 12)]:
        for t, rows in plan(m).rows.items():  # type: ignore[union-attr]
            prep.rows.setdefault(t, []).extend(rows)
    prep.rows["gaps"] = [_gap_row(f"{k}#0:failover:9-13", 9, 13)]
    with engine.begin() as c:
        write_prepared(c, prep)
    assert [(lo, hi) for _, lo, hi, _ in _gaps(engine)] == [(9, 9), (11, 11), (13, 13)]


def test_last_accounted_seqs_for_the_dispatcher(engine: Engine, tmp_path: Path) -> None:
    k = cam().key
    other = cam(name="cam2").key
    _frames(engine, range(0, 4))
    with engine.begin() as c:
        gaps.insert_gaps(c, [_gap_row(f"{k}#0:gap:4-6", 4, 6, "missing")])
    store = SqlAssignments(str(engine.url))
    try:
        assert store.last_seqs([k, other, "not a stream"]) == {k: 6}  # other: no history
        assert store.last_seqs(["s1/L1/st1/cam1"]) == {"s1/L1/st1/cam1": 6}  # short form
    finally:
        store.close()


def test_release_reports_the_open_ranges_of_a_stream_leaving() -> None:
    t = GapTracker(timeout_s=60.0)
    other = "s/l/st/camera/c2"
    t.takeover(S, 1)
    t.observe(S, 0, 4, 0.0)  # failover 2..3
    t.observe(S, 0, 7, 0.0)  # missing 5..6
    t.observe(other, 0, 1, 0.0)
    t.observe(other, 0, 3, 0.0)  # other's 2 stays awaited
    assert t.release(S) == [Missing(S, 0, 2, 3, "failover"), Missing(S, 0, 5, 6)]
    assert t.open_count() == 1
    assert t.observe(S, 0, 8, 1.0) is SeqStatus.FIRST  # forgotten: no seed, no state


def test_resume_stops_at_the_first_hole(engine: Engine, tmp_path: Path) -> None:
    """Seqs 3..5 were awaited by an owner that died (or was cut off) before recording them:
    the next owner resumes after 2, so its failover gap covers them (the store narrows the
    gap to the seqs still unaccounted). Found by tests/faults/test_dispatch_midmove.py."""
    k = cam().key
    _frames(engine, range(0, 3))
    _frames(engine, range(6, 9))
    store = SqlAssignments(str(engine.url))
    try:
        assert store.last_seqs([k]) == {k: 2}
    finally:
        store.close()
    assert accounted_top([(6, 6), (0, 0), (1, 4), (5, 5), (9, 12)]) == 6  # 7..8 missing
    assert accounted_top([(6, 6), (0, 0), (1, 4), (5, 5), (7, 8), (9, 12)]) == 12
    assert accounted_top([(0, 0), (2, 2)]) == 0 and accounted_top([]) is None
