"""Dispatcher on a real DB (SQLite, Postgres): one leader of two, hand-over, SQL recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dispatch_kit import FakeEdge, Observer
from helpers import wait_for

from broker.loopback import LoopbackHub, LoopbackTransport
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatchSettings, StreamSpec
from services.dispatcher.sqlstore import open_sql
from services.store.engine import upgrade

pytestmark = pytest.mark.integration

STREAMS = [f"A/l1/st{i}/camera/c{i}" for i in range(6)]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path / 'dispatch.db'}"
    )
    upgrade(url)
    return url


@pytest.fixture
def owned() -> Iterator[list[Any]]:
    things: list[Any] = []
    try:
        yield things
    finally:
        for t in reversed(things):
            t.stop()


def _settings(tmp_path: Path, db_url: str, did: str, **kw: Any) -> DispatchSettings:
    return DispatchSettings(
        dispatcher_id=did,
        db_url=db_url,
        keepalive_s=1,
        streams=[StreamSpec(id=s, fps=10.0) for s in STREAMS],
        startup_grace_s=0.1,
        debounce_s=0.05,
        observe_rates=False,
        discover_streams=False,  # a shared broker carries other tests' cameras
        rebalance_s=0,
        lease_ttl_s=1.5,
        data_dir=tmp_path,
        **kw,
    )


def _dispatcher(hub: LoopbackHub, owned: list[Any], settings: DispatchSettings) -> Dispatcher:
    lock, store = open_sql(settings)
    d = Dispatcher(
        settings, LoopbackTransport(hub, f"d-{settings.dispatcher_id}"), lock=lock, store=store
    )
    d.start()
    owned.append(d)
    return d


def _edges(
    hub: LoopbackHub,
    owned: list[Any],
    names: tuple[str, ...],
    held: dict[str, Any] | None = None,
) -> None:
    """Fake workers; ``held`` (worker -> Assignment): what each announces it holds, as a real
    worker does after a restart of the bus (its assignment survives in its state file)."""
    for w in names:
        a = (held or {}).get(w)
        extra = {"epoch": a.epoch, "streams": tuple(a.streams)} if a is not None else {}
        e = FakeEdge(
            LoopbackTransport(hub, f"edge-{w}"), w, capacity_fps=50.0, cost_per_hour=1.0, **extra
        ).start()
        owned.append(e)


def test_one_leader_and_hand_over(db_url: str, tmp_path: Path, owned: list[Any]) -> None:
    hub = LoopbackHub()
    obs = Observer(LoopbackTransport(hub, "obs")).start()
    owned.append(obs.t)
    d1 = _dispatcher(hub, owned, _settings(tmp_path, db_url, "d1"))
    d2 = _dispatcher(hub, owned, _settings(tmp_path, db_url, "d2"))
    _edges(hub, owned, ("e1", "e2", "e3"))
    first = wait_for(lambda: obs.placed(6), 15, what="all streams placed")
    leader, follower = (d1, d2) if d1.leader else (d2, d1)
    assert leader.leader and not follower.leader
    assert {x.dispatcher for x in obs.decisions} == {leader.id}
    t0 = time.monotonic()
    owned.remove(leader)
    leader.stop()  # graceful: releases the lease
    wait_for(lambda: follower.leader, 5, what="follower takes over within 5 s")
    took = time.monotonic() - t0
    wait_for(lambda: any(x.dispatcher == follower.id for x in obs.decisions), 5)
    takeover = next(x for x in obs.decisions if x.dispatcher == follower.id)
    assert "takeover" in takeover.trigger and takeover.after == first  # nothing moved
    assert took < 5.0


def test_restart_recovers_assignments_from_sql(
    db_url: str, tmp_path: Path, owned: list[Any]
) -> None:
    hub = LoopbackHub()
    obs = Observer(LoopbackTransport(hub, "obs")).start()
    owned.append(obs.t)
    d1 = _dispatcher(hub, owned, _settings(tmp_path, db_url, "d1"))
    _edges(hub, owned, ("e1", "e2", "e3"))
    first = wait_for(lambda: obs.placed(6), 15, what="all streams placed")
    top = max(a.epoch for a in obs.assign.values())
    owned.remove(d1)
    d1.stop()
    # a new bus without any retained assignment: only SQL remembers the placement
    hub2 = LoopbackHub()
    obs2 = Observer(LoopbackTransport(hub2, "obs2")).start()
    owned.append(obs2.t)
    _edges(hub2, owned, ("e1", "e2", "e3"), held=dict(obs.assign))
    d2 = _dispatcher(hub2, owned, _settings(tmp_path, db_url, "d2"))
    wait_for(lambda: obs2.decisions, 15, what="start-up decision")
    start = obs2.decisions[0]
    assert start.before == first and start.after == first  # healthy streams not moved
    assert start.epochs == {} and d2.epoch >= top  # nothing re-issued; epochs never go back
