"""Every query in docs/sql.md runs on SQLite and Postgres against a seeded database."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Connection, Engine, insert, select, text
from store_support import (
    alert,
    anomaly,
    assignment,
    cam,
    dead,
    decision,
    family,
    frame_family,
    gap,
    readings,
    sensor,
    status,
    threshold,
    verdict,
)

from broker.messages import Msg, utcnow
from broker.teach_messages import FeedbackResult, HistoryFrame, TeachState
from edge.evidence import thumbnail
from services.store import schema as s
from services.store import teach_queries as tq
from services.store.batchwrite import Prepared, write_prepared
from services.store.engine import make_engine, upgrade
from services.store.leadership import Leadership
from services.store.rows import plan
from services.store.rows_teach import plan_teach

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
# The store keeps evidence only when it is a real image (a small JPEG, as workers send).
THUMB = thumbnail(Image.new("RGB", (32, 32), (200, 40, 40)))


def doc_queries() -> list[tuple[str, str | None]]:
    """(sql, dialect or None) for every ```sql block of docs/sql.md."""
    out = []
    for body in BLOCK.findall(DOC.read_text()):
        first = body.splitlines()[0].strip()
        m = re.fullmatch(r"-- dialect: (postgresql|sqlite)", first)
        out.append((body.strip().rstrip(";"), m.group(1) if m else None))
    return out


def seed(engine: Engine, url: str) -> None:
    """Ten days of a two-line plant, written through the writer's own path."""
    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=10)
    msgs: list[object] = []
    cams = [
        cam(line=ln, station=st, name=c)
        for ln in ("L1", "L2")
        for st in ("st1", "st2")
        for c in ("cam1",)
    ]
    seq = 0
    for hour in range(0, 240, 3):
        at = start + timedelta(hours=hour)
        for i, c in enumerate(cams):
            seq += 1
            kind = "defect" if seq % 7 == 0 else "anomaly" if seq % 5 == 0 else "ok"
            v = verdict(c, seq, at=at, kind=kind, worker="W1" if i < 2 else "W2", epoch=1)
            msgs.append(v)
            if kind == "anomaly":
                msgs.append(frame_family(v, "F1" if seq % 2 else "F2", at=at))
            if kind == "defect" and hour > 200:
                msgs.append(alert(f"ev{seq}", c, at=at, frame_key=v.key, thumbnail=THUMB, epoch=1))
    st = sensor()
    msgs += [
        assignment("W1", 1, [*cams[:2], st], at=start),
        assignment("W2", 1, cams[2:], at=start),
        readings(st, 0, 100, at=now - timedelta(hours=2), epoch=1),
        anomaly(st, 50, at=now - timedelta(hours=1)),
        gap(cams[0], 10, 12, at=now - timedelta(days=1)),
        gap(cams[1], 40, 40, at=now - timedelta(hours=5), reason="shed"),
        dead("dl-1", at=now - timedelta(hours=3)),
        dead("dl-2", "bad_image", at=now),
        decision("d1", at=now - timedelta(days=2)),
        status("W1", "online", 1, at=start),
        status("W1", "offline", 1, at=now - timedelta(days=1)),
        status("W1", "online", 2, at=now - timedelta(hours=23)),
        status("W2", "heartbeat", 1, at=now),
        threshold(cams[0], at=now - timedelta(days=3)),
        family("F1", size=20, at=now, name="scratch-left"),
        family("F2", size=12, at=now),
        *teaching(cams[0].key, now),
    ]
    prep = Prepared()
    for m in msgs:
        p = plan(m) or plan_teach(m)  # type: ignore[arg-type]
        assert p is not None
        for table, rows in p.rows.items():
            prep.rows.setdefault(table, []).extend(rows)
        if p.alert is not None:  # the writer's alert lifecycle (dedup into alerts)
            prep.alerts.append(p.alert)
    with engine.begin() as conn:
        write_prepared(conn, prep)
        _seed_alerts(conn, now)
        tq.add_feedback(
            conn,
            {
                "request_id": "fb-1",
                "stream": cams[0].key,
                "frame_key": f"{cams[0].key}#0:5",
                "label": "not_a_defect",
                "note": "lamp moved",
                "actor": "alice",
                "created_at": now,
            },
        )
        tq.add_feedback(
            conn,
            {
                "request_id": "fb-2",
                "stream": cams[0].key,
                "frame_key": f"{cams[0].key}#0:7",
                "label": "confirmed",
                "family": "scratch",
                "note": "missed",
                "actor": "alice",
                "created_at": now,
            },
        )
        conn.execute(
            insert(s.T_SUPPRESSIONS).values(
                line="L2",
                station="st1",
                starts_at=now,
                ends_at=now + timedelta(hours=2),
                reason="belt change",
                created_by="alice",
                created_at=now,
            )
        )
    lead = Leadership(url, "dispatcher", "D1", ttl_s=60)
    assert lead.try_acquire()
    lead.engine.dispose()


def teaching(stream: str, now: datetime) -> list[Msg]:
    """An operator's not_a_defect, the worker's answer and the taught state it made; a
    sampled good frame."""
    allowance = np.zeros((2, 2), "<f4").tobytes()
    return [
        FeedbackResult(
            key="fb:1:feedback",
            stream=stream,
            feedback_id=1,
            action="feedback",
            status="applied",
            version=1,
            worker="W1",
            ts=now,
        ),
        HistoryFrame(  # a sampled good frame an operator then confirmed as a scratch
            key=f"{stream}#0:7",
            stream=stream,
            image=b"\x89PNG\r\n\x1a\n" + bytes(64),
            worker="W1",
            ts=now,
        ),
        TeachState(
            key=f"{stream}#teach:1:fb-1",
            stream=stream,
            version=1,
            previous_version=0,
            action="teach",
            feedback_id=1,
            actor="alice",
            model_version="m1",
            map_shape=(2, 2),
            novelty_threshold=1.2,
            allowance=allowance,
            worker="W1",
            ts=now,
        ),
    ]


def _seed_alerts(conn: Connection, now: datetime) -> None:
    ev = conn.execute(select(s.T_EVIDENCE.c.evidence_key)).scalars().first()
    for i, (sev, st) in enumerate(
        [("critical", "acknowledged"), ("major", "active"), ("minor", "resolved")]
    ):
        first = now - timedelta(hours=5 - i)
        acked = first + timedelta(minutes=4 + 3 * i) if st != "active" else None
        aid: int = conn.execute(
            insert(s.T_ALERTS)
            .values(
                dedup_key=f"defect:s1/L1/st1:{i}",
                kind="defect",
                severity=sev,
                status=st,
                count=3,
                first_seen=first,
                last_seen=first + timedelta(minutes=30),
                site="s1",
                line="L1",
                station="st1",
                stream=cam().key,
                message="defects on cam1",
                evidence_key=ev,
                acknowledged_by="alice" if acked else None,
                acknowledged_at=acked,
                resolved_by="bob" if st == "resolved" else None,
                resolved_at=first + timedelta(hours=1) if st == "resolved" else None,
                updated_at=now,
            )
            .returning(s.T_ALERTS.c.id)
        ).scalar_one()
        conn.execute(
            insert(s.T_ALERT_EVENTS).values(
                alert_id=aid,
                action="create",
                actor="edge-W1",
                at=first,
            )
        )
        if acked:
            conn.execute(
                insert(s.T_ALERT_EVENTS).values(
                    alert_id=aid,
                    action="ack",
                    actor="alice",
                    at=acked,
                    note="on it",
                )
            )


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'docs.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    upgrade(url)
    engine = make_engine(url)
    seed(engine, url)
    request.addfinalizer(engine.dispose)
    return engine


def test_doc_has_many_questions() -> None:
    queries = doc_queries()
    assert len(re.findall(r"^### \d+\.", DOC.read_text(), re.M)) >= 10
    assert len(queries) >= 20
    assert {d for _, d in queries} == {None, "postgresql", "sqlite"}


def test_every_documented_query_runs_and_answers(seeded: Engine) -> None:
    dialect = seeded.dialect.name
    ran = 0
    for sql, only in doc_queries():
        if only not in (None, dialect):
            continue
        with seeded.connect() as conn:
            rows = conn.execute(text(sql)).all()
        assert rows, f"no rows on {dialect} for:\n{sql}"
        ran += 1
    assert ran >= 15
