"""Load meter figures and birth / heartbeat / death over the loopback bus."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import wait_for

from broker.codecs import decode_output
from broker.liveness import Liveness
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.topics import ALL_STATUS
from edge.heartbeat import Heartbeat, LoadMeter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_capacity_load_and_p95() -> None:
    clock = Clock()
    m = LoadMeter(window_s=10.0, clock=clock)
    m.baseline_fps = 40.0
    assert m.capacity_fps() == 40.0  # nothing measured yet
    for _ in range(10):
        clock.t += 1.0
        m.record_batch(8, 0.2)  # 8 frames in 0.2 s busy, once a second
    assert m.capacity_fps() == pytest.approx(40.0)
    assert m.load() == pytest.approx(0.2)
    for v in range(1, 101):
        m.record_latency(float(v))
    assert m.p95_ms() == pytest.approx(95.05)
    clock.t += 60
    assert m.load() == 0.0 and m.capacity_fps() == 40.0


def test_birth_heartbeat_death(tmp_path: Path) -> None:
    hub = LoopbackHub()
    got: list = []
    obs = LoopbackTransport(hub, "obs")
    obs.subscribe(ALL_STATUS, lambda m: got.append(decode_output(m.topic, m.payload)))
    obs.start()
    tr = LoopbackTransport(hub, "w")
    hb = Heartbeat(
        Liveness(tr, "W9", "edge", tmp_path), lambda: {"capacity_fps": 12.5}, period_s=1.0
    )
    tr.start()
    assert hb.tick(0.0) is False  # no heartbeat before birth
    hb.birth()
    assert hb.tick(1e12) is True
    assert hb.tick(1e12) is False  # not due again
    assert hb.death() is True
    wait_for(lambda: len(got) == 3, 5, what="3 status messages")
    assert [s.state for s in got] == ["online", "heartbeat", "offline"]
    assert all(s.capacity_fps == 12.5 and s.counter == hb.counter for s in got)
    tr.stop()
    obs.stop()
