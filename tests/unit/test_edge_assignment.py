"""Assignments: epochs only grow, diffs drive (un)subscriptions, reduced-rate inspection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Assignment
from broker.topics import (
    StreamRef,
    TopicError,
    feedback_control_topic,
    frame_topic,
    sensor_topic,
    teach_topic,
    threshold_control_topic,
)
from edge.assignment import (
    AssignmentState,
    StaleAssignment,
    StreamHandlers,
    Subscriptions,
    decode_assignment,
)

pytestmark = pytest.mark.unit

C1 = StreamRef.camera("s", "l", "st", "c1")
C2 = StreamRef.camera("s", "l", "st", "c2")
T1 = StreamRef.sensor("s", "l", "st", "t1")


def msg(epoch: int, *streams: str, rates: dict[str, float] | None = None) -> Assignment:
    return Assignment(
        worker="W1",
        epoch=epoch,
        streams=streams,
        rates=rates or {},
        dispatcher="D1",
        ts=datetime.now(UTC),
    )


def test_diff_and_epoch() -> None:
    st = AssignmentState([C1], epoch=0)
    d = st.apply(msg(3, C1.key, "s/l/st/c2", T1.key))
    assert d.added == {C2, T1} and d.removed == frozenset() and st.epoch == 3
    d = st.apply(msg(4, C2.key))
    assert d.removed == {C1, T1} and st.streams == {C2}
    assert st.holds(C2) and not st.holds(C1)


def test_older_epoch_is_stale_same_epoch_is_idempotent() -> None:
    st = AssignmentState()
    st.apply(msg(5, C1.key))
    with pytest.raises(StaleAssignment):
        st.apply(msg(4, C2.key))
    assert st.streams == {C1}
    d = st.apply(msg(5, C1.key))
    assert not d.added and not d.removed


def test_reduced_rate_inspects_that_fraction() -> None:
    st = AssignmentState()
    st.apply(msg(1, C1.key, C2.key, rates={"s/l/st/c1": 0.25, "bad key": 0.5}))
    picks = [st.inspect(C1) for _ in range(100)]
    assert sum(picks) == 25
    assert all(st.inspect(C2) for _ in range(10))


def test_bad_assignment_rejected() -> None:
    with pytest.raises(TopicError):
        decode_assignment(msg(1, "not/a/stream/key/at/all"), "W1")
    with pytest.raises(TopicError):
        decode_assignment(msg(1, C1.key), "W2")


def camera(c: StreamRef) -> set[str]:
    """A camera's topics: frames, threshold and feedback control, its retained taught state."""
    return {frame_topic(c), threshold_control_topic(c), feedback_control_topic(c), teach_topic(c)}


def test_subscriptions_follow_the_diff() -> None:
    hub = LoopbackHub()
    tr = LoopbackTransport(hub, "w")
    seen: list[str] = []
    removed: list[tuple[StreamRef, int]] = []

    def h(m):
        seen.append(m.topic)

    subs = Subscriptions(tr, StreamHandlers(h, h, h), lambda s, e: removed.append((s, e)))
    st = AssignmentState()
    subs.change(st.apply(msg(1, C1.key, T1.key)))
    assert set(tr._subs) == {*camera(C1), sensor_topic(T1)}
    subs.change(st.apply(msg(2, C2.key)))
    assert set(tr._subs) == camera(C2)
    assert sorted(removed) == [(C1, 2), (T1, 2)]
