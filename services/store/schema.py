"""The history schema: SQLAlchemy 2.0 typed models; idempotency keys are UNIQUE constraints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.schema import Table
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(64)  # contract ids: [A-Za-z0-9_-]{1,64}
KEY = String(600)  # idempotency keys (stream key + epoch + seq, receipts, ...)
STREAM = String(400)
PK = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both engines (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; LineWatch stores UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from SQLite expressions
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


TS = UTCDateTime()


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Frame(Base):
    """One inspected frame: the verdict of a worker on one camera input."""

    __tablename__ = "frames"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    frame_key: Mapped[str] = mapped_column(KEY, unique=True)
    site: Mapped[str] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str] = mapped_column(ID)
    camera: Mapped[str] = mapped_column(ID)
    stream: Mapped[str] = mapped_column(STREAM)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_at: Mapped[datetime | None] = mapped_column(TS)
    received_at: Mapped[datetime] = mapped_column(TS)
    decided_at: Mapped[datetime] = mapped_column(TS)
    verdict: Mapped[str] = mapped_column(String(16))
    defect_score: Mapped[float] = mapped_column(Float)
    novelty_score: Mapped[float] = mapped_column(Float)
    predicted_class: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(128))
    latency_ms: Mapped[float] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(ID)
    part: Mapped[str | None] = mapped_column(String(64))
    family: Mapped[str | None] = mapped_column(ID)
    evidence_key: Mapped[str | None] = mapped_column(KEY)
    stored_at: Mapped[datetime] = mapped_column(TS, default=_now)

    __table_args__ = (
        Index("ix_frames_line_time", "site", "line", "station", "decided_at"),
        Index("ix_frames_stream_time", "stream", "decided_at"),
        Index("ix_frames_worker_time", "worker", "decided_at"),
        Index("ix_frames_family_time", "family", "decided_at"),
        Index("ix_frames_decided_at", "decided_at"),
    )


class FrameFamilyRow(Base):
    """The clustering service's family for one frame (may arrive before the verdict row)."""

    __tablename__ = "frame_families"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    frame_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    family: Mapped[str] = mapped_column(ID, index=True)
    distance: Mapped[float] = mapped_column(Float, default=0.0)
    is_new: Mapped[bool] = mapped_column(Boolean, default=False)
    ts: Mapped[datetime] = mapped_column(TS)


class Evidence(Base):
    """A small evidence image (JPEG thumbnail) kept under a byte budget."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    evidence_key: Mapped[str] = mapped_column(KEY, unique=True)
    frame_key: Mapped[str | None] = mapped_column(KEY, index=True)
    alert_event_id: Mapped[str | None] = mapped_column(KEY)
    content_type: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    size_bytes: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(TS, index=True)


class SensorReading(Base):
    __tablename__ = "sensor_readings"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    reading_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    ts: Mapped[datetime] = mapped_column(TS)
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    worker: Mapped[str] = mapped_column(ID)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)

    # No index on ts alone: the hottest table pays for each index on every insert;
    # retention walks the primary key in id order (oldest first) instead.
    __table_args__ = (Index("ix_sensor_readings_stream_ts", "stream", "ts"),)


class SensorAnomalyRow(Base):
    __tablename__ = "sensor_anomalies"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    anomaly_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    site: Mapped[str] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str] = mapped_column(ID)
    sensor: Mapped[str] = mapped_column(ID)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(TS)
    value: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(ID)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        Index("ix_sensor_anomalies_stream_ts", "stream", "ts"),
        Index("ix_sensor_anomalies_ts", "ts"),
    )


class AlertRow(Base):
    """An operator alert: alert events deduplicated into one row (lifecycle by the feed)."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(KEY, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(TS)
    last_seen: Mapped[datetime] = mapped_column(TS)
    site: Mapped[str] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str] = mapped_column(ID)
    stream: Mapped[str | None] = mapped_column(STREAM)
    family: Mapped[str | None] = mapped_column(ID)
    message: Mapped[str] = mapped_column(Text, default="")
    evidence_key: Mapped[str | None] = mapped_column(KEY)
    assignee: Mapped[str | None] = mapped_column(String(128))
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(TS)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    escalated_at: Mapped[datetime | None] = mapped_column(TS)
    last_event_id: Mapped[str | None] = mapped_column(KEY)
    updated_at: Mapped[datetime] = mapped_column(TS, default=_now)

    __table_args__ = (
        Index("ix_alerts_status_last_seen", "status", "last_seen"),
        Index("ix_alerts_line_time", "site", "line", "station", "first_seen"),
    )


