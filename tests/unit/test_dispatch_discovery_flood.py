"""Finding 3: a flood of made-up stream ids is capped, reported, and never starves failover."""

# Default run: 4,000 ids in 2.5 s; ``LINEWATCH_FLOOD_FULL=1``: the 20,000 ids in 5 s.

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dispatch_kit import FakeEdge, Observer
from helpers import wait_for

from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import DeadLetter
from broker.topics import ALL_DEAD_LETTERS, StreamRef, frame_topic
from broker.transport import Inbound
from services.dispatcher.discovery import Caps, Discovery
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings, StreamSpec

pytestmark = pytest.mark.unit

FULL = os.environ.get("LINEWATCH_FLOOD_FULL") == "1"
REAL = StreamRef.camera("A", "l1", "st1", "real")
KEEPALIVE = 1


def test_caps_per_site_total_and_window() -> None:
    d = Discovery(caps=Caps(per_site=3, total=5, per_window=2, window_s=10, max_reports=4))
    none: frozenset[str] = frozenset()
    got = [d.learn(f"A/l/s/camera/c{i}", none, 0.0) for i in range(3)]
    assert got == ["new", "new", "refused"]  # 2 per window
    assert d.learn("A/l/s/camera/c2", none, 1.0) == "refused_again"  # remembered, no report
    assert d.learn("A/l/s/camera/c3", none, 10.5) == "new"  # next window
    assert d.learn("A/l/s/camera/c4", none, 10.6) == "refused"  # 3 per site
    assert [d.learn(f"B/l/s/camera/c{i}", none, 20.0) for i in range(3)] == [
        "new", "new", "refused",
    ]  # fmt: skip
    assert d.learn("C/l/s/camera/c0", none, 40.0) == "refused"  # 5 in all
    refused, counts = d.take_refusals(40.0)
    assert len(refused) == 4 and {k: n for k, (n, _) in counts.items()} == {"A": 2, "B": 1, "C": 1}
    assert all("not discovered" in r.detail for r in refused)
    assert d.learn("C/l/s/camera/c1", none, 41.0) == "refused"
    assert d.take_refusals(41.0)[1] == {}  # one alert per site per window
    assert d.take_refusals(50.0)[1] == {"C": (1, "C/l/s/camera/c1")}


class Dead:
    def __init__(self, hub: LoopbackHub) -> None:
        self.t = LoopbackTransport(hub, "dead-spy")
        self.got: list[DeadLetter] = []
        self.lock = threading.Lock()
        self.t.subscribe(ALL_DEAD_LETTERS, self._on)
        self.t.start()

    def _on(self, m: Inbound) -> None:
        d = decode_output(m.topic, m.payload)
        assert isinstance(d, DeadLetter)
        with self.lock:
            self.got.append(d)
        m.ack()


@pytest.fixture
def owned() -> Iterator[list[Any]]:
    things: list[Any] = []
    yield things
    for t in reversed(things):
        t.stop()


def _flood(hub: LoopbackHub, n: int, seconds: float, done: threading.Event) -> None:
    t = LoopbackTransport(hub, "attacker")
    t.start()
    try:
        start = time.monotonic()
        for i in range(n):
            site = "A" if i % 2 else f"S{i % 97}"  # one site and many sites
            t.publish(frame_topic(StreamRef.camera(site, "l1", "x", f"fake{i}")), b"x", qos=0)
            if i % 200 == 0:
                ahead = start + seconds * i / n - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the flood, not waiting for a result
    finally:
        t.stop()
        done.set()


def test_twenty_thousand_made_up_ids_do_not_block_failover(
    tmp_path: Path, owned: list[Any]
) -> None:
    hub = LoopbackHub()
    obs = Observer(LoopbackTransport(hub, "observer")).start()
    owned.append(obs.t)
    dead = Dead(hub)
    owned.append(dead.t)
    s = DispatchSettings(
        dispatcher_id="d1",
        keepalive_s=KEEPALIVE,
        startup_grace_s=0.1,
        debounce_s=0.05,
        observe_rates=False,
        rebalance_s=0,
        data_dir=tmp_path,
        streams=[StreamSpec(id=REAL.key, fps=1.0)],
    )
    d = Dispatcher(s, LoopbackTransport(hub, "dispatch-d1"))
    d.start()
    owned.append(d)
    edges = {
        w: FakeEdge(LoopbackTransport(hub, f"edge-{w}"), w, capacity_fps=5000.0).start()
        for w in ("e1", "e2")
    }
    owned.extend(edges.values())
    first = wait_for(lambda: obs.owner().get(REAL.key), 10, what="real stream placed")
    other = "e2" if first == "e1" else "e1"

    n, seconds = (20_000, 5.0) if FULL else (4_000, 2.5)
    done = threading.Event()
    flood = threading.Thread(target=_flood, args=(hub, n, seconds, done), daemon=True)
    flood.start()
    wait_for(lambda: len(d._disc.discovered) > 50, 10, what="flood under way")
    edges[first]._stop.set()  # the owner hangs: no heartbeats, no Last Will
    hung = time.monotonic()
    wait_for(lambda: obs.owner().get(REAL.key) == other, 15, what="failover during the flood")
    failover = time.monotonic() - hung
    assert not done.is_set() or failover <= 1.5 * KEEPALIVE + 2
    done.wait(30)
    flood.join(30)
    caps = Caps()
    wait_for(lambda: len(dead.got) >= 1 and obs.alerts, 10, what="dead letters and alerts")
    discovered = len(d._disc.discovered)
    size = max(len(a.model_dump_json()) for a in obs.assign.values())
    print(
        f"discovery flood: {n} ids in {seconds:g} s, failover {failover:.2f} s, "
        f"{discovered} discovered, largest assignment {size} B, {len(dead.got)} dead letters"
    )
    assert failover <= 1.5 * KEEPALIVE + 2
    assert discovered <= caps.total and discovered <= caps.per_site + 96 * caps.per_window
    assert {x.reason for x in dead.got} == {"discovery_limit"}
    assert any(a.kind == "overload" and "discovery capped" in a.message for a in obs.alerts)
    assert size < 100_000
