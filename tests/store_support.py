"""Helpers for the store tests: migrated databases and realistic contract messages."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from broker.messages import (
    Alert,
    AlertKind,
    Assignment,
    DeadLetter,
    DispatchDecision,
    FamilyUpdate,
    FrameFamily,
    Gap,
    GapReason,
    ReadingsBatch,
    Role,
    SensorAnomaly,
    Severity,
    StoredReading,
    ThresholdChange,
    Verdict,
    WorkerStatus,
)
from broker.topics import StreamRef

# Field types that broker.messages spells inline (mypy checks they stay assignable).
WorkerState = Literal["online", "heartbeat", "offline"]
FamilyEvent = Literal["created", "grew", "renamed", "merged", "split", "refit"]

_TEMPLATE: Path | None = None
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, start of the early shift


def migrated_sqlite(dest_dir: Path) -> str:
    """URL of a fresh SQLite database at head (copied from a once-migrated template)."""
    global _TEMPLATE
    from services.store.engine import upgrade

    if _TEMPLATE is None:
        tdir = Path(tempfile.mkdtemp(prefix="lw-store-template-"))
        db = tdir / "template.db"
        upgrade(f"sqlite:///{db}")
        _TEMPLATE = db
    target = dest_dir / "history.db"
    shutil.copy(_TEMPLATE, target)
    return f"sqlite:///{target}"


def cam(site: str = "s1", line: str = "L1", station: str = "st1", name: str = "cam1") -> StreamRef:
    return StreamRef.camera(site, line, station, name)


def sensor(
    site: str = "s1", line: str = "L1", station: str = "st1", name: str = "temp1"
) -> StreamRef:
    return StreamRef.sensor(site, line, station, name)


def verdict(
    stream: StreamRef,
    seq: int,
    *,
    epoch: int = 0,
    worker: str = "W1",
    kind: str = "ok",
    at: datetime = T0,
    family_class: str = "good",
) -> Verdict:
    return Verdict(
        stream=stream.key,
        key=f"{stream.key}#0:{seq}",
        seq=seq,
        epoch=epoch,
        worker=worker,
        captured_at=at,
        received_at=at + timedelta(milliseconds=3),
        decided_at=at + timedelta(milliseconds=25),
        verdict=kind,  # type: ignore[arg-type]
        defect_score=0.9 if kind == "defect" else 0.05,
        novelty_score=0.8 if kind == "anomaly" else 0.1,
        predicted_class=family_class,
        model_version="resnet50-int8-v1",
        latency_ms=21.5,
        part=f"P{seq:06d}",
    )


def readings(
    stream: StreamRef, start: int, n: int, *, epoch: int = 0, worker: str = "W1", at: datetime = T0
) -> ReadingsBatch:
    rs = tuple(
        StoredReading(
            key=f"{stream.key}#0:{i}",
            seq=i,
            ts=at + timedelta(milliseconds=100 * i),
            value=20.0 + (i % 7) * 0.1,
            unit="C",
        )
        for i in range(start, start + n)
    )
    return ReadingsBatch(stream=stream.key, worker=worker, epoch=epoch, readings=rs)


def assignment(worker: str, epoch: int, streams: list[StreamRef], at: datetime = T0) -> Assignment:
    return Assignment(
        worker=worker, epoch=epoch, streams=tuple(s.key for s in streams), dispatcher="D1", ts=at
    )


def alert(
    event_id: str,
    stream: StreamRef,
    *,
    at: datetime = T0,
    kind: AlertKind = "defect",
    severity: Severity = "major",
    family: str | None = None,
    thumbnail: bytes | None = None,
    frame_key: str | None = None,
    epoch: int = 0,
) -> Alert:
    return Alert(
        event_id=event_id,
        kind=kind,
        severity=severity,
        site=stream.site,
        line=stream.line,
        station=stream.station,
        stream=stream.key,
        frame_key=frame_key,
        family=family,
        message=f"{kind} on {stream.name}",
        thumbnail=thumbnail,
        worker="W1",
        epoch=epoch,
        ts=at,
    )


def status(
    worker: str, state: WorkerState, counter: int, at: datetime = T0, role: Role = "edge"
) -> WorkerStatus:
    return WorkerStatus(
        worker=worker,
        role=role,
        state=state,
        counter=counter,
        ts=at,
        host="edge-host",
        pid=1234,
        capacity_fps=40.0,
        load=0.5,
        queue_depth=3,
        p95_ms=35.0,
        model_version="resnet50-int8-v1",
        cost_per_hour=0.4,
    )


def gap(
    stream: StreamRef,
    from_seq: int,
    to_seq: int,
    *,
    at: datetime = T0,
    reason: GapReason = "missing",
    epoch: int = 0,
) -> Gap:
    return Gap(
        key=f"{stream.key}#gap:{from_seq}-{to_seq}",
        stream=stream.key,
        reason=reason,
        from_seq=from_seq,
        to_seq=to_seq,
        count=to_seq - from_seq + 1,
        worker="W1",
        epoch=epoch,
        ts=at,
    )


def anomaly(stream: StreamRef, seq: int, *, at: datetime = T0) -> SensorAnomaly:
    return SensorAnomaly(
        stream=stream.key,
        key=f"{stream.key}#0:{seq}",
        seq=seq,
        ts=at,
        value=95.0,
        kind="limit",
        score=4.2,
        detail="above 90 C",
        worker="W1",
    )


def family(
    fid: str, *, size: int, at: datetime = T0, name: str | None = None, event: FamilyEvent = "grew"
) -> FamilyUpdate:
    return FamilyUpdate(
        family=fid,
        name=name or fid,
        event=event,
        size=size,
        first_seen=T0,
        last_seen=at,
        rate_per_hour=size / 8.0,
        ts=at,
    )


def frame_family(v: Verdict, fid: str, *, at: datetime = T0) -> FrameFamily:
    return FrameFamily(stream=v.stream, key=v.key, family=fid, distance=0.12, ts=at)


def threshold(stream: StreamRef, *, at: datetime = T0) -> ThresholdChange:
    return ThresholdChange(
        key=f"thr:{stream.key}:{at.isoformat()}",
        stream=stream.key,
        defect_threshold=0.6,
        novelty_threshold=0.7,
        previous_defect_threshold=0.5,
        previous_novelty_threshold=0.7,
        actor="alice",
        reason="too many false alarms",
        worker="W1",
        ts=at,
    )


def dead(key: str, reason: str = "bad_json", *, at: datetime = T0) -> DeadLetter:
    return DeadLetter(
        key=key,
        component="edge-W1",
        topic="lw/v1/s1/L1/st1/sensor/temp1",
        reason=reason,
        detail="unexpected token",
        payload_size=5,
        payload_head=b"{oops",
        ts=at,
    )


def decision(decision_id: str, *, at: datetime = T0) -> DispatchDecision:
    return DispatchDecision(
        decision_id=decision_id,
        dispatcher="D1",
        trigger="worker_death",
        before={"s1/L1/st1/camera/cam1": "W1"},
        after={"s1/L1/st1/camera/cam1": "W2"},
        cost_before=1.0,
        cost_after=0.8,
        solve_ms=3.5,
        optimal=True,
        epochs={"W2": 2},
        ts=at,
    )
