"""Typed, frozen messages of the MQTT contract (docs/contract.md); handlers only ever see these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.topics import StreamRef

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
StreamKey = Annotated[str, Field(min_length=1, max_length=400)]
Score = Annotated[float, Field(allow_inf_nan=False)]
VerdictKind = Literal["ok", "defect", "anomaly"]
Severity = Literal["critical", "major", "minor", "warning"]
AlertKind = Literal[
    "defect", "anomaly", "sensor", "new_family", "family_growth", "overload", "reduced_rate", "gap"
]
GapReason = Literal["missing", "shed", "failover", "unassigned"]
Role = Literal["edge", "store", "cluster", "dispatch", "feed", "sim", "other"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def frame_key(stream: StreamRef, seq: int | None, pub_epoch: int, receipt: str) -> str:
    """Idempotency key of one input: ``(source, epoch, seq)``, or a broker-receipt key."""
    if seq is not None:
        return f"{stream.key}#{pub_epoch}:{seq}"
    return f"{stream.key}#r:{receipt}"


# ---- inputs: produced by broker.codecs from raw payloads -----------------------------------


@dataclass(frozen=True)
class FrameIn:
    """One camera frame, validated (header checked, body not yet decoded)."""

    stream: StreamRef
    key: str
    image: bytes
    encoding: Literal["jpeg", "png"]
    width: int
    height: int
    seq: int | None = None
    pub_epoch: int = 0
    captured_at: datetime | None = None
    part: str | None = None


@dataclass(frozen=True)
class Reading:
    """One sensor value as published."""

    value: float
    seq: int | None = None
    ts: datetime | None = None
    unit: str | None = None


@dataclass(frozen=True)
class SensorIn:
    """One sensor publish: a single reading or a batch; ``key`` prefixes each reading's key."""

    stream: StreamRef
    key: str
    readings: tuple[Reading, ...]
    pub_epoch: int = 0  # publisher epoch (JSON "epoch" / user property), part of reading keys


# ---- outputs: JSON on the wire -------------------------------------------------------------


class Msg(BaseModel):
    """Base of every JSON message: frozen, no NaN/inf, unknown fields ignored (forward compat)."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )


class Verdict(Msg):
    stream: StreamKey
    key: str
    seq: int | None = None
    epoch: int = 0
    worker: Id
    captured_at: datetime | None = None
    received_at: datetime
    decided_at: datetime
    verdict: VerdictKind
    defect_score: Score
    novelty_score: Score
    predicted_class: str
    model_version: str
    latency_ms: Score
    part: str | None = None


class Features(Msg):
    """Embedding (float16 bytes, little endian) of an anomalous frame, for clustering."""

    stream: StreamKey
    key: str
    epoch: int = 0
    worker: Id
    ts: datetime
    dim: int
    embedding: bytes
    verdict: VerdictKind
    predicted_class: str


class FrameFamily(Msg):
    """The defect family the clustering service gave one anomalous frame."""

    stream: StreamKey
    key: str
    family: Id
    distance: Score
    is_new: bool = False
    ts: datetime


class FamilyUpdate(Msg):
    family: Id
    name: str
    event: Literal["created", "grew", "renamed", "merged", "split", "refit"]
    size: int
    status: Literal["active", "merged"] = "active"
    merged_into: str | None = None
    first_seen: datetime
    last_seen: datetime
    rate_per_hour: Score = 0.0
    actor: str | None = None
    ts: datetime


class Alert(Msg):
    """An event that may need an operator; the feed dedups events into alerts."""

    event_id: str
    kind: AlertKind
    severity: Severity
    site: Id
    line: Id
    station: Id
    stream: StreamKey | None = None
    frame_key: str | None = None
    family: str | None = None
    message: str
    thumbnail: bytes | None = None  # small JPEG evidence, kept by the store under a byte budget
    worker: str | None = None
    epoch: int = 0
    ts: datetime


class SensorAnomaly(Msg):
    stream: StreamKey
    key: str
    seq: int | None = None
    ts: datetime
    value: Score
    kind: Literal["zscore", "limit", "stuck", "rate"]
    score: Score
    detail: str
    worker: Id
    epoch: int = 0


class StoredReading(Msg):
    key: str
    seq: int | None = None
    ts: datetime
    value: Score
    unit: str | None = None


class ReadingsBatch(Msg):
    stream: StreamKey
    worker: Id
    epoch: int = 0
    readings: tuple[StoredReading, ...]


class Gap(Msg):
    """Missing or shed input: ``from_seq..to_seq`` inclusive (None when unsequenced)."""

    key: str
    stream: StreamKey
    reason: GapReason
    from_seq: int | None = None
    to_seq: int | None = None
    count: int = 1
    worker: Id
    epoch: int = 0
    ts: datetime


class WorkerStatus(Msg):
    """Birth (retained), heartbeat (not retained) or death (retained, also the Last Will)."""

    worker: Id
    role: Role
    state: Literal["online", "heartbeat", "offline"]
    counter: int  # incarnation: grows at every birth, so a stale death can be ignored
    ts: datetime
    host: str = ""
    pid: int = 0
    capacity_fps: Score = 0.0
    load: Score = 0.0
    queue_depth: int = 0
    p95_ms: Score = 0.0
    model_version: str = ""
    cost_per_hour: Score = 0.0
    labels: dict[str, str] = Field(default_factory=dict)
    streams: tuple[str, ...] = ()
    epoch: int = 0


class Assignment(Msg):
    """Retained per worker; the epoch only grows; ``rates`` < 1 means reduced-rate inspection.

    ``resume`` (optional): for streams this assignment gives the worker, the last seq already
    accounted for (stored or recorded as a gap) when the dispatcher decided; the worker records
    the seqs after it that it never receives as a ``failover`` gap (docs/contract.md, Gaps).
    """

    worker: Id
    epoch: int
    streams: tuple[str, ...]
    rates: dict[str, float] = Field(default_factory=dict)
    resume: dict[str, int] = Field(default_factory=dict)
    dispatcher: str
    ts: datetime


class ThresholdControl(Msg):
    stream: StreamKey
    defect_threshold: Score | None = None
    novelty_threshold: Score | None = None
    actor: str
    reason: str = ""
    request_id: str


class FamilyControl(Msg):
    """An operator's family curation request (feed -> clustering service), by ``request_id``."""

    request_id: str
    op: Literal["rename", "merge", "split"]
    family: Id
    name: str | None = None  # rename: the new name
    into: Id | None = None  # merge: the family ``family`` is folded into
    parts: int = Field(default=2, ge=2, le=10)  # split: how many parts
    actor: str
    ts: datetime


class ThresholdChange(Msg):
    key: str
    stream: StreamKey
    defect_threshold: Score
    novelty_threshold: Score
    previous_defect_threshold: Score | None = None
    previous_novelty_threshold: Score | None = None
    actor: str
    reason: str = ""
    worker: Id
    ts: datetime


class DeadLetter(Msg):
    key: str
    component: Id
    topic: str
    reason: str
    detail: str
    payload_size: int
    payload_head: bytes = b""  # first bytes of the rejected payload, for forensics
    ts: datetime


class DispatchDecision(Msg):
    decision_id: str
    dispatcher: str
    trigger: str
    before: dict[str, str]
    after: dict[str, str]
    cost_before: Score
    cost_after: Score
    solve_ms: Score
    optimal: bool
    unplaced: tuple[str, ...] = ()
    epochs: dict[str, int] = Field(default_factory=dict)
    ts: datetime
