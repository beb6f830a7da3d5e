"""Frames that wait in a worker across a broken broker link: a copy redelivered while the
first still waits (a reconnect to a kept MQTT session redelivers every unacked input) is
inspected once and acked with the first — before, the copy was queued too, so one copy
could be shed (a gap) and the other stored (a verdict), one frame accounted twice (found by
tests/faults/test_network_breaks.py); and queued frames keep the epoch they came under."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import edge_tinymodel as tiny
import pytest
from helpers import wait_for
from test_edge_worker_loopback import C1, Bus, GatedRunner, make

from broker.codecs import encode
from broker.loopback import LoopbackHub
from broker.messages import Assignment
from broker.topics import Route, assignment_topic

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def hub() -> LoopbackHub:
    return LoopbackHub()


@pytest.fixture()
def bus(hub: LoopbackHub) -> Iterator[Bus]:
    b = Bus(hub)
    yield b
    b.tr.stop()


def test_copy_of_a_queued_frame_rides_on_the_first(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    w, tr = make(hub, tmp_path, model_dir, max_batch=1, camera_queue=2)
    gate = GatedRunner(w.pipeline.runner)
    w.pipeline.runner = gate
    try:
        bus.frame(C1, "good", seq=0)
        assert gate.entered.wait(5)  # frame 0 in inference, blocked: 1 and 2 wait in the queue
        bus.frame(C1, "good", seq=1)
        bus.frame(C1, "good", seq=2)
        bus.frame(C1, "good", seq=1)  # the redelivered copies (same keys)
        bus.frame(C1, "good", seq=2)
        wait_for(lambda: tr.stats()["received"] == 5, 5, what="5 deliveries")
        assert tr.stats()["acked"] == 0  # nothing done yet: the copies wait for the first
        gate.open.set()
        verdicts = bus.wait(Route.VERDICT, 3, 10)
        assert sorted(v.seq for v in verdicts) == [0, 1, 2]
        wait_for(lambda: tr.stats()["acked"] == 5, 5, what="every delivery acked")
        assert bus.of(Route.GAP) == []  # no copy shed: nothing accounted twice
        assert w.metrics.value("linewatch_edge_frames_total", outcome="duplicate") == 2
    finally:
        gate.open.set()
        w.stop()


def test_outputs_carry_the_epoch_their_frame_was_admitted_under(
    hub: LoopbackHub, tmp_path: Path, model_dir: Path, bus: Bus
) -> None:
    """A worker cut off from the broker misses the revocation of its stream; once healed,
    the retained assignment it reads may give the stream back under a newer epoch. Frames it
    had queued before must keep their old epoch (the store's fence rejects them: other
    workers accounted for those seqs meanwhile), not take the new one (found by
    tests/faults/test_partition.py: old queued frames shed under the new epoch, 19 seqs
    accounted twice)."""
    w, _ = make(hub, tmp_path, model_dir, max_batch=1, camera_queue=8)
    gate = GatedRunner(w.pipeline.runner)
    w.pipeline.runner = gate
    now = datetime.now(UTC)
    try:
        first = Assignment(worker="W1", epoch=3, streams=(C1.key,), dispatcher="D1", ts=now)
        bus.tr.publish(assignment_topic("W1"), encode(first), retain=True)
        wait_for(lambda: w.state.epoch == 3, 5, what="epoch 3")
        bus.frame(C1, "good", seq=0)
        assert gate.entered.wait(5)  # frame 0 in inference; 1 and 2 wait in the queue
        bus.frame(C1, "good", seq=1)
        bus.frame(C1, "good", seq=2)
        wait_for(lambda: w.batcher.depth() == 2, 5, what="two frames queued")
        later = first.model_copy(update={"epoch": 9})  # the stream again, after a missed move
        bus.tr.publish(assignment_topic("W1"), encode(later), retain=True)
        wait_for(lambda: w.state.epoch == 9, 5, what="epoch 9")
        gate.open.set()
        bus.frame(C1, "good", seq=3)
        verdicts = bus.wait(Route.VERDICT, 4, 10)
        assert {v.seq: v.epoch for v in verdicts} == {0: 3, 1: 3, 2: 3, 3: 9}
    finally:
        gate.open.set()
        w.stop()