class AlertEventRow(Base):
    """One lifecycle step of an alert: create/ack/assign/comment/resolve/escalate."""

    __tablename__ = "alert_events"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    event_key: Mapped[str | None] = mapped_column(KEY, unique=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(TS)
    assignee: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_alert_events_alert_at", "alert_id", "at"),)


class AlertSourceEvent(Base):
    """Each incoming ``Alert`` message, stored exactly once by its event_id."""

    __tablename__ = "alert_source_events"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(KEY, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    site: Mapped[str] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str] = mapped_column(ID)
    stream: Mapped[str | None] = mapped_column(STREAM)
    frame_key: Mapped[str | None] = mapped_column(KEY)
    family: Mapped[str | None] = mapped_column(ID)
    message: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    evidence_key: Mapped[str | None] = mapped_column(KEY)
    ts: Mapped[datetime] = mapped_column(TS, index=True)
    # set by services.store.alerts.ingest (migration 0002): raised|deduped|cooldown|suppressed
    outcome: Mapped[str | None] = mapped_column(String(16))
    alert_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_alert_source_events_line_ts", "site", "line", "station", "ts"),)


class DefectFamily(Base):
    """Latest state of one defect family (from ``FamilyUpdate``)."""

    __tablename__ = "defect_families"
    family: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into: Mapped[str | None] = mapped_column(ID)
    size: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(TS)
    last_seen: Mapped[datetime] = mapped_column(TS)
    rate_per_hour: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(TS)


class FamilyEvent(Base):
    __tablename__ = "family_events"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(KEY, unique=True)
    family: Mapped[str] = mapped_column(ID)
    event: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    merged_into: Mapped[str | None] = mapped_column(ID)
    actor: Mapped[str | None] = mapped_column(String(128))
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_family_events_family_ts", "family", "ts"),)


class WorkerRow(Base):
    """Latest status of each process (edge worker, store, dispatcher, ...)."""

    __tablename__ = "workers"
    worker: Mapped[str] = mapped_column(ID, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    counter: Mapped[int] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    capacity_fps: Mapped[float] = mapped_column(Float, default=0.0)
    load: Mapped[float] = mapped_column(Float, default=0.0)
    queue_depth: Mapped[int] = mapped_column(Integer, default=0)
    p95_ms: Mapped[float] = mapped_column(Float, default=0.0)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    cost_per_hour: Mapped[float] = mapped_column(Float, default=0.0)
    streams: Mapped[list[str]] = mapped_column(JSON, default=list)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen: Mapped[datetime] = mapped_column(TS)


class WorkerStatusEvent(Base):
    """Births and deaths (not heartbeats), one row per (worker, counter, state)."""

    __tablename__ = "worker_status_events"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(KEY, unique=True)
    worker: Mapped[str] = mapped_column(ID)
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    counter: Mapped[int] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_worker_status_events_worker_ts", "worker", "ts"),)


class AssignmentRow(Base):
    """One per-worker assignment as decided by the dispatcher (epochs only grow)."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    assignment_key: Mapped[str] = mapped_column(KEY, unique=True)
    worker: Mapped[str] = mapped_column(ID)
    epoch: Mapped[int] = mapped_column(BigInteger)
    streams: Mapped[list[str]] = mapped_column(JSON, default=list)
    rates: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(String(128), default="")
    cost: Mapped[float | None] = mapped_column(Float)
    dispatcher: Mapped[str] = mapped_column(String(128), default="")
    decided_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_assignments_worker_epoch", "worker", "epoch"),)


class AssignmentStream(Base):
    """One stream of one assignment: answers "which worker handled this camera when"."""

    __tablename__ = "assignment_streams"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    stream_key: Mapped[str] = mapped_column(KEY, unique=True)  # worker:epoch:stream
    stream: Mapped[str] = mapped_column(STREAM)
    worker: Mapped[str] = mapped_column(ID)
    epoch: Mapped[int] = mapped_column(BigInteger)
    rate: Mapped[float] = mapped_column(Float, default=1.0)
    decided_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_assignment_streams_stream_epoch", "stream", "epoch"),)


class DispatchDecisionRow(Base):
    __tablename__ = "dispatch_decisions"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(KEY, unique=True)
    dispatcher: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, str]] = mapped_column(JSON)
    after: Mapped[dict[str, str]] = mapped_column(JSON)
    cost_before: Mapped[float] = mapped_column(Float)
    cost_after: Mapped[float] = mapped_column(Float)
    solve_ms: Mapped[float] = mapped_column(Float)
    optimal: Mapped[bool] = mapped_column(Boolean)
    unplaced: Mapped[list[str]] = mapped_column(JSON, default=list)
    epochs: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    ts: Mapped[datetime] = mapped_column(TS, index=True)


class GapRow(Base):
    __tablename__ = "gaps"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    gap_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    site: Mapped[str] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(String(16))
    from_seq: Mapped[int | None] = mapped_column(BigInteger)
    to_seq: Mapped[int | None] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(BigInteger, default=1)
    worker: Mapped[str] = mapped_column(ID)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        Index("ix_gaps_stream_ts", "stream", "ts"),
        Index("ix_gaps_ts", "ts"),
    )


class DeadLetterRow(Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    dl_key: Mapped[str] = mapped_column(KEY, unique=True)
    component: Mapped[str] = mapped_column(ID)
    topic: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    payload_size: Mapped[int] = mapped_column(BigInteger, default=0)
    payload_head: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        Index("ix_dead_letters_reason_ts", "reason", "ts"),
        Index("ix_dead_letters_ts", "ts"),
    )


class ThresholdChangeRow(Base):
    __tablename__ = "threshold_changes"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    change_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    defect_threshold: Mapped[float] = mapped_column(Float)
    novelty_threshold: Mapped[float] = mapped_column(Float)
    previous_defect_threshold: Mapped[float | None] = mapped_column(Float)
    previous_novelty_threshold: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_threshold_changes_stream_ts", "stream", "ts"),)


class Lease(Base):
    """Named leases (dispatcher leadership), visible to operators."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(TS)
    acquired_at: Mapped[datetime] = mapped_column(TS)


class Suppression(Base):
    """A maintenance window: alert events of a line/station in it are kept but raise no alert."""

    __tablename__ = "suppressions"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    site: Mapped[str | None] = mapped_column(ID)
    line: Mapped[str] = mapped_column(ID)
    station: Mapped[str | None] = mapped_column(ID)  # None: the whole line
    kind: Mapped[str | None] = mapped_column(String(32))  # None: every alert kind
    starts_at: Mapped[datetime] = mapped_column(TS)
    ends_at: Mapped[datetime] = mapped_column(TS)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS)
    cancelled_by: Mapped[str | None] = mapped_column(String(128))
    cancelled_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (Index("ix_suppressions_line_ends", "line", "ends_at"),)


class ApiToken(Base):
    """A feed API token: only its sha256 is stored; role viewer (read) or operator (act)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


metadata = Base.metadata
T_FRAMES: Table = Frame.__table__  # type: ignore[assignment]
T_FRAME_FAMILIES: Table = FrameFamilyRow.__table__  # type: ignore[assignment]
T_EVIDENCE: Table = Evidence.__table__  # type: ignore[assignment]
T_READINGS: Table = SensorReading.__table__  # type: ignore[assignment]
T_ANOMALIES: Table = SensorAnomalyRow.__table__  # type: ignore[assignment]
T_ALERTS: Table = AlertRow.__table__  # type: ignore[assignment]
T_ALERT_EVENTS: Table = AlertEventRow.__table__  # type: ignore[assignment]
T_ALERT_SOURCE: Table = AlertSourceEvent.__table__  # type: ignore[assignment]
T_FAMILIES: Table = DefectFamily.__table__  # type: ignore[assignment]
T_FAMILY_EVENTS: Table = FamilyEvent.__table__  # type: ignore[assignment]
T_WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]
T_WORKER_EVENTS: Table = WorkerStatusEvent.__table__  # type: ignore[assignment]
T_ASSIGNMENTS: Table = AssignmentRow.__table__  # type: ignore[assignment]
T_ASSIGNMENT_STREAMS: Table = AssignmentStream.__table__  # type: ignore[assignment]
T_DECISIONS: Table = DispatchDecisionRow.__table__  # type: ignore[assignment]
T_GAPS: Table = GapRow.__table__  # type: ignore[assignment]
T_DEAD_LETTERS: Table = DeadLetterRow.__table__  # type: ignore[assignment]
T_THRESHOLDS: Table = ThresholdChangeRow.__table__  # type: ignore[assignment]
T_LEASES: Table = Lease.__table__  # type: ignore[assignment]
T_SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[assignment]
T_TOKENS: Table = ApiToken.__table__  # type: ignore[assignment]
