"""The worker's outputs: publishes tied to input acks, dead letters, gaps, readings batches."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from broker.codecs import Rejected, dead_letter, encode
from broker.messages import Gap, GapReason, Msg, ReadingsBatch, utcnow
from broker.topics import StreamRef, dead_letter_topic, gap_topic, readings_topic
from broker.transport import Inbound, Published, Transport
from edge.acks import AckTracker, InputAck
from edge.gaps import Missing
from edge.metrics import EdgeMetrics

log = logging.getLogger(__name__)

COMPONENT = "edge"
DONE_KEYS = 20_000  # keys of recently completed inputs, to ack redelivered duplicates at once


class Outputs:
    """Publishing for the worker: every publish tied to an input waits in its ``InputAck``."""

    def __init__(
        self, transport: Transport, acks: AckTracker, metrics: EdgeMetrics, worker: str
    ) -> None:
        self.transport = transport
        self.acks = acks
        self.metrics = metrics
        self.worker = worker
        self._done: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, list[Inbound]] = {}  # key -> redelivered copies waiting
        self._done_lock = threading.Lock()

    def publish(
        self, topic: str, msg: Msg, pending: InputAck | None, *, retain: bool = False
    ) -> bool:
        """Publish ``msg``; with ``pending`` the input's ack waits for it. False if refused."""
        try:
            pub = self.transport.publish(topic, encode(msg), retain=retain)
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.error("publish to %s failed: %s", topic, exc)
            if pending is not None:
                pending.fail()
            return False
        if pending is not None:
            pending.add(pub)
        else:
            self.acks.watch(pub, lambda ok: None if ok else self._lost(topic))
        return True

    def _lost(self, topic: str) -> None:
        self.metrics.publish_failures.inc()
        log.error("broker refused a publish to %s", topic)

    def open_ack(self, msg: Inbound, key: str) -> InputAck:
        """The pending ack of one input; once acked, its key is remembered as done, and the
        copies of it redelivered meanwhile (``follow``) are acked with it."""
        with self._done_lock:
            self._inflight.setdefault(key, [])

        def ack() -> None:
            msg.ack()
            with self._done_lock:
                copies = self._inflight.pop(key, [])
                self._done[key] = None
                while len(self._done) > DONE_KEYS:
                    self._done.popitem(last=False)
            for c in copies:
                c.ack()

        def unacked() -> None:  # an output failed: the copies stay unacked too (redelivered)
            with self._done_lock:
                self._inflight.pop(key, None)

        return self.acks.open(ack, key, unacked)

    def follow(self, msg: Inbound, key: str) -> bool:
        """A redelivered copy of an input still in flight (e.g. after a reconnect, while the
        first copy waits in a queue) rides on the first: acked with it, never inspected
        twice — a second inspection could shed one copy and store the other. False when
        ``key`` is not in flight."""
        with self._done_lock:
            copies = self._inflight.get(key)
            if copies is None:
                return False
            copies.append(msg)
            return True

    def was_done(self, key: str) -> bool:
        with self._done_lock:
            return key in self._done

    def dead(
        self,
        msg: Inbound,
        err: Rejected,
        pending: InputAck | None = None,
        receipt: str | None = None,
    ) -> None:
        """Dead-letter a rejected input (or part of one); the input is acked after it."""
        self.metrics.dead_letters.labels(err.reason).inc()
        log.info("dead letter from %s: %s: %s", msg.topic[:120], err.reason, err.detail[:200])
        dl = dead_letter(
            COMPONENT,
            msg.topic,
            msg.payload,
            err,
            receipt=msg.receipt if receipt is None else receipt,
        )
        own = pending is None
        pending = pending or self.acks.open(msg.ack, dl.key)
        self.publish(dead_letter_topic(COMPONENT), dl, pending)
        if own:
            pending.seal()

    def gap_for(
        self,
        stream: StreamRef,
        key: str,
        seq: int | None,
        reason: GapReason,
        pending: InputAck,
        epoch: int,
        count: int = 1,
    ) -> None:
        """Record one input that will not be inspected (shed, reassigned) and seal it."""
        self.metrics.gaps.labels(reason).inc(count)
        gap = Gap(
            key=f"{key}!{reason}",
            stream=stream.key,
            reason=reason,
            from_seq=seq,
            to_seq=seq,
            count=count,
            worker=self.worker,
            epoch=epoch,
            ts=utcnow(),
        )
        self.publish(gap_topic(stream), gap, pending)
        pending.seal()

    def missing(self, m: Missing, epoch: int) -> Published | None:
        """A range of seqs that never arrived within the reorder timeout (reason ``missing``),
        or, after a take-over, was never received by this worker (``failover``). Keys:
        ``{stream}#{pub_epoch}:gap:{from}-{to}`` and ``{stream}#{pub_epoch}:failover:{from}-{to}``.
        Returns the publish handle (None if it could not be queued)."""
        self.metrics.gaps.labels(m.reason).inc(m.count)
        tag = "gap" if m.reason == "missing" else m.reason
        gap = Gap(
            key=f"{m.stream}#{m.pub_epoch}:{tag}:{m.from_seq}-{m.to_seq}",
            stream=m.stream,
            reason=m.reason,
            from_seq=m.from_seq,
            to_seq=m.to_seq,
            count=m.count,
            worker=self.worker,
            epoch=epoch,
            ts=utcnow(),
        )
        topic = gap_topic(StreamRef.parse_key(m.stream))
        try:
            pub = self.transport.publish(topic, encode(gap))
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.error("gap %s not published: %s", gap.key, exc)
            return None
        self.acks.watch(pub, lambda ok: None if ok else self._lost(topic))
        return pub

    def readings(self, batch: ReadingsBatch, pendings: list[InputAck]) -> None:
        """Publish one readings batch; each reading's input hold is released by its ack."""
        stream = StreamRef.parse_key(batch.stream)
        try:
            pub = self.transport.publish(readings_topic(stream), encode(batch))
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.error("readings batch for %s not published: %s", stream.key, exc)
            for p in pendings:
                p.fail()
                p.release()
            return
        self.metrics.readings.inc(len(pendings))
        for p in pendings:
            p.add(pub, held=True)
