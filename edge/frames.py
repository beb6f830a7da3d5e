"""The worker's frame stage: admit frames into the batcher, run batches, publish results."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.codecs import Rejected
from broker.messages import FrameIn, utcnow
from broker.topics import alert_topic, features_topic, verdict_topic
from broker.transport import Inbound
from edge.gaps import SeqStatus
from edge.pipeline import FrameJob, FrameOutcome

if TYPE_CHECKING:
    from edge.worker import EdgeWorker

log = logging.getLogger(__name__)


class FrameStage:
    """Admission (delivery thread) and inference loop (its own thread) of camera frames."""

    def __init__(self, worker: EdgeWorker) -> None:
        self.w = worker

    def accept(self, msg: Inbound, frame: FrameIn) -> None:
        """Admit one decoded frame: assignment, seq tracking, rate, queue (shedding)."""
        w = self.w
        m = w.metrics
        m.frames.labels("received").inc()
        stream = frame.stream
        pending = w.out.open_ack(msg, frame.key)
        if not w.state.holds(stream):
            m.frames.labels("unassigned").inc()
            w.out.gap_for(stream, frame.key, frame.seq, "failover", pending, epoch=w.state.epoch)
            return
        if frame.seq is not None:
            status = w.observe_seqs(stream, frame.pub_epoch, [frame.seq])
            if status is SeqStatus.DUPLICATE and w.out.was_done(frame.key):
                m.frames.labels("duplicate").inc()
                pending.seal()  # its outputs are already acknowledged
                return
        if not w.state.inspect(stream):
            m.frames.labels("reduced_rate").inc()
            w.out.gap_for(stream, frame.key, frame.seq, "shed", pending, epoch=w.state.epoch)
            return
        job = FrameJob(
            frame=frame,
            topic=msg.topic,
            payload=msg.payload,
            receipt=msg.receipt,
            pending=pending,
            received_at=utcnow(),
            received_mono=time.monotonic(),
        )
        for shed in w.batcher.put(stream.key, job):
            m.frames.labels("shed").inc()
            m.shed.inc()
            f = shed.frame
            w.out.gap_for(f.stream, f.key, f.seq, "shed", shed.pending, epoch=w.state.epoch)
        m.queue_depth.set(w.batcher.depth())

    def run(self) -> None:
        """Inference loop: until the batcher is closed and drained."""
        w = self.w
        while True:
            batch = w.batcher.take(timeout=0.5)
            if not batch:
                if w.batcher.closed and not w.batcher.depth():
                    return
                continue
            jobs = [q.item for q in batch]
            w.metrics.queue_depth.set(w.batcher.depth())
            t0 = time.monotonic()
            try:
                outcomes = w.pipeline.process(jobs, w.state.epoch)
            except Exception as exc:  # the model failed on this batch: record, keep serving
                log.exception("inference failed on a batch of %d frames", len(jobs))
                err = Rejected("inference_error", f"{type(exc).__name__}: {exc}")
                outcomes = [FrameOutcome(job, error=err) for job in jobs]
            w.meter.record_batch(len(jobs), time.monotonic() - t0)
            w.metrics.batch_size.observe(len(jobs))
            for out in outcomes:
                self._emit(out)

    def _emit(self, out: FrameOutcome) -> None:
        w = self.w
        job = out.job
        if out.error is not None or out.verdict is None:
            w.metrics.frames.labels("rejected").inc()
            err = out.error or Rejected("inference_error", "no verdict")
            inbound = Inbound(topic=job.topic, payload=job.payload, receipt=job.receipt)
            w.out.dead(inbound, err, job.pending)
            job.pending.seal()
            return
        stream = job.frame.stream
        v = out.verdict
        w.out.publish(verdict_topic(stream), v, job.pending)
        if out.alert is not None:
            w.out.publish(
                alert_topic(stream.site, stream.line, stream.station), out.alert, job.pending
            )
        if out.features is not None:
            w.out.publish(features_topic(stream), out.features, job.pending)
        job.pending.seal()
        w.metrics.frames.labels("inspected").inc()
        w.metrics.verdicts.labels(v.verdict).inc()
        w.metrics.latency.observe(v.latency_ms / 1000.0)
        w.meter.record_latency(v.latency_ms)
