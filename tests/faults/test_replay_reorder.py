"""Replayed and reordered frames against a real edge worker and store (SQLite history).

Replay. Fault: every frame of a camera published three times (the same seq and bytes; a
publisher retrying, a bridge looping). Bound: accounted within 120 s. Pass rule
(tests/history.py): lost = duplicated = unexpected = 0 and no gap at all — replays are
recognised (seq tracker + done keys) or land on the store's idempotency key.

Reorder. Fault: two frames held back by the publisher (which ones: drawn from the recorded
``fault_seed``); the first is published again inside the reorder window (0.4 s late,
window 1.5 s), the second only after its ``missing`` gap is in SQL. Bound: 120 s. Pass
rule: lost = duplicated = unexpected = 0; the first frame is stored and gapped nowhere;
the second gets its ``missing`` gap first, then is stored, and its verdict narrows the gap
away (a verdict always wins, docs/contract.md 8.1): stored once, no gap left.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_site import Site, camera_frames
from edge_stack import ensure_fast_model, query
from helpers import wait_for
from history import PublisherLog, report, sqlite_rows, wait_accounted

pytestmark = pytest.mark.fault
REORDER_S = 1.5


@pytest.fixture(scope="module")
def fast_model() -> Path:
    return ensure_fast_model()


@pytest.fixture()
def site(mosquitto_url: str, fast_model: Path, tmp_path: Path) -> Iterator[Site]:
    env = {"LINEWATCH_REORDER_TIMEOUT_S": str(REORDER_S)}
    s = Site(mosquitto_url, fast_model, tmp_path, ["c1"], extra_env=env)
    try:
        yield s.start()
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


def test_every_frame_replayed_three_times(site: Site) -> None:
    images = camera_frames(site.model, 8)
    c, log, n = site.cams[0], PublisherLog(), 40
    for rnd in range(3):
        pubs = [site.watcher.publish_frame(c, images[q % len(images)], q) for q in range(n)]
        assert all(p.wait(30) for p in pubs)
        if rnd == 0:
            for q in range(n):
                log.record(c.key, q)
            # the second and third copies come once the first is answered, and again at once
            wait_accounted(log, sqlite_rows(site.db), 120)
    (h,) = wait_accounted(log, sqlite_rows(site.db), 120)
    print(report([h]))
    assert h.stored == n and h.gapped == 0, h
    rows = query(site.db, "SELECT count(*) FROM frames WHERE stream = ?", c.key)
    assert rows[0][0] == n


def test_reorder_inside_and_past_the_window(site: Site, rng: random.Random) -> None:
    images = camera_frames(site.model, 8)
    c, log, n = site.cams[0], PublisherLog(), 40
    early = rng.randrange(5, 15)  # back inside the window
    late = rng.randrange(22, 32)  # back only after its gap is recorded
    halt = threading.Event()

    def send(q: int) -> None:
        assert site.watcher.publish_frame(c, images[q % len(images)], q).wait(30)
        log.record(c.key, q)

    for q in range(n):
        if q in (early, late):
            continue
        send(q)
        if q == early + 3:
            halt.wait(0.4)  # the held frame is 0.4 s late: inside the 1.5 s window
            send(early)
    gap = wait_for(
        lambda: query(
            site.db,
            "SELECT from_seq, to_seq, reason FROM gaps WHERE stream = ?",
            c.key,
        ),
        30,
        0.1,
        what=f"the missing gap of seq {late}",
    )
    assert gap == [(late, late, "missing")], gap
    send(late)  # past the window: still inspected and stored; its gap narrowed away
    sql = "SELECT seq FROM frames WHERE stream = ? AND seq = ?"
    wait_for(lambda: query(site.db, sql, c.key, late), 60, 0.1, what=f"seq {late} stored late")
    (h,) = wait_accounted(log, sqlite_rows(site.db), 120, allowed_gaps={"missing"})
    print(report([h]))
    assert h.stored == n and h.late_after_gap == 0 and h.gaps == {}, h
    assert query(site.db, "SELECT gap_key FROM gaps WHERE stream = ?", c.key) == []
    stored = {r[0] for r in query(site.db, "SELECT seq FROM frames WHERE stream = ?", c.key)}
    assert {early, late} <= stored
