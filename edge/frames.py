"""The worker's frame stage: admit frames into the batcher, run batches, publish results."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.codecs import Rejected
from broker.messages import FrameIn, utcnow
from broker.topics import alert_topic, features_topic, history_frame_topic, verdict_topic
from broker.transport import Inbound
from edge.gaps import SeqStatus
from edge.pipeline import FrameJob, FrameOutcome, Inferred

if TYPE_CHECKING:
    from edge.worker import EdgeWorker

log = logging.getLogger(__name__)


@dataclass
class _Handoff:
    """One batch from the inference thread to the scoring thread."""

    jobs: list[FrameJob]
    inferred: Inferred | list[FrameOutcome]  # a list: the batch failed, these are its errors
    infer_s: float


class FrameStage:
    """Admission (delivery thread); inference and scoring (two threads, see ``run``)."""

    def __init__(self, worker: EdgeWorker) -> None:
        self.w = worker

    def accept(self, msg: Inbound, frame: FrameIn) -> None:
        """Admit one decoded frame: assignment, seq tracking, rate, queue (shedding)."""
        w = self.w
        m = w.metrics
        m.frames.labels("received").inc()
        stream = frame.stream
        if w.out.follow(msg, frame.key):  # redelivered while its first copy is in flight
            m.frames.labels("duplicate").inc()
            return
        pending = w.out.open_ack(msg, frame.key)
        if not w.state.holds(stream):  # left this worker since on_frame checked: no record,
            m.frames.labels("unassigned").inc()  # the new owner accounts for it (see there)
            pending.seal()
            return
        if frame.seq is not None:
            status = w.gaps.observe(stream, frame.pub_epoch, [frame.seq])
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
            epoch=w.state.epoch,
        )
        for shed in w.batcher.put(stream.key, job):
            m.frames.labels("shed").inc()
            m.shed.inc()
            f = shed.frame
            epoch = w.state.epoch if shed.epoch is None else shed.epoch
            w.out.gap_for(f.stream, f.key, f.seq, "shed", shed.pending, epoch=epoch)
        m.queue_depth.set(w.batcher.depth())

    def run(self) -> None:
        """Inference loop, until the batcher is closed and drained.

        Two stages, one batch apart: this thread decodes and runs the model on batch k+1
        while the scoring thread scores and publishes batch k (a hand-off queue of one
        batch). Novelty scoring then fills the CPU that onnxruntime leaves idle between
        and inside its runs instead of adding to every batch's time. Verdicts keep the
        batches' order; this returns once the scoring thread has emitted everything.
        """
        w = self.w
        handoff: queue.Queue[_Handoff | None] = queue.Queue(maxsize=1)
        scorer = threading.Thread(
            target=self._score_loop, args=(handoff,), name=f"edge-score-{w.worker}", daemon=True
        )
        scorer.start()
        try:
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
                    inferred: Inferred | list[FrameOutcome] = w.pipeline.infer(jobs)
                except Exception as exc:  # the model failed on this batch: record, keep serving
                    inferred = self._failed(jobs, exc)
                handoff.put(_Handoff(jobs, inferred, time.monotonic() - t0))
        finally:
            handoff.put(None)
            scorer.join()

    @staticmethod
    def _failed(jobs: list[FrameJob], exc: Exception) -> list[FrameOutcome]:
        log.exception("inference failed on a batch of %d frames", len(jobs))
        err = Rejected("inference_error", f"{type(exc).__name__}: {exc}")
        return [FrameOutcome(job, error=err) for job in jobs]

    def _score_loop(self, handoff: queue.Queue[_Handoff | None]) -> None:
        """Scoring thread: novelty, verdicts and publishing, batch by batch, in order."""
        w = self.w
        while (h := handoff.get()) is not None:
            t0 = time.monotonic()
            if isinstance(h.inferred, list):
                outcomes = h.inferred
            else:
                try:
                    outcomes = w.pipeline.finish(h.inferred, w.state.epoch)
                except Exception as exc:  # scoring failed on this batch: record, keep serving
                    outcomes = self._failed(h.jobs, exc)
            w.meter.record_batch(len(h.jobs), h.infer_s + time.monotonic() - t0)
            w.metrics.batch_size.observe(len(h.jobs))
            for out in outcomes:
                try:
                    self._emit(out)
                except Exception:  # one frame's outputs must not stop the others
                    log.exception("emitting the outputs of %s failed", out.job.frame.key)

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
        if out.history is not None:
            w.out.publish(history_frame_topic(stream), out.history, job.pending)
        job.pending.seal()
        w.metrics.frames.labels("inspected").inc()
        w.metrics.verdicts.labels(v.verdict).inc()
        w.metrics.latency.observe(v.latency_ms / 1000.0)
        w.meter.record_latency(v.latency_ms)
