"""A frame redelivered while its first copy still waits in the worker (a reconnect to a kept
MQTT session redelivers every unacked input) is inspected once and acked with the first:
before, the copy was queued too, so one copy could be shed (a gap) and the other stored
(a verdict) — one frame accounted twice (found by tests/faults/test_network_breaks.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import edge_tinymodel as tiny
import pytest
from helpers import wait_for
from test_edge_worker_loopback import C1, Bus, GatedRunner, make

from broker.loopback import LoopbackHub
from broker.topics import Route

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
