"""Dispatcher service over the loopback bus: births, Last Will, stale deaths, cool-down, alerts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dispatch_kit import FakeEdge, Observer
from helpers import wait_for

from broker.codecs import encode
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import WorkerStatus, utcnow
from broker.topics import (
    worker_status_topic,
)
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings

pytestmark = pytest.mark.unit

STREAMS = [f"A/l1/st{i}/camera/c{i}" for i in range(6)]


def _placed_when(
    obs: Observer, cond: Callable[[dict[str, str]], bool]
) -> Callable[[], dict[str, str]]:
    """A wait_for condition: all six streams placed and ``cond`` holds on the owner map."""

    def check() -> dict[str, str]:
        o = obs.placed(6)
        return o if o and cond(o) else {}

    return check


def _settings(tmp_path: Path, **kw: Any) -> DispatchSettings:
    streams = kw.pop("streams", [{"id": s, "fps": 10.0} for s in STREAMS])
    base: dict[str, Any] = dict(
        dispatcher_id="d1",
        streams=streams,
        keepalive_s=1,
        startup_grace_s=0.1,
        debounce_s=0.05,
        cooldown_s=60,
        observe_rates=False,
        rebalance_s=0,
        data_dir=tmp_path,
    )
    base.update(kw)
    return DispatchSettings(**base)


@pytest.fixture
def bus() -> Iterator[tuple[LoopbackHub, Observer, list[Any]]]:
    hub = LoopbackHub()
    obs = Observer(LoopbackTransport(hub, "observer")).start()
    owned: list[Any] = []
    try:
        yield hub, obs, owned
    finally:
        for thing in reversed(owned):
            thing.stop()
        obs.t.stop()


def _dispatcher(hub: LoopbackHub, owned: list[Any], settings: DispatchSettings) -> Dispatcher:
    d = Dispatcher(settings, LoopbackTransport(hub, f"dispatch-{settings.dispatcher_id}"))
    d.start()
    owned.append(d)
    return d


def _edge(hub: LoopbackHub, owned: list[Any], wid: str, **fields: Any) -> FakeEdge:
    fields.setdefault("capacity_fps", 50.0)
    fields.setdefault("cost_per_hour", 1.0)
    e = FakeEdge(LoopbackTransport(hub, f"edge-{wid}"), wid, **fields).start()
    owned.append(e)
    return e


def test_births_lead_to_fenced_assignments(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    _dispatcher(hub, owned, _settings(tmp_path))
    for w in ("e1", "e2", "e3"):
        _edge(hub, owned, w)
    owner = wait_for(lambda: obs.placed(6), 10, what="all streams placed")
    assert set(owner) == set(STREAMS)
    per = {w: sum(1 for v in owner.values() if v == w) for w in set(owner.values())}
    assert all(n * 10.0 <= 0.8 * 50.0 for n in per.values())  # capacity: at most 4 per worker
    assert all(obs.assign[w].epoch >= 1 for w in per)
    assert obs.decisions and obs.decisions[-1].after == owner


def test_last_will_moves_only_the_dead_workers_streams(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    d = _dispatcher(hub, owned, _settings(tmp_path))
    edges = {w: _edge(hub, owned, w) for w in ("e1", "e2", "e3")}
    before = wait_for(lambda: obs.placed(6), 10, what="all streams placed")
    wait_for(lambda: d.epoch == max(a.epoch for a in obs.assign.values()), 5)
    victim = before[STREAMS[0]]
    old_epoch = obs.assign[victim].epoch
    edges[victim].kill()
    after = wait_for(
        _placed_when(obs, lambda o: victim not in o.values()),
        10,
        what="victim's streams reassigned",
    )
    assert obs.assign[victim].streams == () and obs.assign[victim].epoch > old_epoch
    for s, w in before.items():
        if w != victim:
            assert after[s] == w, f"healthy stream {s} moved"
        else:
            assert obs.assign[after[s]].epoch > old_epoch
    assert any(x.trigger.startswith("death:" + victim) for x in obs.decisions)


def test_missed_heartbeats_mean_dead(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    _dispatcher(hub, owned, _settings(tmp_path))
    e1 = _edge(hub, owned, "e1", capacity_fps=200.0)
    wait_for(lambda: obs.placed(6), 10)
    e1._stop.set()  # silent: no heartbeats, no will (a hung host)
    _edge(hub, owned, "e2", capacity_fps=200.0)
    owner = wait_for(
        _placed_when(obs, lambda o: set(o.values()) == {"e2"}),
        10,
        what="streams moved off the silent worker",
    )
    assert set(owner.values()) == {"e2"}
    assert any("expired:e1" in x.trigger for x in obs.decisions)


def test_stale_death_is_ignored(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    _dispatcher(hub, owned, _settings(tmp_path))
    _edge(hub, owned, "e1", capacity_fps=200.0)
    first = wait_for(lambda: obs.placed(6), 10)
    old = LoopbackTransport(hub, "old-incarnation")
    old.start()
    stale = WorkerStatus(worker="e1", role="edge", state="offline", counter=0, ts=utcnow())
    old.publish(worker_status_topic("e1"), encode(stale), retain=True)
    old.stop()
    _edge(hub, owned, "e2", capacity_fps=10.0, cost_per_hour=5.0)  # a join: a decision follows
    wait_for(lambda: any("join:e2" in x.trigger for x in obs.decisions), 10)
    assert obs.owner() == first
    assert not any("death:e1" in x.trigger for x in obs.decisions)


def _cooldown_case(
    bus: Any, tmp_path: Path, cooldown_s: float
) -> tuple[dict[str, str], dict[str, str], Observer]:
    hub, obs, owned = bus
    _dispatcher(hub, owned, _settings(tmp_path, cooldown_s=cooldown_s))
    a = _edge(hub, owned, "a", capacity_fps=40.0)
    _edge(hub, owned, "b", capacity_fps=40.0)
    first = wait_for(lambda: obs.placed(6), 10)
    a.kill()  # b alone cannot hold all six (capacity 32 fps): what fits moves to b
    wait_for(lambda: obs.assign.get("a") and obs.assign["a"].streams == (), 10)
    moved = {s for s, w in first.items() if w == "a" and obs.owner().get(s) == "b"}
    _edge(hub, owned, "c", capacity_fps=500.0, cost_per_hour=0.1)
    wait_for(lambda: any("join:c" in x.trigger for x in obs.decisions), 10)
    wait_for(lambda: obs.placed(6), 10)
    return first, {s: obs.owner()[s] for s in moved}, obs


def test_cooldown_keeps_recently_moved_streams(bus: Any, tmp_path: Path) -> None:
    _, now, _ = _cooldown_case(bus, tmp_path, cooldown_s=60)
    assert now and set(now.values()) == {"b"}  # not moved twice within the cool-down


def test_without_cooldown_the_cheap_worker_takes_them(bus: Any, tmp_path: Path) -> None:
    _, _, obs = _cooldown_case(bus, tmp_path, cooldown_s=0)
    assert set(obs.owner().values()) == {"c"}


def test_demand_over_capacity_reduces_rates_and_alerts(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    streams = [{"id": s, "fps": 10.0, "priority": i % 2} for i, s in enumerate(STREAMS)]
    _dispatcher(hub, owned, _settings(tmp_path, streams=streams))
    _edge(hub, owned, "e1", capacity_fps=50.0)  # 40 usable for 60 demanded
    owner = wait_for(lambda: obs.placed(6), 10, what="all placed at reduced rates")
    rates = obs.assign[owner[STREAMS[0]]].rates
    assert rates and all(r < 1.0 for r in rates.values())
    low = {s for i, s in enumerate(STREAMS) if i % 2 == 0}
    assert set(rates) <= low  # the lowest priority is reduced first
    alerts = wait_for(lambda: obs.alerts, 5, what="reduced_rate alert")
    assert all(a.kind == "reduced_rate" for a in alerts)
    assert any("reduced rate" in a.message for a in alerts)


def test_restarted_dispatcher_keeps_healthy_streams(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    d1 = _dispatcher(hub, owned, _settings(tmp_path))
    for w in ("e1", "e2"):
        _edge(hub, owned, w)
    first = wait_for(lambda: obs.placed(6), 10)
    top = max(a.epoch for a in obs.assign.values())
    owned.remove(d1)
    d1.stop()
    n = len(obs.decisions)
    d2 = _dispatcher(hub, owned, _settings(tmp_path, dispatcher_id="d2"))
    wait_for(lambda: len(obs.decisions) > n, 10, what="start-up decision of d2")
    assert obs.owner() == first
    assert d2.epoch >= top and "startup" in obs.decisions[-1].trigger


def test_overload_moves_streams_off_the_slow_worker(bus: Any, tmp_path: Path) -> None:
    hub, obs, owned = bus
    _dispatcher(hub, owned, _settings(tmp_path, p95_bound_ms=100.0, overload_derate=0.5))
    e1 = _edge(hub, owned, "e1", capacity_fps=100.0, cost_per_hour=1.0)
    wait_for(lambda: obs.placed(6), 10)
    _edge(hub, owned, "e2", capacity_fps=100.0, cost_per_hour=2.0)
    e1.fields["p95_ms"] = 900.0  # its heartbeats now report p95 above the bound
    owner = wait_for(
        _placed_when(obs, lambda o: "e2" in o.values()),
        10,
        what="streams moved off the overloaded worker",
    )
    assert sum(1 for w in owner.values() if w == "e1") <= 4  # 0.5 x 100 x 0.8 = 40 fps
    assert any("overload:e1" in x.trigger for x in obs.decisions)
