"""Finding 3 end to end: a real `linewatch dispatch` on Mosquitto under a flood of made-up ids."""

# Two fake workers of this test's fleet, one configured stream; while an attacker publishes
# QoS 0 frames to made-up camera ids (4,000 in 2.5 s; LINEWATCH_FLOOD_FULL=1: 20,000 in
# 5 s), the owner of the real stream hangs (no heartbeats, no Last Will): the dispatcher
# process must move the stream within 1.5 x keepalive + 2 s, and keep discovery capped.

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_kit import FakeEdge, Observer
from edge_stack import Proc, linewatch
from helpers import wait_for

from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic

pytestmark = pytest.mark.integration
FULL = os.environ.get("LINEWATCH_FLOOD_FULL") == "1"
KEEPALIVE = 1


def _flood(url: str, site: str, n: int, seconds: float, done: threading.Event) -> None:
    t = MqttTransport(url, f"attacker-{site}", clean_start=True)
    t.start()
    try:
        start = time.monotonic()
        for i in range(n):
            sub = f"{site}x{i % 7}"  # a few sites of this test's own
            t.publish(frame_topic(StreamRef.camera(sub, "l1", "x", f"fake{i}")), b"x", qos=0)
            if i % 200 == 0:
                ahead = start + seconds * i / n - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the flood, not waiting for a result
    finally:
        t.stop()
        done.set()


@pytest.fixture()
def stack(mosquitto_url: str, site_id: str, tmp_path: Path) -> Iterator[tuple[Observer, list]]:
    db = f"sqlite:///{tmp_path / 'lw.db'}"
    env = {"LINEWATCH_DB_URL": db, "LINEWATCH_MQTT_URL": mosquitto_url}
    linewatch("db", "upgrade", env=env, timeout=120)
    real = StreamRef.camera(site_id, "l1", "s1", "real")
    env |= {
        "LINEWATCH_DATA_DIR": str(tmp_path),
        "LINEWATCH_KEEPALIVE_S": str(KEEPALIVE),
        "LINEWATCH_WORKER_PREFIX": f"{site_id}-",
        "LINEWATCH_DISPATCHER_ID": f"{site_id}-d",
        "LINEWATCH_LEASE_NAME": f"{site_id}-lease",
        "LINEWATCH_STREAMS": json.dumps([{"id": real.key, "fps": 1.0}]),
        "LINEWATCH_DISCOVER_TOPICS": json.dumps(["lw/v1/+/+/+/camera/+/frame"]),
        "LINEWATCH_OBSERVE_RATES": "false",
    }
    owned: list = []
    obs = Observer(MqttTransport(mosquitto_url, f"obs-{site_id}", clean_start=True), f"{site_id}-")
    obs.start()
    owned.append(obs.t)
    proc = Proc("dispatch", ["dispatch"], env, tmp_path).start()
    try:
        for w in ("e1", "e2"):
            t = MqttTransport(mosquitto_url, f"{site_id}-{w}", clean_start=True)
            owned.append(FakeEdge(t, f"{site_id}-{w}", capacity_fps=5000.0).start())
        yield obs, [proc, *owned, real]
    finally:
        proc.stop()
        for thing in reversed(owned):
            thing.stop()


def test_made_up_ids_do_not_block_failover_of_a_real_dispatcher(
    stack: tuple[Observer, list], mosquitto_url: str, site_id: str
) -> None:
    obs, (proc, _obs_t, e1, e2, real) = stack
    owner = wait_for(lambda: obs.owner().get(real.key), 30, what="the real stream placed")
    hung, other = (e1, e2) if owner == e1.id else (e2, e1)
    n, seconds = (20_000, 5.0) if FULL else (4_000, 2.5)
    done = threading.Event()
    threading.Thread(
        target=_flood, args=(mosquitto_url, site_id, n, seconds, done), daemon=True
    ).start()
    wait_for(lambda: len(obs.owner()) > 20, 15, what="the flood being discovered")
    hung._stop.set()  # heartbeats stop; the connection (and so no Last Will) stays
    t0 = time.monotonic()
    wait_for(lambda: obs.owner().get(real.key) == other.id, 15, what="failover in the flood")
    failover = time.monotonic() - t0
    assert done.wait(60)
    placed = len(obs.owner())
    size = max(len(a.model_dump_json()) for a in obs.assign.values())
    print(
        f"real dispatcher, {n} ids in {seconds:g} s: failover {failover:.2f} s, "
        f"{placed} streams placed, largest assignment {size} B"
    )
    assert failover <= 1.5 * KEEPALIVE + 2
    assert placed <= 1000 + 1 and size < 100_000
    assert proc.alive(), proc.tail()
