"""Mosquitto restarted under a running site (edge worker + store, SQLite history): a private
broker (tests/private_mosquitto.py, broker/mosquitto.conf with persistence) so the shared
one is never touched. No randomness (no seed).

Graceful. Fault: 80 frames published and acknowledged by the broker, then Mosquitto is
stopped with SIGTERM (it writes its persistence file) while the worker still has frames
queued, and started again on the same port and files. Bound: the history is complete within
120 s of the restart. Pass rule (tests/history.py): lost = duplicated = unexpected = 0 and
no gap at all — the sessions, their queued frames and the worker's unconfirmed outputs
survive a graceful restart.

SIGKILL. Fault: 40 frames acknowledged by the broker, then Mosquitto is SIGKILLed (nothing
since its last autosave is kept) and restarted; 20 more frames follow once the worker has
subscribed again. Bound: 120 s. Pass rule: lost = duplicated = unexpected = 0; frames the
broker had acknowledged but lost may only appear as ``missing`` gaps (the worker's seq
tracker sees the hole when the next frame arrives), verdicts it had acknowledged but lost
as ``undelivered`` gaps (the store's hole sweep) — docs/operations.md, "Faults".

SIGKILL with verdicts held for an offline store. Fault: the store stopped, 35 frames
inspected meanwhile (their verdicts wait in Mosquitto's memory for the store's session),
Mosquitto SIGKILLed and restarted, the store started again, 20 more frames. Bound: the
hole sweep's grace (10 s here) after the later frames, within 60 s. Pass rule: lost =
duplicated = unexpected = 0, the lost verdicts as ``undelivered`` gaps.

The store's sweep runs every second here with a 10 s grace (defaults 30 s / 60 s): long
enough for the worker's own ``missing`` gaps (2 s reorder timeout) to land first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_site import Site, camera_frames
from edge_stack import Proc, ensure_fast_model, query
from helpers import wait_for
from history import PublisherLog, assert_ok, report, sqlite_rows, wait_accounted
from private_mosquitto import PrivateMosquitto

from broker.codecs import decode_output
from broker.topics import verdict_topic
from broker.transport import Inbound

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def fast_model() -> Path:
    return ensure_fast_model()


@pytest.fixture()
def broker(mosquitto_url: str) -> Iterator[PrivateMosquitto]:
    """A Mosquitto of the test's own (``mosquitto_url`` only gates the tier: the binary is
    installed wherever the shared one runs)."""
    m = PrivateMosquitto().start()
    try:
        yield m
    except BaseException:
        print(m.tail())
        raise
    finally:
        m.remove()


@pytest.fixture()
def site(broker: PrivateMosquitto, fast_model: Path, tmp_path: Path) -> Iterator[Site]:
    env = {
        "LINEWATCH_CAMERA_QUEUE": "256",  # 80 frames queued at once: no shedding
        "LINEWATCH_STORE_SWEEP_INTERVAL_S": "1",
        "LINEWATCH_STORE_SWEEP_GRACE_S": "10",
    }
    s = Site(broker.url, fast_model, tmp_path, ["c1"], extra_env=env)
    try:
        yield s.start()
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


def publish(site: Site, log: PublisherLog, seqs: range, images: list[bytes]) -> None:
    c = site.cams[0]
    pubs = [site.watcher.publish_frame(c, images[q % len(images)], q) for q in seqs]
    assert all(p.wait(30) for p in pubs), "the broker did not acknowledge every frame"
    for q in seqs:
        log.record(c.key, q)


def stored(site: Site) -> int:
    return int(query(site.db, "SELECT count(*) FROM frames")[0][0])


def resubscribed(site: Site, counter: int) -> None:
    """The worker is back: a heartbeat after the restart (its subscriptions go first)."""
    site.watcher.wait_online(site.worker, 60, counter_above=counter - 1)
    n = len(site.watcher.states(site.worker))
    wait_for(lambda: len(site.watcher.states(site.worker)) > n, 30, 0.05, what="a heartbeat")


def test_graceful_restart_with_frames_queued(site: Site, broker: PrivateMosquitto) -> None:
    images, log = camera_frames(site.model, 12), PublisherLog()
    publish(site, log, range(80), images)
    wait_for(lambda: stored(site) >= 5, 60, 0.05, what="the first verdicts")
    broker.stop()  # SIGTERM: persistence written
    at_stop = stored(site)
    assert at_stop < 80, "the worker had nothing queued any more"
    broker.start()
    (h,) = wait_accounted(log, sqlite_rows(site.db), 120)
    print(report([h]), {"stored_at_stop": at_stop})
    assert h.stored == 80


def test_sigkill_and_restart_loses_nothing_silently(site: Site, broker: PrivateMosquitto) -> None:
    images, log = camera_frames(site.model, 12), PublisherLog()
    counter = site.watcher.last(site.worker).counter
    publish(site, log, range(40), images)
    wait_for(lambda: stored(site) >= 5, 60, 0.05, what="the first verdicts")
    broker.kill()  # SIGKILL: sessions and queued messages since the last autosave are gone
    at_kill = stored(site)
    broker.start()
    resubscribed(site, counter)
    publish(site, log, range(40, 60), images)
    allowed = {"missing", "undelivered"}
    (h,) = wait_accounted(log, sqlite_rows(site.db), 120, allowed_gaps=allowed)
    print(report([h]), {"stored_at_kill": at_kill})


def test_sigkill_with_verdicts_queued_for_the_store(site: Site, broker: PrivateMosquitto) -> None:
    """Fault: the store stopped (its session keeps the verdicts in Mosquitto's memory), 35
    frames inspected meanwhile, then Mosquitto SIGKILLed and restarted with the store; 20 more
    frames follow. Pass rule (the issue's): lost = 0, the broker's losses as gap rows (before
    the hole sweep: 35 of 60 lost silently)."""
    images, log = camera_frames(site.model, 12), PublisherLog()
    counter = site.watcher.last(site.worker).counter
    store_id = f"store-{site.site}"
    seen: set[str] = set()

    def on_verdict(m: Inbound) -> None:
        seen.add(decode_output(m.topic, m.payload).key)  # type: ignore[attr-defined]
        m.ack()

    site.watcher.t.subscribe(verdict_topic(site.cams[0]), on_verdict)
    publish(site, log, range(5), images)
    wait_for(lambda: stored(site) >= 5, 60, 0.05, what="the first verdicts")
    site.store.stop()  # offline: its session keeps the verdicts in Mosquitto's memory
    store_counter = site.watcher.last(store_id).counter
    publish(site, log, range(5, 40), images)
    wait_for(lambda: len(seen) >= 40, 60, 0.1, what="all 40 verdicts at the broker")
    broker.kill()
    broker.start()
    site.store = Proc("store2", ["store"], site.env, site.tmp).start()
    site.watcher.wait_online(store_id, 60, counter_above=store_counter)
    resubscribed(site, counter)
    publish(site, log, range(40, 60), images)
    wait_for(lambda: len(seen) >= 60, 60, 0.1, what="all 60 verdicts at the broker")
    sql = "SELECT count(*) FROM frames WHERE seq >= 40"
    wait_for(lambda: query(site.db, sql)[0][0] == 20, 60, 0.1, what="the store back")
    allowed = {"missing", "undelivered"}
    (h,) = wait_accounted(log, sqlite_rows(site.db), 60, allowed_gaps=allowed)
    print(report([h]))
    assert h.gaps.get("undelivered", 0) > 0, "the broker lost nothing: the fault did not happen"
    assert_ok([h], allowed)
