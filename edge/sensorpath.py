"""Sensor path of the worker: validate, score, batch readings for storage; builds messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from broker.codecs import Rejected, reading_key
from broker.messages import Alert, ReadingsBatch, SensorAnomaly, SensorIn, StoredReading
from broker.topics import StreamRef
from edge.acks import InputAck
from edge.sensors import OutOfRange, SensorChecks, SensorState, check_valid, observe
from edge.settings import SensorLimit

SEVERITY_BY_KIND = {"limit": "major", "zscore": "minor", "rate": "minor", "stuck": "warning"}


@dataclass
class Invalid:
    """One reading refused (dead-lettered) with its index in the publish."""

    index: int
    error: Rejected


@dataclass
class SensorOutcome:
    """What one sensor publish produced right away (readings go to the buffer)."""

    anomalies: list[SensorAnomaly] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)
    buffered: int = 0


@dataclass
class _Buffered:
    readings: list[StoredReading] = field(default_factory=list)
    pending: list[InputAck] = field(default_factory=list)
    since: float = 0.0


class SensorPath:
    """Per-sensor statistics and the readings buffer (thread-safe).

    Each buffered reading holds its input's ack (``InputAck.hold``); the publish of the
    batch that carries it releases that hold, so a sensor publish is acked only once every
    reading of it is in an acknowledged ``ReadingsBatch``.
    """

    def __init__(
        self,
        worker: str,
        checks: SensorChecks,
        limit_for: Callable[[StreamRef], SensorLimit],
        batch_size: int = 500,
        flush_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.checks = checks
        self._limit_for = limit_for
        self.batch_size = batch_size
        self.flush_s = flush_s
        self._clock = clock
        self._states: dict[str, SensorState] = {}
        self._buffers: dict[str, _Buffered] = {}
        self._epoch = 0
        self._lock = threading.Lock()

    def handle(self, msg: SensorIn, pending: InputAck, epoch: int, now: datetime) -> SensorOutcome:
        """Check and score every reading; buffer the valid ones for storage."""
        out = SensorOutcome()
        limit = self._limit_for(msg.stream)
        key = msg.stream.key
        with self._lock:
            state = self._states.setdefault(key, SensorState())
            buf = self._buffers.setdefault(key, _Buffered(since=self._clock()))
            if not buf.readings:
                buf.since = self._clock()
            for i, r in enumerate(msg.readings):
                try:
                    check_valid(r.value, limit)
                except OutOfRange as exc:
                    out.invalid.append(
                        Invalid(i, Rejected(exc.reason, f"readings[{i}]: {exc.detail}"))
                    )
                    continue
                rkey = reading_key(msg, i, r)
                ts = r.ts or now
                for f in observe(state, r.value, r.ts, limit, self.checks):
                    out.anomalies.append(
                        SensorAnomaly(
                            stream=key,
                            key=f"{rkey}!{f.kind}",
                            seq=r.seq,
                            ts=ts,
                            value=r.value,
                            kind=f.kind,
                            score=f.score,
                            detail=f.detail,
                            worker=self.worker,
                            epoch=epoch,
                        )
                    )
                buf.readings.append(
                    StoredReading(key=rkey, seq=r.seq, ts=ts, value=r.value, unit=r.unit)
                )
                pending.hold()
                buf.pending.append(pending)
                out.buffered += 1
        out.alerts = [self._alert(msg, a) for a in out.anomalies]
        return out

    def _alert(self, msg: SensorIn, a: SensorAnomaly) -> Alert:
        s = msg.stream
        return Alert(
            event_id=f"sensor:{a.key}",
            kind="sensor",
            severity=SEVERITY_BY_KIND[a.kind],  # type: ignore[arg-type]
            site=s.site,
            line=s.line,
            station=s.station,
            stream=s.key,
            message=f"sensor {s.name}: {a.kind} anomaly ({a.detail})"[:500],
            worker=self.worker,
            epoch=a.epoch,
            ts=a.ts,
        )

    def due(self, force: bool = False) -> list[tuple[ReadingsBatch, list[InputAck]]]:
        """Batches to publish now (full, older than ``flush_s``, or all when ``force``)."""
        ready: list[tuple[ReadingsBatch, list[InputAck]]] = []
        now = self._clock()
        with self._lock:
            for key, buf in self._buffers.items():
                while buf.readings and (
                    force or len(buf.readings) >= self.batch_size or now - buf.since >= self.flush_s
                ):
                    n = min(self.batch_size, len(buf.readings))
                    batch = ReadingsBatch(
                        stream=key,
                        worker=self.worker,
                        epoch=self._epoch,
                        readings=tuple(buf.readings[:n]),
                    )
                    ready.append((batch, buf.pending[:n]))
                    del buf.readings[:n], buf.pending[:n]
                    buf.since = now
        return ready

    def set_epoch(self, epoch: int) -> None:
        with self._lock:
            self._epoch = epoch

    def forget(self, stream_key: str) -> list[tuple[ReadingsBatch, list[InputAck]]]:
        """The sensor left this worker: its buffered readings (to flush) and state go."""
        with self._lock:
            self._states.pop(stream_key, None)
            buf = self._buffers.pop(stream_key, None)
        if buf is None or not buf.readings:
            return []
        batch = ReadingsBatch(
            stream=stream_key, worker=self.worker, epoch=self._epoch, readings=tuple(buf.readings)
        )
        return [(batch, buf.pending)]

    def buffered(self) -> int:
        with self._lock:
            return sum(len(b.readings) for b in self._buffers.values())
