"""Writer core on the loopback bus: batching, ack after commit, dedup, dead letters, epochs."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from PIL import Image
from sqlalchemy import Engine, func, select
from store_support import (
    alert,
    assignment,
    cam,
    migrated_sqlite,
    readings,
    sensor,
    status,
    verdict,
)

from broker import topics
from broker.codecs import encode
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Msg
from services.store import schema as s
from services.store.engine import make_engine
from services.store.writer import StoreWriter

pytestmark = pytest.mark.unit


class Rig:
    def __init__(self, tmp: Path, **opts: float) -> None:
        self.url = migrated_sqlite(tmp)
        self.db_file = self.url.removeprefix("sqlite:///")
        self.engine: Engine = make_engine(self.url, busy_timeout_ms=200, immediate=True)
        self.hub = LoopbackHub()
        self.sub = LoopbackTransport(self.hub, "store-test")
        self.pub = LoopbackTransport(self.hub, "pub")
        self.writer = StoreWriter(self.engine, self.sub, backoff_max_s=0.2, **opts)  # type: ignore[arg-type]
        self.sub.start()
        self.pub.start()
        self.writer.start()

    def send(self, topic: str, msg: Msg | bytes) -> None:
        self.pub.publish(topic, msg if isinstance(msg, bytes) else encode(msg))

    def count(self, table: s.Table) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(table)).scalar_one())

    def acked(self) -> int:
        return self.sub.stats()["acked"]

    def close(self) -> None:
        self.writer.stop()
        self.sub.stop()
        self.pub.stop()
        self.engine.dispose()


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_verdicts_are_stored_once_and_acked(rig: Rig) -> None:
    c = cam()
    msgs = [verdict(c, i) for i in range(50)]
    for m in msgs + msgs[:20]:  # 20 redelivered duplicates
        rig.send(topics.verdict_topic(c), m)
    wait_for(lambda: rig.acked() == 70, 10, what="all 70 deliveries acked")
    assert rig.count(s.T_FRAMES) == 50
    with rig.engine.connect() as conn:
        row = conn.execute(select(s.T_FRAMES).where(s.T_FRAMES.c.seq == 7)).one()
    assert row.camera == "cam1" and row.line == "L1" and row.decided_at.tzinfo is not None


def test_batches_close_at_500_rows(rig: Rig) -> None:
    st = sensor()
    for i in range(12):  # 12 x 200 readings: never more than 500 rows in one transaction
        rig.send(topics.readings_topic(st), readings(st, i * 200, 200))
    wait_for(lambda: rig.acked() == 12, 10, what="12 batches acked")
    assert rig.count(s.T_READINGS) == 2400
    stats = rig.writer.stats()
    assert stats["rows"] == 2400
    assert stats["batches"] >= 2400 // 400  # at most two 200-row messages fit under 500


def test_a_lone_message_is_flushed_within_200_ms(rig: Rig) -> None:
    c = cam()
    t0 = time.monotonic()
    rig.send(topics.verdict_topic(c), verdict(c, 1))
    wait_for(lambda: rig.acked() == 1, 5, interval=0.005, what="ack")
    assert time.monotonic() - t0 < 0.2 + 0.25  # flush deadline plus a commit on a busy box


def test_nothing_is_acked_before_commit_and_all_lands_after_outage(rig: Rig) -> None:
    c = cam()
    blocker = sqlite3.connect(rig.db_file, timeout=5)
    blocker.isolation_level = None
    blocker.execute("BEGIN EXCLUSIVE")  # the database refuses every write now
    try:
        for i in range(30):
            rig.send(topics.verdict_topic(c), verdict(c, i))
        wait_for(lambda: rig.writer.stats().get("db_errors", 0) >= 2, 10, what="retries")
        assert rig.acked() == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: rig.acked() == 30, 10, what="acks after the outage")
    assert rig.count(s.T_FRAMES) == 30


def test_undecodable_payload_becomes_a_dead_letter_then_ack(rig: Rig) -> None:
    c = cam()
    rig.send(topics.verdict_topic(c), b"{not json")
    rig.send(topics.verdict_topic(c), b'{"stream": "x"}')
    wait_for(lambda: rig.acked() == 2, 5, what="acks")
    with rig.engine.connect() as conn:
        reasons: list[str] = sorted(conn.execute(select(s.T_DEAD_LETTERS.c.reason)).scalars())
    assert reasons == ["bad_json", "bad_schema"]


def test_stale_epoch_results_are_rejected_and_counted(rig: Rig) -> None:
    moved, other, unknown = cam(name="camA"), cam(name="camB"), cam(name="camC")
    rig.send(topics.assignment_topic("W1"), assignment("W1", 3, [moved, other]))
    rig.send(topics.assignment_topic("W2"), assignment("W2", 5, [moved]))
    rig.send(topics.assignment_topic("W1"), assignment("W1", 5, [other]))
    rig.send(topics.verdict_topic(moved), verdict(moved, 1, epoch=3, worker="W1"))  # zombie
    rig.send(topics.verdict_topic(moved), verdict(moved, 2, epoch=5, worker="W2"))
    rig.send(topics.verdict_topic(other), verdict(other, 1, epoch=3, worker="W1"))  # not moved
    rig.send(topics.verdict_topic(unknown), verdict(unknown, 1, epoch=0))
    st = sensor()
    rig.send(topics.assignment_topic("W3"), assignment("W3", 7, [st]))
    rig.send(topics.readings_topic(st), readings(st, 0, 5, epoch=6, worker="W1"))  # stale
    wait_for(lambda: rig.acked() == 9, 5, what="acks")
    assert rig.writer.stats()["stale_epoch"] == 2
    with rig.engine.connect() as conn:
        frames = set(conn.execute(select(s.T_FRAMES.c.stream, s.T_FRAMES.c.seq)))
        dls: list[str] = list(conn.execute(select(s.T_DEAD_LETTERS.c.reason)).scalars())
    assert frames == {(moved.key, 2), (other.key, 1), (unknown.key, 1)}
    assert dls == ["stale_epoch", "stale_epoch"]
    assert rig.count(s.T_READINGS) == 0


def test_fence_survives_a_restart(tmp_path: Path) -> None:
    a = cam(name="camA")
    rig = Rig(tmp_path)
    rig.send(topics.assignment_topic("W2"), assignment("W2", 4, [a]))
    wait_for(lambda: rig.count(s.T_ASSIGNMENT_STREAMS) == 1, 5, what="assignment stored")
    rig.close()
    hub_rig = Rig.__new__(Rig)  # a new writer process on the same database, fresh bus
    hub_rig.__dict__.update(url=rig.url, db_file=rig.db_file)
    hub_rig.engine = make_engine(rig.url)
    hub_rig.hub = LoopbackHub()
    hub_rig.sub = LoopbackTransport(hub_rig.hub, "store-test")
    hub_rig.pub = LoopbackTransport(hub_rig.hub, "pub")
    hub_rig.writer = StoreWriter(hub_rig.engine, hub_rig.sub)
    for t in (hub_rig.sub, hub_rig.pub):
        t.start()
    hub_rig.writer.start()
    try:
        hub_rig.send(topics.verdict_topic(a), verdict(a, 1, epoch=2, worker="W1"))
        wait_for(lambda: hub_rig.acked() == 1, 5, what="ack")
        assert hub_rig.writer.stats()["stale_epoch"] == 1
    finally:
        hub_rig.close()


def _thumb() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


THUMB = _thumb()


def test_status_alerts_and_evidence(rig: Rig) -> None:
    c = cam()
    v = verdict(c, 9, kind="defect")
    rig.send(topics.worker_status_topic("W1"), status("W1", "online", 2))
    rig.send(topics.worker_status_topic("W1"), status("W1", "offline", 1))  # stale death
    rig.send(
        topics.alert_topic("s1", "L1", "st1"),
        alert("ev-1", c, thumbnail=THUMB, frame_key=v.key),
    )
    rig.send(topics.verdict_topic(c), v)  # the verdict lands after its evidence
    rig.send(topics.alert_topic("s1", "L1", "st1"), alert("ev-1", c, thumbnail=b"\xff\xd8x"))
    wait_for(lambda: rig.acked() == 5, 5, what="acks")
    wait_for(lambda: rig.count(s.T_FRAMES) == 1, 5, what="frame")
    with rig.engine.connect() as conn:
        w = conn.execute(select(s.T_WORKERS)).one()
        frame = conn.execute(select(s.T_FRAMES)).one()
        ev = conn.execute(select(s.T_EVIDENCE)).one()
    assert (w.state, w.counter) == ("online", 2)
    assert rig.count(s.T_ALERT_SOURCE) == 1
    assert ev.data == THUMB and frame.evidence_key == ev.evidence_key
    assert ev.content_type == "image/jpeg"


def test_a_message_sql_cannot_hold_is_dead_lettered_and_the_rest_stored(rig: Rig) -> None:
    c = cam()
    good = [verdict(c, i) for i in range(5)]
    poison = verdict(c, 99).model_copy(update={"part": "P-POISON"})
    with rig.engine.begin() as conn:  # the database refuses this one row (a check constraint)
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON frames "
            "WHEN NEW.part = 'P-POISON' BEGIN "
            "SELECT RAISE(ABORT, 'refused by a plant check'); END"
        )
    for m in [*good[:3], poison, *good[3:]]:
        rig.send(topics.verdict_topic(c), m)
    wait_for(lambda: rig.acked() == 6, 10, what="every message acked")
    assert rig.count(s.T_FRAMES) == 5
    with rig.engine.connect() as conn:
        reasons: list[str] = list(conn.execute(select(s.T_DEAD_LETTERS.c.reason)).scalars())
    assert reasons == ["store_error"] and rig.writer.stats()["store_errors"] == 1
