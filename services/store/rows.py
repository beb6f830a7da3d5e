"""Pure mapping of decoded contract messages to table rows, and the assignment-epoch fence."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.images import ImageError
from broker.messages import (
    Alert,
    Assignment,
    DeadLetter,
    DispatchDecision,
    FamilyUpdate,
    FrameFamily,
    Gap,
    Msg,
    ReadingsBatch,
    SensorAnomaly,
    ThresholdChange,
    Verdict,
    WorkerStatus,
    utcnow,
)
from broker.topics import StreamRef, TopicError
from services.store.deadletters import dead_letter_row, store_dead_letter
from services.store.evidence import evidence_type
from services.store.repo import Row, assignment_rows, decision_row


@dataclass
class Planned:
    """What one message becomes: rows per table, plus what the epoch fence needs to know."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    stream: str | None = None  # canonical stream key of a result (fenced by epoch)
    epoch: int = 0
    key: str = ""  # idempotency key of the message (names its stale-epoch dead letter)
    assignment: tuple[str, int, tuple[str, ...]] | None = None
    alert: Alert | None = None

    def add(self, table: str, row: Row) -> None:
        self.rows.setdefault(table, []).append(row)

    @property
    def row_count(self) -> int:
        return sum(len(v) for v in self.rows.values())


def canonical(stream: str) -> str:
    """``site/line/station/kind/name``; an unparsable key is kept as given."""
    try:
        return StreamRef.parse_key(stream).key
    except TopicError:
        return stream


def _ref(stream: str) -> StreamRef:
    return StreamRef.parse_key(stream)


def _verdict(p: Planned, v: Verdict) -> None:
    ref = _ref(v.stream)
    p.stream, p.epoch, p.key = ref.key, v.epoch, v.key
    p.add(
        "frames",
        {
            "frame_key": v.key,
            "site": ref.site,
            "line": ref.line,
            "station": ref.station,
            "camera": ref.name,
            "stream": ref.key,
            "seq": v.seq,
            "epoch": v.epoch,
            "captured_at": v.captured_at,
            "received_at": v.received_at,
            "decided_at": v.decided_at,
            "verdict": v.verdict,
            "defect_score": v.defect_score,
            "novelty_score": v.novelty_score,
            "predicted_class": v.predicted_class[:64],
            "model_version": v.model_version[:128],
            "latency_ms": v.latency_ms,
            "worker": v.worker,
            "part": v.part,
            "stored_at": utcnow(),
        },
    )


def _frame_family(p: Planned, m: FrameFamily) -> None:
    p.key = m.key
    p.add(
        "frame_families",
        {
            "frame_key": m.key,
            "stream": canonical(m.stream),
            "family": m.family,
            "distance": m.distance,
            "is_new": m.is_new,
            "ts": m.ts,
        },
    )


def _readings(p: Planned, m: ReadingsBatch) -> None:
    stream = _ref(m.stream).key
    p.stream, p.epoch = stream, m.epoch
    p.key = m.readings[0].key if m.readings else f"{stream}#empty"
    for r in m.readings:
        p.add(
            "sensor_readings",
            {
                "reading_key": r.key,
                "stream": stream,
                "ts": r.ts,
                "value": r.value,
                "unit": r.unit,
                "seq": r.seq,
                "worker": m.worker,
                "epoch": m.epoch,
            },
        )


def _anomaly(p: Planned, m: SensorAnomaly) -> None:
    ref = _ref(m.stream)
    p.stream, p.epoch, p.key = ref.key, m.epoch, m.key
    p.add(
        "sensor_anomalies",
        {
            "anomaly_key": m.key,
            "stream": ref.key,
            "site": ref.site,
            "line": ref.line,
            "station": ref.station,
            "sensor": ref.name,
            "seq": m.seq,
            "ts": m.ts,
            "value": m.value,
            "kind": m.kind,
            "score": m.score,
            "detail": m.detail,
            "worker": m.worker,
            "epoch": m.epoch,
        },
    )


def _gap(p: Planned, m: Gap) -> None:
    ref = _ref(m.stream)
    p.stream, p.epoch, p.key = ref.key, m.epoch, m.key
    p.add(
        "gaps",
        {
            "gap_key": m.key,
            "stream": ref.key,
            "site": ref.site,
            "line": ref.line,
            "station": ref.station,
            "kind": ref.kind.value,
            "name": ref.name,
            "reason": m.reason,
            "from_seq": m.from_seq,
            "to_seq": m.to_seq,
            "count": m.count,
            "worker": m.worker,
            "epoch": m.epoch,
            "ts": m.ts,
        },
    )


