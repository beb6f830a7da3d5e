"""The worker's stream assignment: static (--streams) or the dispatcher's retained one."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from broker.messages import Assignment
from broker.topics import (
    Kind,
    StreamRef,
    TopicError,
    feedback_control_topic,
    frame_topic,
    sensor_topic,
    teach_topic,
    threshold_control_topic,
)
from broker.transport import Handler, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Diff:
    """What changed: streams to start and to stop serving.

    ``resume``: for added streams the dispatcher knew about, the last seq already accounted
    for (stored or recorded as a gap) when it decided (``Assignment.resume``), by full key.
    """

    epoch: int
    added: frozenset[StreamRef]
    removed: frozenset[StreamRef]
    resume: dict[str, int] = field(default_factory=dict)


class StaleAssignment(ValueError):
    """An assignment older than the one in force."""


def parse_streams(keys: Iterable[str]) -> frozenset[StreamRef]:
    """Stream keys (``site/line/station/cam`` or the full form) -> refs; TopicError if bad."""
    return frozenset(StreamRef.parse_key(k) for k in keys)


class AssignmentState:
    """The assignment in force: epoch, streams and per-stream inspection rates (thread-safe)."""

    def __init__(self, streams: Iterable[StreamRef] = (), epoch: int = 0) -> None:
        self._lock = threading.Lock()
        self._streams: frozenset[StreamRef] = frozenset(streams)
        self._epoch = epoch
        self._rates: dict[str, float] = {}
        self._credit: dict[str, float] = {}

    @property
    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    @property
    def streams(self) -> frozenset[StreamRef]:
        with self._lock:
            return self._streams

    def holds(self, stream: StreamRef) -> bool:
        with self._lock:
            return stream in self._streams

    def apply(self, msg: Assignment) -> Diff:
        """Adopt ``msg`` if its epoch is not older; return the diff (raise StaleAssignment)."""
        wanted = parse_streams(msg.streams)
        with self._lock:
            if msg.epoch < self._epoch:
                raise StaleAssignment(f"epoch {msg.epoch} < {self._epoch} in force")
            old = self._streams
            self._streams, self._epoch = wanted, msg.epoch
            self._rates = _rates(msg.rates)
            self._credit = {k: v for k, v in self._credit.items() if k in self._rates}
        added = wanted - old
        return Diff(msg.epoch, added, old - wanted, _resume(msg.resume, added))

    def inspect(self, stream: StreamRef) -> bool:
        """Reduced-rate inspection: with rate r, inspect r of the frames, evenly spread."""
        with self._lock:
            rate = self._rates.get(stream.key, 1.0)
            if rate >= 1.0:
                return True
            credit = self._credit.get(stream.key, 0.0) + rate
            if credit >= 1.0 - 1e-9:
                self._credit[stream.key] = credit - 1.0
                return True
            self._credit[stream.key] = credit
            return False


def _rates(raw: dict[str, float]) -> dict[str, float]:
    """Inspection rates by full stream key, clamped to 0..1 (bad keys are ignored)."""
    out = {}
    for key, rate in raw.items():
        try:
            out[StreamRef.parse_key(key).key] = min(1.0, max(0.0, float(rate)))
        except TopicError:
            log.warning("assignment rate for %r ignored: not a stream key", key[:120])
    return out


def _resume(raw: dict[str, int], added: frozenset[StreamRef]) -> dict[str, int]:
    """``Assignment.resume`` for the streams just added, by full key (bad keys ignored)."""
    keys = {s.key for s in added}
    out = {}
    for key, seq in raw.items():
        try:
            full = StreamRef.parse_key(key).key
        except TopicError:
            log.warning("assignment resume for %r ignored: not a stream key", key[:120])
            continue
        if full in keys and seq >= -1:
            out[full] = int(seq)
    return out


@dataclass(frozen=True)
class StreamHandlers:
    """The worker's handlers for the topics of one assigned stream."""

    frame: Handler
    sensor: Handler
    control: Handler


def topics_for(stream: StreamRef, h: StreamHandlers) -> list[tuple[str, Handler]]:
    """Every topic a worker subscribes to for ``stream``, with its handler."""
    if stream.kind is Kind.SENSOR:
        return [(sensor_topic(stream), h.sensor)]
    return [
        (frame_topic(stream), h.frame),
        (threshold_control_topic(stream), h.control),
        (feedback_control_topic(stream), h.control),
        (teach_topic(stream), h.control),  # retained: the camera's taught state
    ]


class Subscriptions:
    """Keeps the transport subscribed to exactly the assigned streams' topics."""

    def __init__(
        self,
        transport: Transport,
        handlers: StreamHandlers,
        on_removed: Callable[[StreamRef, int], None],
    ) -> None:
        self._transport = transport
        self._handlers = handlers
        self._on_removed = on_removed
        self._lock = threading.Lock()
        self._subscribed: frozenset[StreamRef] = frozenset()

    def subscribed(self) -> frozenset[StreamRef]:
        """Streams whose topics this worker has asked the broker for (what it serves)."""
        return self._subscribed

    def change(self, diff: Diff) -> None:
        """Subscribe the added streams, unsubscribe (then clean up) the removed ones."""
        with self._lock:
            for stream in sorted(diff.removed):
                self._subscribed = self._subscribed - {stream}
                for topic, _ in topics_for(stream, self._handlers):
                    self._transport.unsubscribe(topic)
                self._on_removed(stream, diff.epoch)
            for stream in sorted(diff.added):
                for topic, handler in topics_for(stream, self._handlers):
                    self._transport.subscribe(topic, handler)
                self._subscribed = self._subscribed | {stream}
        if diff.added or diff.removed:
            log.info(
                "assignment epoch %d: +%s -%s",
                diff.epoch,
                [s.key for s in sorted(diff.added)],
                [s.key for s in sorted(diff.removed)],
            )


def decode_assignment(msg: Assignment, worker: str) -> Assignment:
    """Check an assignment is for this worker and its stream keys parse; TopicError if not."""
    if msg.worker != worker:
        raise TopicError("topic_mismatch", f"assignment for {msg.worker!r} on {worker!r}'s topic")
    parse_streams(msg.streams)
    return msg


def save_assignment(path: Path, msg: Assignment) -> None:
    """Remember the assignment in force (atomic write), so a restart resubscribes at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(msg.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        log.error("assignment not saved to %s: %s", path, exc)


def load_assignment(path: Path, worker: str) -> Assignment | None:
    """The remembered assignment of ``worker``, or None (missing or unreadable file)."""
    try:
        msg = Assignment.model_validate_json(path.read_bytes())
        return decode_assignment(msg, worker)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError, TopicError) as exc:
        log.warning("remembered assignment %s unusable (%s); waiting for the dispatcher", path, exc)
        return None
