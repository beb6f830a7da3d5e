"""Stream discovery bookkeeping: new streams, who serves them, bounded holding of inputs."""

from __future__ import annotations

import pytest

from services.dispatcher.discovery import Discovery, HeldInput

pytestmark = pytest.mark.unit

CAM = "s1/l1/st1/camera/c1"
FRAME = "lw/v1/s1/l1/st1/camera/c1/frame"


def _item(n: int, size: int = 10) -> HeldInput:
    return HeldInput(FRAME, bytes([n % 256]) * size, {"seq": str(n)})


def test_only_input_topics_name_a_stream() -> None:
    assert Discovery.stream_of(FRAME).key == CAM  # type: ignore[union-attr]
    assert Discovery.stream_of("lw/v1/s1/l1/st1/sensor/t1").key == "s1/l1/st1/sensor/t1"  # type: ignore[union-attr]
    assert Discovery.stream_of("lw/v1/s1/l1/st1/camera/c1/verdict") is None
    assert Discovery.stream_of("lw/v1/s1/l1/st1/sensor/t1/readings") is None
    assert Discovery.stream_of("lw/v1/s 1/l1/st1/camera/c1/frame") is None
    assert Discovery.stream_of("elsewhere/topic") is None


def test_a_stream_is_discovered_once_and_configured_streams_never() -> None:
    d = Discovery(fps=2.5)
    assert d.learn(CAM, frozenset(), 0.0) == "new"
    assert d.learn(CAM, frozenset(), 0.0) == "known"
    assert d.discovered[CAM].fps == 2.5
    assert d.learn("s1/l1/st1/camera/c2", frozenset(["s1/l1/st1/camera/c2"]), 0.0) == "known"
    d.adopt([CAM, "s1/l1/st1/camera/c3", "s1/l1/st1/camera/c2"], ["s1/l1/st1/camera/c2"])
    assert sorted(d.discovered) == [CAM, "s1/l1/st1/camera/c3"]


def test_serving_follows_the_latest_status_of_each_worker() -> None:
    d = Discovery()
    d.status("W1", [CAM], alive=True)
    assert d.served(CAM)
    d.status("W1", [], alive=True)  # revoked
    assert not d.served(CAM)
    d.status("W2", [CAM], alive=True)
    d.status("W1", ["s1/l1/st1/camera/c9"], alive=True)
    assert d.serving == {CAM: "W2", "s1/l1/st1/camera/c9": "W1"}
    d.status("W2", [CAM], alive=False)  # death: serves nothing
    assert not d.served(CAM)


def test_held_inputs_are_released_in_order_once_served() -> None:
    d = Discovery(hold_frames=8)
    for n in range(3):
        d.hold(CAM, _item(n))
    assert d.release() == []  # nobody serves it yet
    d.status("W1", [CAM], alive=True)
    got = d.release()
    assert [i.properties["seq"] for i in got] == ["0", "1", "2"]
    assert d.held_bytes == 0 and not d.held and d.take_overflow() == {}


def test_bounds_push_out_the_oldest_and_count_them() -> None:
    d = Discovery(hold_frames=2, hold_bytes=10_000)
    for n in range(5):
        d.hold(CAM, _item(n))
    assert [i.properties["seq"] for i in d.held[CAM]] == ["3", "4"]
    assert d.take_overflow() == {CAM: 3}
    assert d.take_overflow() == {}
    other = "s1/l1/st1/camera/c2"
    big = Discovery(hold_frames=100, hold_bytes=35)
    for n in range(3):
        big.hold(CAM, _item(n))
    big.hold(other, _item(9))  # 40 bytes > 35: the fullest stream gives up its oldest
    assert big.held_bytes <= 35
    assert big.take_overflow() == {CAM: 1}
    assert big.drop_all() == {CAM: 2, other: 1}
    assert big.held_bytes == 0 and not big.held


def test_holding_can_be_switched_off() -> None:
    d = Discovery(hold_frames=0)
    d.hold(CAM, _item(1))
    assert not d.held and d.take_overflow() == {CAM: 1}
