"""Retention: age limits, never unacknowledged alerts, the evidence byte budget, dry runs."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from store_support import T0, alert, cam, migrated_sqlite, sensor, verdict
from store_support import readings as readings_msg

from services.store import repo
from services.store import schema as s
from services.store.engine import make_engine
from services.store.retention import Retention
from services.store.rows import plan
from services.store.settings import StoreSettings

pytestmark = pytest.mark.unit
NOW = T0 + timedelta(days=400)


def _count(engine: Engine, table: s.Table) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def _alert_row(status: str, age_days: float, evidence_key: str | None = None) -> dict:
    at = NOW - timedelta(days=age_days)
    return {
        "dedup_key": f"k-{status}-{age_days}",
        "kind": "defect",
        "severity": "major",
        "status": status,
        "count": 1,
        "first_seen": at,
        "last_seen": at,
        "site": "s1",
        "line": "L1",
        "station": "st1",
        "message": "m",
        "evidence_key": evidence_key,
        "resolved_at": at if status == "resolved" else None,
        "updated_at": at,
    }


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(migrated_sqlite(tmp_path))
    old, young = NOW - timedelta(days=100), NOW - timedelta(days=1)
    with eng.begin() as c:
        for i, at in enumerate([old] * 30 + [young] * 10):
            repo.insert_frames(c, plan(verdict(cam(), i, at=at)).rows["frames"])  # type: ignore[union-attr]
        repo.insert_ignore(
            c,
            s.T_READINGS,
            plan(readings_msg(sensor(), 0, 50, at=old)).rows["sensor_readings"],  # type: ignore[union-attr]
        )
        for status in ("active", "acknowledged", "resolved"):
            c.execute(insert(s.T_ALERTS).values(**_alert_row(status, 500)))
        c.execute(insert(s.T_ALERTS).values(**_alert_row("resolved", 10)))
        ids: Sequence[int] = c.execute(select(s.T_ALERTS.c.id)).scalars().all()
        for aid in ids:
            c.execute(
                insert(s.T_ALERT_EVENTS).values(alert_id=aid, action="create", actor="edge", at=old)
            )
    return eng


def _settings(**kw: Any) -> StoreSettings:
    return StoreSettings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_dry_run_reports_and_deletes_nothing(engine: Engine) -> None:
    rep = Retention(engine, _settings()).run(dry_run=True, now=NOW)
    assert rep.rows["frames"] == 30 and rep.rows["sensor_readings"] == 50
    assert rep.rows["alerts"] == 1 and rep.rows["alert_events"] == 1
    assert _count(engine, s.T_FRAMES) == 40 and _count(engine, s.T_ALERTS) == 4


def test_old_rows_go_in_batches_and_unacknowledged_alerts_stay(engine: Engine) -> None:
    rep = Retention(engine, _settings(retention_batch_rows=10)).run(now=NOW)
    assert rep.rows["frames"] == 30 and _count(engine, s.T_FRAMES) == 10
    assert _count(engine, s.T_READINGS) == 0
    assert rep.batches >= 3 + 5 and rep.longest_batch_s < 1.0
    with engine.connect() as c:
        left: list[str] = sorted(c.execute(select(s.T_ALERTS.c.status)).scalars())
    assert left == ["acknowledged", "active", "resolved"]  # the old resolved one went
    assert _count(engine, s.T_ALERT_EVENTS) == 3


def _png_of(size: int) -> bytes:
    """A valid 1x1 PNG of exactly ``size`` bytes (padded with a tEXt chunk): the store keeps
    only real images as evidence."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]))
    head += chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    end = chunk(b"IEND", b"")
    pad = size - len(head) - len(end) - 12
    return head + chunk(b"tEXt", b"k\x00" + b"x" * (pad - 2)) + end


def test_evidence_byte_budget_spares_open_alerts(engine: Engine) -> None:
    with engine.begin() as c:
        for i in range(10):  # 10 x 1000 bytes, oldest first; #0 shown by an active alert
            p = plan(
                alert(f"ev{i}", cam(), at=NOW - timedelta(hours=10 - i), thumbnail=_png_of(1000))
            )
            repo.insert_evidence(c, p.rows["evidence"])  # type: ignore[union-attr]
        c.execute(insert(s.T_ALERTS).values(**_alert_row("active", 1, "alert:ev0")))
    rep = Retention(engine, _settings(retention_evidence_budget_bytes=4500)).run(now=NOW)
    with engine.connect() as c:
        kept: list[str] = sorted(c.execute(select(s.T_EVIDENCE.c.evidence_key)).scalars())
        total: int = c.execute(select(func.sum(s.T_EVIDENCE.c.size_bytes))).scalar_one()
    assert total <= 4500 and rep.evidence_bytes_freed == 6000
    assert kept == ["alert:ev0", "alert:ev7", "alert:ev8", "alert:ev9"]
