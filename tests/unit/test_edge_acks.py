"""Inputs are acked only after every output is acknowledged; never on a refused output."""

from __future__ import annotations

import threading

import pytest
from helpers import wait_for

from edge.acks import AckTracker

pytestmark = pytest.mark.unit


class Pub:
    """A publish handle the test resolves by hand (like a broker PUBACK arriving later)."""

    def __init__(self) -> None:
        self._ev = threading.Event()
        self.ok = True

    def resolve(self, ok: bool = True) -> None:
        self.ok = ok
        self._ev.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ev.wait(timeout) and self.ok

    @property
    def done(self) -> bool:
        return self._ev.is_set()


class ThenPub(Pub):
    def __init__(self) -> None:
        super().__init__()
        self._cbs: list = []

    def then(self, fn) -> None:
        if self.done:
            fn(self)
        else:
            self._cbs.append(fn)

    def resolve(self, ok: bool = True) -> None:
        super().resolve(ok)
        for fn in self._cbs:
            fn(self)


@pytest.mark.parametrize("cls", [Pub, ThenPub])
def test_ack_after_all_outputs(cls: type[Pub]) -> None:
    tracker = AckTracker()
    acked = threading.Event()
    inp = tracker.open(acked.set, "frame 1")
    p1, p2 = cls(), cls()
    inp.add(p1)
    inp.add(p2)
    inp.seal()
    p1.resolve()
    assert not acked.is_set()
    p2.resolve()
    wait_for(acked.is_set, 5, what="ack")
    wait_for(lambda: tracker.pending == 0, 5, what="no pending")
    tracker.stop()


def test_not_acked_before_seal() -> None:
    tracker = AckTracker()
    acked = threading.Event()
    inp = tracker.open(acked.set)
    done = ThenPub()
    done.resolve()
    inp.add(done)
    assert not acked.is_set()
    inp.seal()
    assert acked.is_set()


def test_hold_release_for_later_outputs() -> None:
    tracker = AckTracker()
    acked = threading.Event()
    inp = tracker.open(acked.set)
    inp.hold()
    inp.seal()
    assert not acked.is_set()
    later = ThenPub()
    inp.add(later, held=True)
    later.resolve()
    assert acked.is_set()


def test_refused_output_leaves_input_unacked() -> None:
    tracker = AckTracker()
    acked = threading.Event()
    inp = tracker.open(acked.set)
    p = ThenPub()
    inp.add(p)
    inp.seal()
    p.resolve(ok=False)
    assert not acked.is_set()
    assert tracker.counts() == {"pending": 0, "acked": 0, "failed": 1}


def test_drain_waits_for_pending() -> None:
    tracker = AckTracker()
    inp = tracker.open(lambda: None)
    p = Pub()
    inp.add(p)
    inp.seal()
    assert tracker.drain(0.05) is False
    p.resolve()
    assert tracker.drain(5) is True
    tracker.stop()