def _alert(p: Planned, m: Alert, evidence_max_bytes: int) -> None:
    stream = canonical(m.stream) if m.stream else None
    p.stream, p.epoch, p.key, p.alert = stream, m.epoch, m.event_id, m
    evidence_key = None
    kind = evidence_type(bytes(m.thumbnail)) if m.thumbnail else None
    if isinstance(kind, ImageError):
        p.add(
            "dead_letters",
            store_dead_letter(
                m.event_id,
                f"alert:{m.site}/{m.line}/{m.station}",
                "bad_evidence",
                f"thumbnail is not an acceptable image ({kind.reason}: {kind.detail}); alert "
                "stored without evidence",
                m.thumbnail or b"",
            ),
        )
    elif m.thumbnail and len(m.thumbnail) <= evidence_max_bytes:
        evidence_key = f"alert:{m.event_id}"[:600]
        p.add(
            "evidence",
            {
                "evidence_key": evidence_key,
                "frame_key": m.frame_key,
                "alert_event_id": m.event_id,
                "content_type": kind,
                "size_bytes": len(m.thumbnail),
                "data": bytes(m.thumbnail),
                "created_at": m.ts,
            },
        )
    elif m.thumbnail:
        p.add(
            "dead_letters",
            store_dead_letter(
                m.event_id,
                f"alert:{m.site}/{m.line}/{m.station}",
                "evidence_too_large",
                f"thumbnail of {len(m.thumbnail)} bytes exceeds {evidence_max_bytes}; alert "
                "stored without evidence",
                m.thumbnail,
            ),
        )
    p.add(
        "alert_source_events",
        {
            "event_id": m.event_id,
            "kind": m.kind,
            "severity": m.severity,
            "site": m.site,
            "line": m.line,
            "station": m.station,
            "stream": stream,
            "frame_key": m.frame_key,
            "family": m.family,
            "message": m.message,
            "worker": m.worker,
            "epoch": m.epoch,
            "evidence_key": evidence_key,
            "ts": m.ts,
        },
    )


def _status(p: Planned, m: WorkerStatus) -> None:
    p.key = f"{m.worker}:{m.counter}:{m.state}"
    p.add(
        "workers",
        {
            "worker": m.worker,
            "role": m.role,
            "state": m.state,
            "counter": m.counter,
            "host": m.host[:255],
            "pid": m.pid,
            "capacity_fps": m.capacity_fps,
            "load": m.load,
            "queue_depth": m.queue_depth,
            "p95_ms": m.p95_ms,
            "model_version": m.model_version[:128],
            "cost_per_hour": m.cost_per_hour,
            "streams": list(m.streams),
            "epoch": m.epoch,
            "last_seen": m.ts,
        },
    )
    if m.state != "heartbeat":
        p.add(
            "worker_status_events",
            {
                "event_key": p.key,
                "worker": m.worker,
                "role": m.role,
                "state": m.state,
                "counter": m.counter,
                "host": m.host[:255],
                "pid": m.pid,
                "ts": m.ts,
            },
        )


def _assignment(p: Planned, m: Assignment) -> None:
    streams = tuple(canonical(st) for st in m.streams)
    rates = {canonical(k): v for k, v in m.rates.items()}
    head, per_stream = assignment_rows(
        m.worker, m.epoch, streams, "assignment", None, m.ts, rates=rates, dispatcher=m.dispatcher
    )
    p.key, p.assignment = head["assignment_key"], (m.worker, m.epoch, streams)
    p.add("assignments", head)
    for row in per_stream:
        p.add("assignment_streams", row)


def _family(p: Planned, m: FamilyUpdate) -> None:
    p.key = f"{m.family}:{m.event}:{m.ts.isoformat()}"
    p.add(
        "defect_families",
        {
            "family": m.family,
            "name": m.name[:128],
            "status": m.status,
            "merged_into": m.merged_into,
            "size": m.size,
            "first_seen": m.first_seen,
            "last_seen": m.last_seen,
            "rate_per_hour": m.rate_per_hour,
            "updated_at": m.ts,
        },
    )
    p.add(
        "family_events",
        {
            "event_key": p.key,
            "family": m.family,
            "event": m.event,
            "name": m.name[:128],
            "size": m.size,
            "merged_into": m.merged_into,
            "actor": m.actor,
            "ts": m.ts,
        },
    )


def _threshold(p: Planned, m: ThresholdChange) -> None:
    p.key = m.key
    p.add(
        "threshold_changes",
        {
            "change_key": m.key,
            "stream": canonical(m.stream),
            "defect_threshold": m.defect_threshold,
            "novelty_threshold": m.novelty_threshold,
            "previous_defect_threshold": m.previous_defect_threshold,
            "previous_novelty_threshold": m.previous_novelty_threshold,
            "actor": m.actor[:128],
            "reason": m.reason,
            "worker": m.worker,
            "ts": m.ts,
        },
    )


def plan(msg: Msg, *, evidence_max_bytes: int = 512 * 1024) -> Planned | None:
    """The rows of one message, or None for a message the store does not keep."""
    p = Planned()
    if isinstance(msg, Verdict):
        _verdict(p, msg)
    elif isinstance(msg, FrameFamily):
        _frame_family(p, msg)
    elif isinstance(msg, ReadingsBatch):
        _readings(p, msg)
    elif isinstance(msg, SensorAnomaly):
        _anomaly(p, msg)
    elif isinstance(msg, Gap):
        _gap(p, msg)
    elif isinstance(msg, Alert):
        _alert(p, msg, evidence_max_bytes)
    elif isinstance(msg, WorkerStatus):
        _status(p, msg)
    elif isinstance(msg, Assignment):
        _assignment(p, msg)
    elif isinstance(msg, FamilyUpdate):
        _family(p, msg)
    elif isinstance(msg, ThresholdChange):
        _threshold(p, msg)
    elif isinstance(msg, DeadLetter):
        p.key = msg.key
        p.add("dead_letters", dead_letter_row(msg))
    elif isinstance(msg, DispatchDecision):
        p.key = msg.decision_id
        p.add("dispatch_decisions", decision_row(msg))
    else:
        return None
    return p
