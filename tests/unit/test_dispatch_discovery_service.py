"""Discovery in the dispatcher service (loopback bus): place on first input, hand it over."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dispatch_kit import FakeEdge, Observer
from helpers import wait_for

from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Gap
from broker.topics import StreamRef, frame_topic, gap_topic, worker_status_topic
from broker.transport import Inbound
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("A", "l1", "st1", "new")


class Spy:
    def __init__(self, hub: LoopbackHub, pattern: str) -> None:
        self.t = LoopbackTransport(hub, f"spy-{pattern}")
        self.got: list[Inbound] = []
        self._lock = threading.Lock()
        self.t.subscribe(pattern, self._on)
        self.t.start()

    def _on(self, m: Inbound) -> None:
        with self._lock:
            self.got.append(m)
        m.ack()


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[LoopbackHub, list[Any]]]:
    hub = LoopbackHub()
    owned: list[Any] = []
    try:
        yield hub, owned
    finally:
        for thing in reversed(owned):
            thing.t.stop() if isinstance(thing, Spy) else thing.stop()


def _start(hub: LoopbackHub, owned: list[Any], tmp_path: Path, **kw: Any) -> Dispatcher:
    s = DispatchSettings(
        dispatcher_id="d1",
        keepalive_s=1,
        startup_grace_s=0.1,
        debounce_s=0.05,
        observe_rates=False,
        rebalance_s=0,
        data_dir=tmp_path,
        **kw,
    )
    d = Dispatcher(s, LoopbackTransport(hub, "dispatch-d1"))
    d.start()
    owned.append(d)
    return d


def test_first_frame_of_a_new_camera_is_held_then_handed_to_its_owner(
    bus: Any, tmp_path: Path
) -> None:
    hub, owned = bus
    obs = Observer(LoopbackTransport(hub, "observer")).start()
    owned.append(obs.t)
    spy = Spy(hub, frame_topic(CAM))
    owned.append(spy)
    d = _start(hub, owned, tmp_path)
    edge = FakeEdge(LoopbackTransport(hub, "edge-e1"), "e1", capacity_fps=50.0).start()
    owned.append(edge)
    wait_for(lambda: d.leader, 5, what="leader")
    cam = LoopbackTransport(hub, "camera")
    cam.start()
    owned.append(cam)
    cam.publish(frame_topic(CAM), b"\xff\xd8 first frame", properties={"seq": "1"})
    owner = wait_for(lambda: obs.placed(1), 10, what="new camera placed")
    assert owner == {CAM.key: "e1"}
    assert any(f"discover:{CAM.key}" in x.trigger for x in obs.decisions)
    assert len(spy.got) == 1  # nobody serves it yet: the dispatcher holds the copy
    # the owner reports the stream as subscribed: the held frame is republished for it
    edge.t.publish(
        worker_status_topic("e1"),
        edge._payload("heartbeat", streams=(CAM.key,), epoch=obs.assign["e1"].epoch),
    )
    wait_for(lambda: len(spy.got) == 2, 10, what="held frame handed over")
    again = spy.got[1]
    assert again.payload == b"\xff\xd8 first frame" and dict(again.properties) == {"seq": "1"}
    cam.publish(frame_topic(CAM), b"\xff\xd8 second frame")  # served: not held, not repeated
    wait_for(lambda: len(spy.got) == 3, 10)
    assert d.assignment() == {CAM.key: "e1"}


def test_inputs_nobody_can_take_become_an_unassigned_gap(bus: Any, tmp_path: Path) -> None:
    hub, owned = bus
    gaps = Spy(hub, gap_topic(CAM))
    owned.append(gaps)
    d = _start(hub, owned, tmp_path, discover_hold_frames=1)
    wait_for(lambda: d.leader, 5, what="leader")
    cam = LoopbackTransport(hub, "camera")
    cam.start()
    owned.append(cam)
    for n in range(3):  # no worker at all: one is kept, two are pushed out
        cam.publish(frame_topic(CAM), b"frame %d" % n)
    got = wait_for(lambda: gaps.got, 10, what="unassigned gap")
    gap = decode_output(got[0].topic, got[0].payload)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.count, gap.stream, gap.worker) == ("unassigned", 2, CAM.key, "d1")
    assert gap.from_seq is None and gap.key.startswith(f"{CAM.key}#unassigned:")


def test_discovery_can_be_switched_off(bus: Any, tmp_path: Path) -> None:
    hub, owned = bus
    obs = Observer(LoopbackTransport(hub, "observer")).start()
    owned.append(obs.t)
    d = _start(hub, owned, tmp_path, discover_streams=False)
    owned.append(FakeEdge(LoopbackTransport(hub, "edge-e1"), "e1", capacity_fps=50.0).start())
    wait_for(lambda: d.leader and obs.decisions, 5, what="first decision")
    cam = LoopbackTransport(hub, "camera")
    cam.start()
    owned.append(cam)
    cam.publish(frame_topic(CAM), b"frame")
    d.trigger("check")  # a decision after the frame: still nothing to place
    wait_for(lambda: len(obs.decisions) >= 2, 5, what="second decision")
    assert obs.owner() == {}
