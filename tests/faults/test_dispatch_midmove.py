"""The leading dispatcher killed while a move is half done.

Fault: two dispatchers, each reaching the broker through a fault proxy. Once the site
serves, the leader's broker -> dispatcher direction is delayed by 1.5 s, so after it
publishes a move's revocations it waits 1.5 s for their PUBACKs before publishing the grants
(grants.py: revocations first, each acknowledged). The busiest worker is SIGKILLed; the
moment its revocation is seen (and no grant of its streams yet), the leader is SIGKILLed:
the streams are revoked and granted to nobody. No randomness (no seed). Bound: the
follower takes over and every orphaned stream is served by a live worker within 20 s.
Pass rule: never two up-to-date owners of a stream (observer, every 100 ms);
tests/history.py: lost = duplicated = unexpected = 0 with only failover / missing / shed
gaps (docs/operations.md, "Faults").
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dispatch_stack import Camera, Stack, busiest, frames, history, serving
from edge_stack import ensure_fast_model
from faultproxy import FaultProxy
from helpers import wait_for

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def model() -> Path:
    return ensure_fast_model()


@pytest.fixture()
def stack(
    mosquitto_url: str, model: Path, tmp_path: Path
) -> Iterator[tuple[Stack, dict[str, FaultProxy]]]:
    b = urlsplit(mosquitto_url)
    s = Stack(mosquitto_url, model, tmp_path)
    proxies: dict[str, FaultProxy] = {}
    for i in range(2):
        p = FaultProxy(b.hostname or "127.0.0.1", b.port or 1883).start()
        proxies[f"{s.site}D{i}"] = p
        s.dispatch_urls[f"{s.site}D{i}"] = f"mqtt://127.0.0.1:{p.port}"
    try:
        yield s.start(dispatchers=2), proxies
    except BaseException:
        print(s.logs())
        raise
    finally:
        for p in proxies.values():
            p.heal()
        s.stop()
        for p in proxies.values():
            p.stop()


def _granted(s: Stack, streams: list[str], after_epoch: int, exclude: str) -> bool:
    return any(
        set(a.streams) & set(streams) and a.epoch > after_epoch
        for w, a in s.fleet.assign.items()
        if w != exclude
    )


def test_leader_killed_between_revocation_and_grant(
    stack: tuple[Stack, dict[str, FaultProxy]],
) -> None:
    s, proxies = stack
    cam = Camera(s, frames(s.model))
    cam.start()
    try:
        wait_for(lambda: serving(s, time.monotonic() - 1), 120, 0.1, what="serving")
        wait_for(lambda: all(cam.log.count(c.key) >= 10 for c in s.cams), 60, 0.05)
        leader = s.fleet.decisions[-1][1].dispatcher
        proxies[leader].delay(1.5, "down")  # its PUBACKs (and everything else) come late
        victim, orphans = busiest(s)
        old = s.fleet.assign[victim].epoch
        t0 = time.monotonic()
        s.procs[victim].kill()
        wait_for(lambda: s.fleet.assign[victim].epoch > old, 30, 0.002, what="the revocation")
        assert not _granted(s, orphans, old, victim), "the grant came with the revocation"
        s.procs[leader].kill()  # half done: revoked, granted to nobody
        t_kill = time.monotonic()
        for st in orphans:
            when = wait_for(
                lambda st=st: s.fleet.served_after(st, t_kill, victim),
                30,
                0.05,
                what=f"{st} served after the leader's death",
            )
            print(json.dumps({"stream": st, "served_after_leader_kill_s": round(when - t_kill, 3)}))
            assert when - t_kill <= 20, f"{st} served {when - t_kill:.1f}s after"
        took_over = [d for when, d in s.fleet.decisions if when > t_kill]
        assert took_over and all(d.dispatcher != leader for d in took_over)
        wait_for(lambda: time.monotonic() - s.fleet.decisions[-1][0] > 3, 60, 0.1)
        n = {c.key: cam.log.count(c.key) for c in s.cams}
        wait_for(lambda: all(cam.log.count(k) >= v + 15 for k, v in n.items()), 60)
        print(
            json.dumps(
                {
                    "victim": victim,
                    "leader": leader,
                    "kill_to_revocation_s": 0,
                    "victim_killed_s_before_leader": round(t_kill - t0, 3),
                }
            )
        )
    finally:
        cam.halt.set()
        cam.join(30)
    history(s, cam)
    assert s.fleet.violations == []
